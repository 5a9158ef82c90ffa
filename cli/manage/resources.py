"""`hyper regions|clusters|queues|definitions|images list|add|update|delete`: edit configurations/*.json.

One code path serves the five kinds, driven by KINDS. The add/update options
come from the pydantic model's fields (nested models flattened, so
Region.vpc.cidr is `--vpc-cidr`): a new field gets its flag for free. A change
is applied to the whole configuration in memory and validated by
hyperbatch.config (fields and cross-file references) before the one changed
file is written; a refused change leaves every file as it was.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Mapping, Union, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hyperbatch.cli.errors import HostError, UsageError
from hyperbatch.cli.manage.common import DEPLOY_HINT, config_option, configuration_dir, print_table
from hyperbatch.cli.runner import one_line
from hyperbatch import config

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Kind:
    """One configuration file of named entries, and how its commands read."""

    file: str  # "queues": queues.json and `hyper queues`
    noun: str
    model: type[BaseModel]
    columns: tuple[str, ...]  # what `list` shows after the name
    flags: Mapping[str, str] = field(default_factory=dict)  # field path -> option name where the derived one reads badly
    metavars: Mapping[str, str] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)  # field -> the kind it names (prompt choices)
    exclusive: tuple[tuple[str, ...], ...] = ()  # setting one of these paths drops the others


KINDS = (
    Kind("regions", "region", config.Region, ("compute", "vpc", "local_max_workers"),
         flags={"vpc.vpc_id": "vpc-id"}, exclusive=(("vpc.cidr", "vpc.vpc_id"),)),
    Kind("clusters", "cluster", config.Cluster,
         ("type", "instance_types", "min_vcpus", "max_vcpus", "allocation_strategy", "spot_bid_percentage", "regions"),
         flags={"instance_types": "instance-type", "regions": "region"}, metavars={"regions": "REGION"}),
    Kind("queues", "queue", config.Queue, ("cluster", "definition", "definitions", "priority", "region_weights",
                                          "max_attempts"),
         flags={"region_weights": "weight"}, metavars={"region_weights": "REGION=WEIGHT|auto"},
         refs={"cluster": "clusters", "definition": "definitions"}),
    Kind("definitions", "definition", config.Definition,
         ("image", "vcpus", "memory_mib", "gpus", "max_workers", "jobs_to_workers_ratio", "timeout_seconds"),
         flags={"environment": "env"}, refs={"image": "images"}),
    Kind("images", "image", config.Image, ("directory", "build_args"), flags={"build_args": "build-arg"}),
)


def groups() -> list[click.Group]:
    return [_group(kind) for kind in KINDS]


# ---------------------------------------------------------------------------------------------
# options derived from the model fields


@dataclass(frozen=True)
class FieldOption:
    """A `--flag` for one (possibly nested) model field; `shape` is value, flag, list or map."""

    path: str  # "vpc.cidr"
    name: str  # "--vpc-cidr"
    shape: str
    type: Any
    literals: tuple[str, ...]  # whole values a map field also takes, e.g. "auto"
    metavar: str | None
    help: str

    @property
    def dest(self) -> str:
        return "set__" + self.path.replace(".", "__")

    def param(self) -> click.Option:
        if self.shape == "flag":
            return click.Option([f"{self.name}/--no-{self.name[2:]}", self.dest], default=None, help=self.help)
        many = self.shape in ("list", "map")
        return click.Option([self.name, self.dest], type=self.type, multiple=many, metavar=self.metavar, help=self.help)

    def value(self, given: Any) -> Any:
        """The JSON value for what click parsed."""
        if self.shape == "list":
            return list(given)
        if self.shape == "map":
            if len(given) == 1 and given[0] in self.literals:
                return given[0]
            return dict(self._pair(item) for item in given)
        return given

    def _pair(self, item: str) -> tuple[str, str]:
        key, sep, value = item.partition("=")
        if not (sep and key):
            raise UsageError(f"{self.name} takes {self.metavar}, not {item!r}")
        return key, value


def field_options(kind: Kind) -> list[FieldOption]:
    out = []
    for path, info in _fields(kind.model):
        shape, click_type, literals = _shape(info.annotation)
        out.append(FieldOption(
            path=path,
            name="--" + kind.flags.get(path, path.replace(".", "-").replace("_", "-")),
            shape=shape,
            type=click_type,
            literals=literals,
            metavar=kind.metavars.get(path, "KEY=VALUE" if shape == "map" else None),
            help=_help(info, shape in ("list", "map")),
        ))
    return out


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        if name == "name" and not prefix:
            continue  # the NAME argument
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _fields(info.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name, info


def _shape(annotation: Any) -> tuple[str, Any, tuple[str, ...]]:
    """(shape, click type, literal alternatives) of a field annotation."""
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    args = [a for a in args if a is not NoneType]
    literals = tuple(v for a in args if get_origin(a) is Literal for v in get_args(a))
    rest = [a for a in args if get_origin(a) is not Literal]
    if not rest:
        return "value", click.Choice(literals), ()
    base = get_origin(rest[0]) or rest[0]
    if base is dict:
        return "map", click.STRING, literals
    if base is list:
        return "list", click.STRING, ()
    if base is bool:
        return "flag", None, ()
    return "value", {int: click.INT, float: click.FLOAT}.get(base, click.STRING), ()


def _help(info: FieldInfo, repeatable: bool) -> str:
    parts = [info.description] if info.description else []
    if repeatable:
        parts.append("repeatable; replaces the whole old value")
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    shown = "required" if info.is_required() else f"default: {'none' if default in (None, {}, []) else render(default)}"
    text = "; ".join(parts)
    return f"{text[:1].upper()}{text[1:]} [{shown}]".lstrip().replace("%", "%%")


# ---------------------------------------------------------------------------------------------
# commands


def _group(kind: Kind) -> click.Group:
    """`hyper <kind> list|add|update|delete`; add and update take one option per model field."""
    options = field_options(kind)
    file, noun = f"{kind.file}.json", kind.noun
    group = click.Group(kind.file, context_settings=CONTEXT, help=f"List, add, update or delete {kind.file} ({file}).")

    @group.command("list", context_settings=CONTEXT, help=f"Show the {kind.file} of {file} (and, with an aws host "
                   "selected, whether each is deployed).")
    @config_option
    def list_command(config_dir: Path | None) -> None:
        _list(kind, config_dir)

    @group.command("add", context_settings=CONTEXT, help=f"Add {noun} NAME to {file}; fields not given keep their "
                   "defaults. The whole configuration is validated before anything is written.")
    @click.argument("name")
    @config_option
    def add_command(name: str, config_dir: Path | None, **values: Any) -> None:
        _add(kind, options, name, config_dir, values)

    @group.command("update", context_settings=CONTEXT, help=f"Change fields of {noun} NAME in {file}; the others "
                   "keep their values. The whole configuration is validated before anything is written.")
    @click.argument("name")
    @click.option("--unset", multiple=True, metavar="FIELD", help="Drop FIELD so its default applies; one of: "
                  + ", ".join(_unsettable(options)) + ".")
    @config_option
    def update_command(name: str, unset: tuple[str, ...], config_dir: Path | None, **values: Any) -> None:
        _update(kind, options, name, unset, config_dir, values)

    @group.command("delete", context_settings=CONTEXT, help=f"Remove {noun} NAME from {file}; refused while "
                   "anything refers to it.")
    @click.argument("name")
    @config_option
    def delete_command(name: str, config_dir: Path | None) -> None:
        _delete(kind, name, config_dir)

    for command in (add_command, update_command):
        command.params[1:1] = [option.param() for option in options]
    return group


def _list(kind: Kind, given: Path | None) -> None:
    directory = configuration_dir(given)
    try:
        items = config.parse_file(kind.file, config.read_raw(directory, kind.file))
    except config.ConfigError as exc:
        raise UsageError(one_line(exc)) from None
    if not items:
        click.echo(f"no {kind.file} in {directory / kind.file}.json: add one with `hyper {kind.file} add NAME`")
        return
    headers = ["name", *kind.columns]
    rows = [[item.name, *(render(getattr(item, column)) for column in kind.columns)] for item in items]
    status = _deployed(kind, directory)
    if status is not None:
        headers.append("deployed")
        rows = [[*row, status.get(row[0], "unknown")] for row in rows]
    print_table(headers, rows)


def _deployed(kind: Kind, directory: Path) -> dict[str, str] | None:
    """Deployed status per entry when the current host is an aws host; None otherwise."""
    from hyperbatch.cli import stack_outputs as deployed, host_registry as hosts
    try:
        host = hosts.current()[1]
    except HostError:
        return None
    if host.get("kind") != "aws":
        return None
    try:
        cfg = config.load(directory)
    except config.ConfigError:
        return {}
    return deployed.statuses(kind.file, cfg, host)


def _add(kind: Kind, options: list[FieldOption], name: str, given: Path | None, values: dict) -> None:
    directory, raw = _read(given)
    entries = _entries(raw, kind)
    if _index(entries, name) is not None:
        raise UsageError(
            f"{kind.noun} {name} already exists in {kind.file}.json: change it with `hyper {kind.file} update {name}`"
        )
    changes = _changes(options, values)
    for path, info in kind.model.model_fields.items():
        if path != "name" and info.is_required() and path not in changes:
            changes[path] = _ask(kind, options, raw, path, name)
    entry = _apply(kind, {"name": name}, changes, ())
    _save(kind, directory, raw, [*entries, entry], name, "added")
    if kind.file == "regions":
        from hyperbatch.cli.manage import zones

        # The project's cdk.json is the configuration directory's neighbour (configurations/ beside it).
        said = zones.record(directory.resolve().parent / "cdk.json", name)
        if said:
            click.echo(said)


def _update(kind: Kind, options: list[FieldOption], name: str, unset: tuple[str, ...], given: Path | None,
            values: dict) -> None:
    directory, raw = _read(given)
    entries = list(_entries(raw, kind))
    index = _existing(kind, entries, name)
    changes = _changes(options, values)
    known = _unsettable(options)
    for path in unset:
        if path not in known:
            raise UsageError(f"--unset {path}: {kind.noun} entries have no such field (fields: {', '.join(known)})")
    if not changes and not unset:
        raise UsageError(f"nothing to change: give at least one option (see `hyper {kind.file} update --help`)")
    entries[index] = _apply(kind, entries[index], changes, unset)
    _save(kind, directory, raw, entries, name, "updated")


def _delete(kind: Kind, name: str, given: Path | None) -> None:
    directory, raw = _read(given)
    entries = list(_entries(raw, kind))
    del entries[_existing(kind, entries, name)]
    _save(kind, directory, raw, entries, name, "deleted")


# ---------------------------------------------------------------------------------------------
# helpers


def _read(given: Path | None) -> tuple[Path, dict]:
    """The configuration directory and every file's parsed JSON (kind -> data)."""
    directory = configuration_dir(given)
    try:
        return directory, {kind: config.read_raw(directory, kind) for kind in config.FILES}
    except config.ConfigError as exc:
        raise UsageError(one_line(exc)) from None


