"""File staging: the files a job asks to have copied into its directory before it starts (stage-in)
and out of it after it ends (stage-out), in one parsed form whichever way they were asked for.

Two syntaxes, one model (`Stage`: a path in the job's directory and a place outside it):

    PBS         -W stagein=LOCAL@HOST:REMOTE[,LOCAL@HOST:REMOTE...]
                -W stageout=LOCAL@HOST:REMOTE[,...]
                LOCAL is relative to the job's execution directory (where it starts: the home
                directory, or PBS_JOBDIR with -W sandbox=PRIVATE); HOST:REMOTE the file's source
                (stage-in) or destination (stage-out); a comma inside a name is escaped as '\\,'.
    HyperBatch  --stage-in SRC[:DEST]       SRC a path on the submit host or s3://bucket/key; DEST
                                            its path in the job's directory (default: SRC's name)
                --stage-out PATTERN[:DEST]  PATTERN a path or glob in the job's directory
                                            (results/*.csv); DEST a path on the submit host or
                                            s3://bucket/prefix (default: the submit directory)

Either way the job document holds the canonical PBS text of each pair, a list under `stagein` and
one under `stageout` (`LOCAL@HOST:/absolute/path` or `LOCAL@s3://bucket/key`), which `qstat -f`
shows joined by commas as PBS's `stagein`/`stageout` attributes. After a run, the files staged out
are recorded under `stageout_files` (`[{"path": LOCAL, "dest": where it went, "size": bytes}]`).

Relative paths on the submit host are the submit directory's (`finish`, which knows it); PBS would
read them from the home directory on HOST, as rcp does. In an array job `^array_index^` in either
path becomes the task's index (`for_task`), as in PBS.

Semantics (OpenPBS's MoM, src/resmom/stage_func.c and the server's req_runjob.c), carried out by a
`Stager` (hyperbatch.core.ports): stage-in happens before the job starts; if any file cannot be
staged in, the files already copied are removed and the job does not run. PBS then puts the job
back to wait (state W) for 30 minutes and mails its owner; HyperBatch fails it instead
(Exit_status STAGEIN_FAILED, comment `File stage in failed: ...`), since no one is mailed and a
missing input stays missing. Stage-out happens after the job whatever its exit status; a file that
cannot be staged out is named in the comment and the job's history, the others are copied, and the
exit status stays the job's own. A file staged out is removed from the job's directory once it is
copied, and files staged in are removed after the run, as PBS does.

Plain data and pure functions: no I/O.
"""

from __future__ import annotations

import posixpath
from collections import namedtuple

from hyperbatch.core import exits
from hyperbatch.core.errors import SpecError
from hyperbatch.core.limits import MAX_PATH_BYTES

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: qsub reads this module, and importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any, Iterable

S3 = "s3://"
ARRAY_INDEX = "^array_index^"  # PBS's placeholder for a task's index in staging paths
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
MAX_STAGES = 1000  # pairs per direction: a job is one DynamoDB item (hyperbatch.core.limits)

# The job document's fields (core.model.new_job) and what qstat -f calls them.
STAGEIN, STAGEOUT, STAGEOUT_FILES = "stagein", "stageout", "stageout_files"

# What a failed stage-in reports (see the module's docstring): PBS's "exec failed, before files, no retry".
STAGEIN_FAILED = exits.JOB_EXEC_FAIL1
STAGEIN_COMMENT = "File stage in failed"
STAGEOUT_COMMENT = "File stage out failed"


class Stage(namedtuple("Stage", "local remote")):
    """One pair: `local`, the path (or, for stage-out, glob) in the job's directory, and `remote`,
    `HOST:PATH` or an `s3://bucket/key` URI: the source of a stage-in, the destination of a
    stage-out. A remote path ending in '/' names a directory."""

    __slots__ = ()

    @property
    def is_s3(self) -> bool:
        return self.remote.startswith(S3)

    @property
    def host(self) -> str | None:
        """HOST of `HOST:PATH`; None for an S3 URI."""
        return None if self.is_s3 else self.remote.partition(":")[0]

    @property
    def path(self) -> str:
        """PATH of `HOST:PATH`; for an S3 URI, its key."""
        if self.is_s3:
            return self.remote[len(S3):].partition("/")[2]
        return self.remote.partition(":")[2]

    @property
    def bucket(self) -> str | None:
        return self.remote[len(S3):].partition("/")[0] if self.is_s3 else None

    def text(self) -> str:
        """The canonical PBS form, `LOCAL@HOST:PATH` (commas in names escaped, as PBS shows them)."""
        return f"{_escape(self.local)}@{_escape(self.remote)}"


# ---- parsing ------------------------------------------------------------------------------------

