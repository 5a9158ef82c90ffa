"""Known HyperBatch hosts and which one the commands talk to.

State lives in `$HYPERBATCH_HOME` (default `~/.hyperbatch`); `hosts.json` there is::

    {"selected": "local",
     "hosts": {"local": {"kind": "local", "url": "http://127.0.0.1:8765", "token_file": "/abs/token"},
               "prod":  {"kind": "aws", "url": "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
                         "region": "us-east-1", "profile": "default", "stack_name": "HyperBatch"}}}

The environment variable `HYPERBATCH_HOST` picks a host by name for one
command, overriding the selection. With nothing selected, "local" is used.
Writes are atomic (temp file + rename, mode 0600) and serialised with a lock
file, so the local daemon and a user's `hyper hosts ...` cannot lose each
other's updates.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any, Iterator

from hyperbatch.cli.errors import HostError
from hyperbatch.core import paths

__all__ = [
    "DEFAULT_HOST",
    "HostError",
    "NO_HOST_MESSAGE",
    "current",
    "get",
    "home",
    "hosts_path",
    "load_hosts",
    "register",
    "remove",
    "save_hosts",
    "select",
]

DEFAULT_HOST = "local"
KINDS = ("local", "aws")
NO_HOST_MESSAGE = (
    "no HyperBatch host: start one with `hyper local up` "
    "or import one with `hyper hosts import-deployment`"
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def home() -> Path:
    """The state directory (not created here): see hyperbatch.core.paths."""
    return paths.home()


def hosts_path() -> Path:
    return home() / "hosts.json"


def _empty() -> dict[str, Any]:
    return {"selected": None, "hosts": {}}


def load_hosts() -> dict[str, Any]:
    """The parsed hosts.json, always with keys "selected" (str or None) and "hosts" (dict).

    A missing file reads as no hosts; a malformed one raises HostError naming the file.
    """
    path = hosts_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty()
    except OSError as exc:
        raise HostError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if text.strip() else _empty()
    except ValueError as exc:
        raise HostError(f"{path} is not valid JSON ({exc}): fix it or delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts", {}), dict):
        raise HostError(f"{path} must hold an object with a \"hosts\" object: fix it or delete it")
    selected = data.get("selected")
    data["selected"] = selected if isinstance(selected, str) and selected else None
    data.setdefault("hosts", {})
    return data


def save_hosts(data: dict[str, Any]) -> None:
    """Write hosts.json atomically with mode 0600, creating the state directory (0700) if needed."""
    from hyperbatch.support.files import atomic_write

    path = hosts_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    try:  # make the rename durable; not fatal where directories cannot be opened
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    """Read-modify-write hosts.json under an exclusive lock; saves what the block leaves in the dict."""
    import fcntl

    directory = home()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / "hosts.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = load_hosts()
        yield data
        save_hosts(data)
    finally:
        os.close(fd)  # releases the lock


def _check_entry(name: str, entry: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise HostError(
            f"host name {name!r} is not valid: use letters, digits, '.', '_' or '-' (up to 63 characters)"
        )
    if not isinstance(entry, dict):
        raise HostError(f"host {name!r}: the entry must be an object")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise HostError(f"host {name!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise HostError(f"host {name!r}: url must start with http:// or https://, not {url!r}")
    if kind == "local" and not isinstance(entry.get("token_file"), str):
        raise HostError(f"host {name!r}: a local host needs token_file (the path of its bearer token)")
    if kind == "aws" and not isinstance(entry.get("region"), str):
        raise HostError(f"host {name!r}: an aws host needs region (where its API is deployed)")
    return dict(entry)


def register(name: str, entry: dict[str, Any], select: bool = False) -> None:
    """Add or replace host `name`; with select=True also make it the selected host."""
    entry = _check_entry(name, entry)
    with _locked() as data:
        data["hosts"][name] = entry
        if select:
            data["selected"] = name


def _unknown(name: str, data: dict[str, Any]) -> HostError:
    known = ", ".join(sorted(data["hosts"])) or "none"
    return HostError(f"unknown HyperBatch host {name!r} (known hosts: {known})")


def remove(name: str) -> None:
    """Forget host `name` (HostError if unknown); if it was selected, nothing is selected afterwards."""
    with _locked() as data:
        if name not in data["hosts"]:
            raise _unknown(name, data)
        del data["hosts"][name]
        if data["selected"] == name:
            data["selected"] = None


def select(name: str) -> None:
    """Make `name` the host the commands use (HostError if unknown)."""
    with _locked() as data:
        if name not in data["hosts"]:
            raise _unknown(name, data)
        data["selected"] = name


def get(name: str) -> dict[str, Any]:
    """The entry of host `name` (HostError if unknown)."""
    data = load_hosts()
    if name not in data["hosts"]:
        raise _unknown(name, data)
    return data["hosts"][name]


def current() -> tuple[str, dict[str, Any]]:
    """(name, entry) of the host to use: `$HYPERBATCH_HOST`, else the selected one, else "local".

    HostError with a message that says what to do when there is none.
    """
    data = load_hosts()
    hosts = data["hosts"]
    env = os.environ.get("HYPERBATCH_HOST", "").strip()
    if env:
        if env not in hosts:
            known = ", ".join(sorted(hosts)) or "none"
            raise HostError(f"HYPERBATCH_HOST names an unknown host {env!r} (known hosts: {known})")
        return env, hosts[env]
    name = data["selected"] or DEFAULT_HOST
    if name in hosts:
        return name, hosts[name]
    if not hosts:
        raise HostError(NO_HOST_MESSAGE)
    known = ", ".join(sorted(hosts))
    if data["selected"]:
        raise HostError(
            f"the selected host {name!r} is not configured (known hosts: {known}): "
            "pick one with `hyper hosts select NAME`"
        )
    raise HostError(f"no HyperBatch host selected (known hosts: {known}): pick one with `hyper hosts select NAME`")