def _entries(raw: dict, kind: Kind) -> list:
    entries = raw[kind.file]
    if not isinstance(entries, list):
        raise UsageError(f"{kind.file}.json: must be a JSON list of entries, each an object with a 'name'")
    return entries


def _index(entries: list, name: str) -> int | None:
    return next((i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("name") == name), None)


def _existing(kind: Kind, entries: list, name: str) -> int:
    index = _index(entries, name)
    if index is None:
        known = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict)) or "none"
        raise UsageError(f"no {kind.noun} named {name} in {kind.file}.json (configured: {known})")
    return index


def _unsettable(options: list[FieldOption]) -> list[str]:
    """Field paths `--unset` takes: every field, and each nested model as a whole (`vpc`)."""
    return list(dict.fromkeys(p for o in options for p in (o.path.split(".")[0], o.path)))


def _changes(options: list[FieldOption], values: dict) -> dict[str, Any]:
    """Field path -> new JSON value, for the options given on the command line."""
    return {
        option.path: option.value(values[option.dest])
        for option in options
        if values.get(option.dest) not in (None, ())
    }


def _apply(kind: Kind, entry: dict, changes: dict[str, Any], unset: tuple[str, ...]) -> dict:
    """A copy of the raw entry with fields dropped (`unset`) and set (`changes`, by dotted path)."""
    entry = copy.deepcopy(entry)
    drop = list(unset) + [other for path in changes for group in kind.exclusive if path in group
                          for other in group if other != path]
    for path in drop:
        *parents, last = path.split(".")
        node = entry
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = entry
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
    return entry