def parse_pbs_list(text: str, what: str) -> list[Stage]:
    """`-W stagein=` / `-W stageout=` value: LOCAL@HOST:REMOTE pairs separated by commas (PBS's
    parse_stage_list: '\\,' is a comma inside a name)."""
    items = _split_escaped(text)
    if not items:
        raise SpecError(f"illegal -W value: {what}= needs LOCAL@HOST:REMOTE, as in {what}=in.txt@myhost:/data/in.txt")
    try:
        return [parse_pbs_pair(item, what) for item in items]
    except SpecError as exc:
        message = str(exc)
        raise SpecError(message if message.startswith("illegal") else f"illegal -W value: {message}") from None


def parse_pbs_pair(text: str, what: str) -> Stage:
    """One `LOCAL@HOST:REMOTE` (or `LOCAL@s3://bucket/key`)."""
    item = text.strip()
    hint = f"illegal -W value: {what} '{item}': give LOCAL@HOST:REMOTE, as in in.txt@myhost:/data/in.txt"
    local, at, remote = item.partition("@")
    local = local.strip()
    if not at or not local:
        raise SpecError(hint)
    if remote.startswith(S3):
        return Stage(_local(local, what), _s3(remote, what))
    host, colon, path = remote.partition(":")
    if not colon or not host or not path.strip() or any(c.isspace() for c in host) or "@" in host:
        raise SpecError(hint)
    return Stage(_local(local, what), f"{host}:{_path(path.strip(), what)}")


def parse_stage_in(text: str, host: str | None = None) -> Stage:
    """`--stage-in SRC[:DEST]`: SRC a path (on the submit host `host`) or an s3:// URI; DEST its path
    in the job's directory, by default SRC's own name."""
    source, dest = _split_arg(text, "--stage-in", "SRC[:DEST], as in data/in.txt or s3://bucket/in.txt:input.txt")
    name = dest or posixpath.basename(source.rstrip("/"))
    if source.startswith(S3):
        remote = _s3(source, "--stage-in")
        if not remote[len(S3):].partition("/")[2]:
            raise SpecError(f"--stage-in '{text.strip()}': name an object, as in s3://bucket/in.txt")
    else:
        remote = f"{host or 'localhost'}:{_path(source, '--stage-in')}"
    if not name or name in (".", ".."):
        raise SpecError(f"--stage-in '{text.strip()}': give the file's name in the job's directory, as in SRC:in.txt")
    return Stage(_local(name, "--stage-in"), remote)


def parse_stage_out(text: str, host: str | None = None) -> Stage:
    """`--stage-out PATTERN[:DEST]`: PATTERN a path or glob in the job's directory; DEST a path on
    the submit host or an s3:// URI, by default the submit directory ('' until `finish`)."""
    pattern, dest = _split_arg(text, "--stage-out", "PATTERN[:DEST], as in results/*.csv or out.txt:s3://bucket/out/")
    if dest.startswith(S3):
        remote = _s3(dest, "--stage-out")
    else:
        remote = f"{host or 'localhost'}:{_path(dest, '--stage-out') if dest else ''}"
    return Stage(_local(pattern, "--stage-out"), remote)


def check_host(stage: Stage, submit_host: str | None, what: str) -> Stage:
    """A HOST other than the submit host (or localhost) is refused: files are staged from and to the
    machine that submits, or through S3; no worker can reach an arbitrary host."""
    host = stage.host
    if host is None or submit_host is None or same_host(host, submit_host):
        return stage
    raise SpecError(f"illegal -W value: {what} host '{host}': files are staged from and to the submit host "
                    f"({submit_host}) or s3://bucket/key; give {stage.local}@{submit_host}:{stage.path}")


def same_host(host: str, other: str) -> bool:
    """Whether `host`, named by a user on `other`, is `other` as far as names tell: localhost, or
    the same short name."""
    a, b = host.lower(), other.lower()
    return a in LOCAL_HOSTS or a.split(".")[0] == b.split(".")[0]


def check_field(value: Any, what: str, submit_host: str | None = None) -> list[str]:
    """`-W stagein=`/`-W stageout=` and the API's fields: PBS text (`a@h:/p,b@h:/q`) or a list of
    pairs -> canonical texts; a host other than `submit_host` (when known) is refused (`check_host`)."""
    if isinstance(value, str):
        stages = parse_pbs_list(value, what)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        stages = [parse_pbs_pair(v, what) for v in value]
    else:
        raise SpecError(f"{what}: give LOCAL@HOST:REMOTE text, or a list of them")
    if len(stages) > MAX_STAGES:
        raise SpecError(f"{what}: at most {MAX_STAGES} files")
    return [check_host(s, submit_host, what).text() for s in stages]


