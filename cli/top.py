"""`hyper top`: a live view of the scheduler in the terminal, and the array progress bar it shares
with `qsub --wait`.

It reads only the HTTP API, through the CLI's client, so it works against a local daemon and an AWS
host alike: GET /queues (jobs per state per queue), GET /nodes (workers, per region and on
premises) and GET /jobs (the newest 2,000 unfinished jobs, and the newest finished ones for arrays that just
ended and for failures). Rates and times left come from successive samples (hyperbatch.cli.progress).

On a terminal it takes the whole screen (rich's Live, redrawn in place, no flicker) and reads keys
in cbreak mode between refreshes, so the screen keeps moving while it waits for a key: `q` quits,
`u` and `Q` step through the users and the queues seen. The terminal is put back as it was on
every way out (q, Ctrl-C, an error). Anywhere else (a pipe, a file, `--once`) it prints one
snapshot and exits, so scripts can use it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import click

from hyperbatch.cli import output
from hyperbatch.cli.errors import CliError, Unreachable
from hyperbatch.cli.progress import (Counts, Filters, Rate, Tracker, cycle, duration_text, owner_of, rate_text,
                                     short_user)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

RECENT_FINISHED = 50  # finished jobs read each refresh: arrays that just ended, the newest failures
# Unfinished jobs read each refresh, newest first: a backlog of a million single jobs is counted by
# GET /queues, not read page after page every two seconds; arrays older than these are not shown.
ACTIVE_READ = 2000
SHOWN_FAILURES = 8
RECENT_ARRAYS = 5  # arrays that ended stay in view (at 100%) while among the newest finished jobs
BAR_WIDTH = 30
KEYS = "q quit · u user · Q queue"
ACTIVE = "WAITING,HELD,QUEUED,RUNNING"
# A queue's jobs per state, under headings short enough for 80 columns.
QUEUE_COLUMNS = {"WAITING": "wait", "HELD": "held", "QUEUED": "queued", "RUNNING": "run", "SUCCEEDED": "ok",
                 "FAILED": "failed", "CANCELLED": "deleted"}
SNAPSHOT_WIDTH = 160  # --once off a terminal: wide enough that no row wraps (COLUMNS wins when set)
FINISHED = "SUCCEEDED,FAILED,CANCELLED"


@dataclass
class Snapshot:
    """What the API answered at one moment (`at`, time.time()), before filters."""

    at: float
    server: str = ""
    queues: list[dict] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    active: list[dict] = field(default_factory=list)
    finished: list[dict] = field(default_factory=list)  # newest first
    more_active: bool = False  # more unfinished jobs than were read (ACTIVE_READ)


def take(client: Any, filters: Filters) -> Snapshot:
    """One sample of the scheduler through the API; the user and queue filters are asked of the
    server (GET /jobs?owner=&queue=), so a filtered view reads only what it shows."""
    from hyperbatch.cli.pbs.common import list_jobs

    _, queues = client.request("GET", "/queues")
    _, nodes = client.request("GET", "/nodes")
    query = {"owner": filters.user or "*", "queue": filters.queue}
    active = list_jobs(client, {**query, "state": ACTIVE}, most=ACTIVE_READ)
    _, recent = client.request("GET", "/jobs", query={**query, "state": FINISHED, "limit": RECENT_FINISHED})
    return Snapshot(at=time.time(), server=str((queues or {}).get("server") or ""),
                    queues=list((queues or {}).get("queues") or []), nodes=list((nodes or {}).get("nodes") or []),
                    active=active, finished=list((recent or {}).get("jobs") or []), more_active=len(active) >= ACTIVE_READ)


@dataclass(frozen=True)
class ArrayRow:
    id: str
    name: str
    owner: str
    counts: Counts
    rate: float | None
    eta: float | None


@dataclass(frozen=True)
class Failure:
    id: str
    owner: str
    queue: str
    reason: str


@dataclass
class View:
    """What the screen shows, from a snapshot, the filters and the samples so far."""

    server: str
    filters: Filters
    queues: list[tuple[str, dict[str, int], int]]  # name, jobs per state, backlog
    workers: dict[str, tuple[int, int]]  # region (or onprem) -> (workers, busy)
    arrays: list[ArrayRow]
    failures: list[Failure]
    users: list[str]
    queue_names: list[str]
    partial: bool = False  # arrays among the newest ACTIVE_READ unfinished jobs only


def build_view(snap: Snapshot, filters: Filters, tracker: Tracker) -> View:
    """The view of `snap` under `filters`; `tracker` is fed the sample, so call once per snapshot."""
    active = [j for j in snap.active if filters.admits(j)]
    finished = [j for j in snap.finished if filters.admits(j)]
    arrays_now = [j for j in active if Counts.of(j) is not None]
    arrays_done = [j for j in finished if Counts.of(j) is not None][:RECENT_ARRAYS]
    tracker.observe(snap.at, arrays_now + arrays_done)
    arrays = []
    for job in sorted(arrays_now, key=lambda j: int(j.get("seq") or 0)) + arrays_done:
        counts = Counts.of(job)
        assert counts is not None
        rate = tracker.rate(str(job["id"]))
        arrays.append(ArrayRow(str(job["id"]), str(job.get("name") or ""), _user(job), counts, rate.per_second(),
                               rate.eta(counts.remaining)))
    workers: dict[str, tuple[int, int]] = {}
    for node in snap.nodes:
        if filters.queue is not None and node.get("queue") != filters.queue:
            continue
        region = str(node.get("region") or "?")
        total, busy = workers.get(region, (0, 0))
        workers[region] = (total + 1, busy + (node.get("state") == "job-busy"))
    queues = [(str(q["name"]), {k: int(v) for k, v in (q.get("counts") or {}).items()}, int(q.get("backlog") or 0))
              for q in snap.queues if filters.queue is None or q.get("name") == filters.queue]
    everyone = snap.active + snap.finished
    return View(server=snap.server, filters=filters, queues=queues, workers=dict(sorted(workers.items())),
                arrays=arrays, failures=_failures(active + finished, tracker, snap.at),
                users=sorted({owner_of(j) for j in everyone} - {""}),
                queue_names=sorted({str(q["name"]) for q in snap.queues}), partial=snap.more_active)


def _failures(jobs: list[dict], tracker: Tracker, now: float) -> list[Failure]:
    """The newest failures: failed jobs and failed or deleted array tasks, newest first. A job's time is
    when it finished; an array task's, when this command first saw it failed (the API keeps no time
    per task)."""
    found: list[tuple[float, Failure]] = []
    for job in jobs:
        counts = Counts.of(job)
        if counts is None:
            if job.get("state") == "FAILED":
                reason = str(job.get("reason") or output.outcome_text("FAILED", job.get("exit_status")))
                when = job.get("finished_at") if isinstance(job.get("finished_at"), (int, float)) else now
                found.append((float(when), Failure(str(job["id"]), _user(job), str(job.get("queue") or ""), reason)))
            continue
        array = job.get("array") or {}
        for index, status in (array.get("failed_tasks") or {}).items():
            task = str(job["id"]).replace("[]", f"[{index}]", 1)
            reason = output.outcome_text("FAILED", status) or "failed"
            found.append((tracker.seen_at(task, now), Failure(task, _user(job), str(job.get("queue") or ""), reason)))
    found.sort(key=lambda pair: -pair[0])
    tracker.forget_except(f.id for _, f in found)
    return [f for _, f in found[:SHOWN_FAILURES]]


def _user(job: Mapping[str, Any]) -> str:
    return short_user(str(job.get("owner") or ""))


# ---- rendering -------------------------------------------------------------------------------

def bar(counts: Counts, width: int = BAR_WIDTH) -> Text:
    """A bar in four parts: succeeded (green), failed or deleted (red), running (yellow), pending."""
    from rich.text import Text

    total = max(counts.total, 1)
    cells = []
    used = 0
    for number, style in ((counts.succeeded, "green"), (counts.unsuccessful, "red"), (counts.running, "yellow")):
        n = round(number * width / total)
        n = min(max(n, 1 if number else 0), width - used)
        cells.append((n, style))
        used += n
    text = Text()
    for n, style in cells:
        text.append("━" * n, style=style)
    text.append("━" * (width - used), style="grey35")
    return text


def progress_line(counts: Counts, rate: float | None, eta: float | None) -> Text:
    """One array's progress on one line (qsub --wait): the bar, done, failed, running, rate, time left."""
    line = bar(counts)
    line.append(f" {counts.done_text()} done", style="bold")
    line.append(f" · {counts.unsuccessful} failed", style="red" if counts.unsuccessful else "")
    line.append(f" · {counts.running} running · {rate_text(rate)} · ETA {duration_text(eta)}")
    return line