def _ask(kind: Kind, options: list[FieldOption], raw: dict, path: str, name: str) -> str:
    """Prompt for a required field (choices from the kind it names), or refuse when stdin is no terminal."""
    flag = next(option.name for option in options if option.path == path)
    ref = kind.refs.get(path)
    choices = [e["name"] for e in raw.get(ref) or [] if isinstance(e, dict) and "name" in e] if ref else []
    if not interactive():
        hint = f" (configured: {', '.join(choices)})" if choices else ""
        raise UsageError(f"{kind.noun} {name} needs {flag}{hint}; not prompting because stdin is not a terminal")
    return click.prompt(
        f"{kind.noun} {name}: {path}",
        type=click.Choice(choices) if choices else click.STRING,
        default=choices[0] if choices else None,
    )


def interactive() -> bool:
    return sys.stdin.isatty()


def _save(kind: Kind, directory: Path, raw: dict, entries: list, name: str, verb: str) -> None:
    """Validate the whole configuration with `entries` in place; write the one file only if it is valid."""
    try:
        validated = config.validate({**raw, kind.file: entries})
    except config.ConfigError as exc:
        raise UsageError(f"{kind.noun} {name} not {verb}: {one_line(exc)}") from None
    config.dump(directory, kind.file, getattr(validated, kind.file))
    click.echo(f"{verb} {kind.noun} {name}: changed {kind.file}.json; {DEPLOY_HINT}")


def render(value: Any) -> str:
    """A field value as one short table cell."""
    if value is None or value in ({}, []):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, BaseModel):
        return render(value.model_dump(exclude_none=True))
    if isinstance(value, dict):
        return ", ".join(f"{k}={render(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(render(v) for v in value)
    return str(value)