def resolve(texts: Iterable[str], workdir: str | None, what: str, submit_host: str | None = None) -> list[str]:
    """Canonical texts with the submit directory filled in: relative paths on the submit host are
    its, and a stage-out with no destination goes to it. SpecError if it is needed and not known,
    or if a pair names a host other than `submit_host` (`check_host`; None: not known)."""
    out = []
    for stage in map(parse, texts):
        check_host(stage, submit_host, what)
        if not stage.is_s3 and not stage.path.startswith("/"):
            if not workdir:
                raise SpecError(f"{what} '{stage.text()}': give an absolute path (no submit directory is known)")
            base = workdir.rstrip("/") + "/"
            path = posixpath.normpath(posixpath.join(base, stage.path)) + ("/" if stage.path.endswith("/") else "")
            if not stage.path:
                path = base
            stage = Stage(stage.local, f"{stage.host}:{path}")
        out.append(stage.text())
    return out


def parse(text: str) -> Stage:
    """A canonical text as stored on the job back into its Stage."""
    local, _, remote = text.partition("@")
    return Stage(local.replace("\\,", ","), remote.replace("\\,", ","))


def stages(job: dict, field: str, index: int | None = None) -> list[Stage]:
    """The job's stage-in (`field` STAGEIN) or stage-out (STAGEOUT) pairs, for task `index` of an array."""
    return [for_task(parse(t), index) for t in job.get(field) or ()]


def for_task(stage: Stage, index: int | None) -> Stage:
    """`^array_index^` replaced by the task's index (left as it is outside an array)."""
    if index is None:
        return stage
    return Stage(stage.local.replace(ARRAY_INDEX, str(index)), stage.remote.replace(ARRAY_INDEX, str(index)))


def pbs_text(texts: Iterable[str] | None) -> str | None:
    """The `stagein`/`stageout` attribute as qstat -f shows it."""
    joined = ",".join(texts or ())
    return joined or None


def files_text(files: Iterable[dict] | None) -> str | None:
    """`stageout_files` as qstat -f shows it: `DEST (N bytes)` for each file, comma separated."""
    joined = ",".join(f"{_escape(str(f.get('dest')))} ({int(f.get('size') or 0)} bytes)" for f in files or ())
    return joined or None


# ---- helpers ------------------------------------------------------------------------------------

def _split_escaped(text: str) -> list[str]:
    items, current, prev = [], "", ""
    for char in text:
        if char == "," and prev != "\\":
            items.append(current)
            current = ""
        else:
            current += char
        prev = char
    items.append(current)
    if any(not i.strip() for i in items) and len(items) > 1:
        raise SpecError(f"illegal -W value '{text.strip()}': an empty item between commas")
    return [i.replace("\\,", ",") for i in items if i.strip()]


def _escape(text: str) -> str:
    return text.replace(",", "\\,")


def _split_arg(text: str, what: str, usage: str) -> tuple[str, str]:
    """`A[:B]` split at the first ':' that is not an s3:// URI's own."""
    value = text.strip()
    if not value:
        raise SpecError(f"{what}: give {usage}")
    skip = len(S3) if value.startswith(S3) else 0
    cut = value.find(":", skip)
    if cut < 0:
        return value, ""
    first, second = value[:cut], value[cut + 1:]
    if not first or not second:
        raise SpecError(f"{what} '{value}': give {usage}")
    return first, second


def _local(path: str, what: str) -> str:
    """A path in the job's directory: relative, within it (no '..' out of it), on one line."""
    value = path.strip()
    _line(value, what)
    if value.startswith("/") or value.startswith("~"):
        raise SpecError(f"{what} '{value}': the name in the job's directory must be relative, as in in.txt")
    if ".." in value.split("/"):
        raise SpecError(f"{what} '{value}': the name in the job's directory must stay inside it (no '..')")
    normal = posixpath.normpath(value)
    return normal + ("/" if value.endswith("/") and normal != "." else "")


def _path(path: str, what: str) -> str:
    value = path.strip()
    _line(value, what)
    if value.startswith("~"):
        raise SpecError(f"{what} '{value}': give the path without '~' (it is not expanded)")
    return value


def _s3(uri: str, what: str) -> str:
    value = uri.strip()
    _line(value, what)
    bucket = value[len(S3):].partition("/")[0]
    if not bucket or not all(c.isalnum() or c in ".-" for c in bucket):
        raise SpecError(f"{what} '{value}': give s3://bucket/key")
    return value


def _line(value: str, what: str) -> None:
    if not value:
        raise SpecError(f"{what}: give a path")
    if any(c in value for c in "\n\r\0") or len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise SpecError(f"{what} '{value[:40]}': a path is one line of at most {MAX_PATH_BYTES} bytes")