def render(view: View, problem: str | None = None, width: int = 80) -> RenderableType:
    """The screen for `view`, for a console `width` cells wide. Every cell is a Text, never a str: rich
    reads a str as markup, and owners, names and queues are not ours (`[/bold]` would raise)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def row(table: Table, *cells: str | Text) -> None:
        table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))

    title = Text.assemble(("HyperBatch", "bold"), f" {view.server} · ", time.strftime("%H:%M:%S"),
                          f" · {view.filters.text()}")
    compact = {"box": box.SIMPLE_HEAD, "title_justify": "left", "show_edge": False, "pad_edge": False}
    queues = Table(title="Queues", **compact)
    queues.add_column("queue")
    for heading in (*QUEUE_COLUMNS.values(), "backlog"):
        queues.add_column(heading, justify="right")
    for name, counts, backlog in view.queues:
        row(queues, name, *(str(counts.get(c, 0)) for c in QUEUE_COLUMNS), str(backlog))
    workers = Table(title="Workers", **compact)
    workers.add_column("region")
    workers.add_column("workers", justify="right")
    workers.add_column("busy", justify="right")
    for region, (total, busy) in view.workers.items():
        row(workers, "on premises" if region == "onprem" else region, str(total), str(busy))
    if not view.workers:
        row(workers, "none", "0", "0")
    arrays = Table(title=f"Arrays (among the newest {ACTIVE_READ:,} unfinished jobs)" if view.partial else "Arrays",
                   **compact)
    headings = ("array", "name", "user", "progress", "done", "fail", "run", "pend", "rate", "ETA")
    cells = [(row.id, row.name[:12], row.owner[:10], "", row.counts.done_text(), str(row.counts.unsuccessful),
              str(row.counts.running), str(row.counts.pending), rate_text(row.rate), duration_text(row.eta))
             for row in view.arrays]
    widths = [max([len(h), *(len(c[n]) for c in cells)]) for n, h in enumerate(headings)]
    # Every column keeps its text whole; the bar takes what is left of the screen's width, 8 to 30 cells.
    widths[3] = max(8, min(BAR_WIDTH, width - 3 * (len(headings) - 1) - sum(widths)))  # 3: a separator, 2 pads
    for number, heading in enumerate(headings):
        arrays.add_column(heading, justify="right" if number > 3 else "left", no_wrap=True, width=widths[number])
    for c, array in zip(cells, view.arrays):
        row(arrays, *c[:3], bar(array.counts, widths[3]), c[4], Text(c[5], style="red" if c[5] != "0" else ""), *c[6:])
    parts: list[Any] = [title, queues, workers, arrays if view.arrays else Text("Arrays: none", style="italic")]
    failures = Table(title="Newest failures", **compact)
    for name in ("job", "user", "queue", "reason"):
        failures.add_column(name)
    for failure in view.failures:
        row(failures, failure.id, failure.owner, failure.queue, Text(failure.reason, style="red"))
    parts.append(failures if view.failures else Text("Newest failures: none", style="italic"))
    if problem:
        parts.append(Text(problem, style="bold red"))
    return Group(*parts)


# ---- the command -----------------------------------------------------------------------------

def _a_number(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value != value:  # NaN passes FloatRange (no comparison holds): the screen would never refresh
        raise click.BadParameter("give a number of seconds, 0.2 to 3600")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--once", is_flag=True, help="Print one snapshot and exit (what happens anyway when stdout is no terminal).")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True, callback=_a_number,
              help="Seconds between refreshes.")
@click.option("--user", "-u", default=None, help="Only this user's jobs (the `u` key changes it).")
@click.option("--queue", "-q", default=None, help="Only this queue (the `Q` key changes it).")
def top(once: bool, interval: float, user: str | None, queue: str | None) -> int:
    """Watch queues, workers, arrays' progress and the newest failures, live.

    \b
    Keys: q quits; u steps through the users seen (then all); Q through the queues.
    Off a terminal, or with --once, prints one snapshot and exits.
    """
    from hyperbatch.cli.client import current_client

    client = current_client()
    filters = Filters(user or None, queue or None)
    tracker = Tracker()
    if once or not sys.stdout.isatty():
        from rich.console import Console

        view = build_view(take(client, filters), filters, tracker)
        width = None if os.environ.get("COLUMNS") or sys.stdout.isatty() else SNAPSHOT_WIDTH
        console = Console(highlight=False, width=width)
        console.print(render(view, width=console.width))
        return 0
    return Screen(lambda f: take(client, f), filters, tracker, interval).run()


class Screen:
    """The live view: a refresh every `interval` seconds, keys read between them."""

    def __init__(self, sample: Callable[[Filters], Snapshot], filters: Filters, tracker: Tracker,
                 interval: float) -> None:
        self.sample, self.filters, self.tracker, self.interval = sample, filters, tracker, interval
        self.view: View | None = None
        self.problem: str | None = None
        self.users: set[str] = set()  # every owner seen, for `u` to step through

    def refresh(self) -> None:
        try:
            snap = self.sample(self.filters)
        except Unreachable as exc:  # the host went away for a while: say so, keep the last view, retry
            self.problem = f"{exc.message} (retrying every {self.interval:g}s)"
            return
        except CliError as exc:  # refused (another user's jobs need an admin on AWS): say why, keep the view
            self.problem = exc.message
            return
        self.problem = None
        self.view = build_view(snap, self.filters, self.tracker)
        self.users |= set(self.view.users)  # a view filtered by user lists only that user: remember the others

    def press(self, key: str) -> bool:
        """Act on a key; False to quit."""
        if key in ("q", "\x1b"):
            return False
        if self.view is not None and key == "u":
            self.filters = Filters(cycle(self.filters.user, self.users), self.filters.queue)
        elif self.view is not None and key == "Q":
            self.filters = Filters(self.filters.user, cycle(self.filters.queue, self.view.queue_names))
        else:
            return True
        self.tracker = Tracker()  # another selection: its rates start afresh
        self.refresh()
        return True

    def renderable(self, width: int) -> RenderableType:
        """The view above, the keys on the last line: a view taller than the screen is cut, never the keys."""
        from rich.layout import Layout
        from rich.text import Text

        body = Text(self.problem or "reading…") if self.view is None else render(self.view, self.problem, width)
        layout = Layout()
        layout.split_column(Layout(body), Layout(Text(KEYS, style="reverse"), size=1))
        return layout

    def run(self) -> int:
        from rich.console import Console
        from rich.live import Live

        with _cbreak(sys.stdin) as keys:
            self.refresh()
            if self.view is None and self.problem:  # nothing to show at all: one line, as --once would
                raise CliError(self.problem.split(" (retrying every", 1)[0])
            console = Console(highlight=False)
            with Live(self.renderable(console.width), console=console, screen=True, auto_refresh=False,
                      redirect_stdout=False, redirect_stderr=False) as live:
                due = time.monotonic() + self.interval
                while True:
                    wait = max(0.0, due - time.monotonic())
                    key = keys(wait)
                    if key is not None and not self.press(key):
                        return 0
                    if time.monotonic() >= due:
                        self.refresh()
                        due = time.monotonic() + self.interval
                    live.update(self.renderable(console.width), refresh=True)


class _cbreak:
    """stdin in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still interrupts) for the life of
    the block, put back as it was however the block ends. Yields a function that waits up to N
    seconds for a key and returns it, or None. Without a terminal on stdin there are no keys: it
    only waits."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.saved: Any = None
        self.fd = -1

    def __enter__(self) -> Callable[[float], str | None]:
        import select

        if self.stream.isatty():
            import termios
            import tty

            self.fd = self.stream.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

        def key(wait: float) -> str | None:
            if self.fd < 0:
                time.sleep(wait)
                return None
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return None
            data = os.read(self.fd, 32)
            return data.decode("utf-8", "replace")[:1] if data else "q"  # end of input: quit

        return key

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


# ---- qsub --wait -----------------------------------------------------------------------------

class ArrayBar:
    """The progress bar `qsub --wait` shows for an array on a terminal: one line, redrawn as the job is
    polled, left on the screen when the array ends."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.rate = Rate()
        self.live = Live(console=Console(highlight=False), auto_refresh=False, transient=False)
        self.live.start()
        self.show(job)

    def show(self, job: Mapping[str, Any]) -> None:
        counts = Counts.of(job)
        if counts is None:
            return
        self.rate.add(time.time(), counts.finished)
        self.live.update(progress_line(counts, self.rate.per_second(), self.rate.eta(counts.remaining)),
                         refresh=True)

    def close(self) -> None:
        self.live.stop()
