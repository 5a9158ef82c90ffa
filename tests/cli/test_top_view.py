"""The view model `hyper top` and `qsub --wait` share (hyperbatch.cli.progress, hyperbatch.cli.top's
build_view): progress, rate, time left, filters; and qstat's Time Use column for arrays and tasks."""

from __future__ import annotations

import io

import pytest

from hyperbatch.cli import output
from hyperbatch.cli.progress import (Counts, Filters, Rate, Tracker, cycle, duration_text, owner_of, rate_text,
                                     short_user)
from hyperbatch.cli.top import Snapshot, bar, build_view, render


def array(seq: int, owner: str = "alice", queue: str = "batch", state: str = "RUNNING", **counts) -> dict:
    numbers = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "failed_tasks": {}} | counts
    total = sum(v for k, v in numbers.items() if k != "failed_tasks")
    return {"id": f"{seq}[].srv", "seq": str(seq), "name": f"a{seq}", "owner": f"{owner}@host", "queue": queue,
            "state": state, "array": {"total": total, **numbers}}


def job(seq: int, state: str = "FAILED", owner: str = "bob", finished_at: float = 0.0, **fields) -> dict:
    return {"id": f"{seq}.srv", "seq": str(seq), "owner": owner, "queue": "batch", "state": state, "array": None,
            "finished_at": finished_at, **fields}


def test_counts_of_an_array_and_of_a_plain_job():
    counts = Counts.of(array(1, pending=500, running=10, succeeded=480, failed=7, cancelled=3))
    assert counts == Counts(total=1000, succeeded=480, failed=7, cancelled=3, running=10, pending=500)
    assert (counts.finished, counts.unsuccessful, counts.remaining, counts.done_text()) == (490, 10, 510, "490/1000")
    assert counts.fraction == pytest.approx(0.49)
    assert Counts.of(job(2)) is None


def test_rate_and_eta_come_from_successive_samples():
    rate = Rate(window=60)
    assert rate.per_second() is None and rate.eta(100) is None  # one sample or none: no guess
    rate.add(100.0, 0)
    assert rate.per_second() is None
    rate.add(110.0, 50)
    assert rate.per_second() == pytest.approx(5.0)
    assert rate.eta(100) == pytest.approx(20.0)
    assert rate.eta(0) == 0.0
    rate.add(110.0, 80)  # the clock did not move: no sample
    assert rate.per_second() == pytest.approx(5.0)


def test_rate_follows_the_last_window_and_starts_afresh_when_tasks_run_again():
    rate = Rate(window=10)
    for t, done in ((0, 0), (5, 100), (10, 200), (15, 210), (20, 220), (25, 230)):
        rate.add(float(t), done)
    assert rate.per_second() == pytest.approx(2.0)  # 210 -> 230 over 10 s: the fast start is forgotten
    rate.add(30.0, 100)  # fewer finished: tasks re-run (qrerun)
    assert rate.per_second() is None
    nothing = Rate()
    nothing.add(0.0, 5)
    nothing.add(30.0, 5)
    assert nothing.per_second() == 0.0 and nothing.eta(10) is None  # nothing finishes: no time left to give


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0s"), (42.4, "42s"), (185, "3m05s"), (7620, "2h07m")])
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize("rate, text", [(None, "-"), (0.0, "0.0/s"), (0.05, "3.0/min"), (12.25, "12.2/s")])
def test_rate_text(rate, text):
    assert rate_text(rate) == text


def test_filters_and_the_keys_that_step_through_them():
    assert Filters().admits(array(1))
    assert Filters(user="alice").admits(array(1)) and not Filters(user="bob").admits(array(1))
    assert not Filters(queue="west").admits(array(1))
    assert cycle(None, ["bob", "alice"]) == "alice"
    assert cycle("alice", ["bob", "alice"]) == "bob"
    assert cycle("bob", ["bob", "alice"]) is None  # then everyone again
    assert cycle("carol", ["alice"]) is None  # a filter given on the command line stays in the turn
    assert cycle(None, []) is None


def test_owners_as_the_api_names_them_and_as_people_read_them():
    arn = "arn:aws:iam::111122223333:user/alice"
    assert owner_of({"owner": arn}) == arn and short_user(arn) == "alice"
    assert short_user("arn:aws:sts::111122223333:assumed-role/Ops/jo") == "jo"
    assert owner_of({"owner": "bob@login1"}) == "bob" and short_user("bob@login1") == "bob"
    assert Filters(user=arn).admits({"owner": arn}) and Filters(user=arn).text() == "user alice · queue all"


def snapshot(at: float, active: list[dict], finished: list[dict] = ()) -> Snapshot:
    return Snapshot(at=at, server="srv",
                    queues=[{"name": "batch", "counts": {"RUNNING": 2, "QUEUED": 1}, "backlog": 7},
                            {"name": "west", "counts": {}, "backlog": 0}],
                    nodes=[{"name": "w1", "region": "us-east-1", "queue": "batch", "state": "job-busy"},
                           {"name": "w2", "region": "us-east-1", "queue": "batch", "state": "free"},
                           {"name": "m1", "region": "onprem", "queue": "west", "state": "free"}],
                    active=active, finished=list(finished))


def test_build_view_gives_progress_rate_and_eta_per_array_from_two_snapshots():
    tracker = Tracker()
    first = build_view(snapshot(100.0, [array(1, pending=900, succeeded=100)]), Filters(), tracker)
    assert [(a.id, a.counts.finished, a.rate, a.eta) for a in first.arrays] == [("1[].srv", 100, None, None)]
    later = build_view(snapshot(110.0, [array(1, pending=700, running=50, succeeded=240, failed=10)]), Filters(),
                       tracker)
    (row,) = later.arrays
    assert row.counts.finished == 250 and row.rate == pytest.approx(15.0) and row.eta == pytest.approx(50.0)
    assert later.queues == [("batch", {"RUNNING": 2, "QUEUED": 1}, 7), ("west", {}, 0)]
    assert later.workers == {"onprem": (1, 0), "us-east-1": (2, 1)}


def test_build_view_filters_by_user_and_queue():
    active = [array(1, owner="alice", pending=5), array(2, owner="bob", queue="west", pending=5)]
    mine = build_view(snapshot(1.0, active), Filters(user="alice"), Tracker())
    assert [a.id for a in mine.arrays] == ["1[].srv"] and mine.users == ["alice", "bob"]
    west = build_view(snapshot(1.0, active), Filters(queue="west"), Tracker())
    assert [a.id for a in west.arrays] == ["2[].srv"]
    assert [q[0] for q in west.queues] == ["west"] and west.workers == {"onprem": (1, 0)}
    assert west.queue_names == ["batch", "west"]


def test_failures_newest_first_with_their_reasons():
    tracker = Tracker()
    failed_jobs = [job(5, finished_at=50.0, reason="walltime exceeded", exit_status=-29),
                   job(4, finished_at=40.0, exit_status=2), job(3, state="SUCCEEDED", finished_at=60.0)]
    view = build_view(snapshot(100.0, [array(1, pending=3, failed=1, failed_tasks={"7": 265})], failed_jobs),
                      Filters(), tracker)
    assert [(f.id, f.reason) for f in view.failures] == [
        ("1[7].srv", "killed by signal 9 (SIGKILL)"), ("5.srv", "walltime exceeded"), ("4.srv", "exit status 2")]
    later = build_view(snapshot(200.0, [array(1, pending=2, failed=2, failed_tasks={"7": 265, "9": 1})], failed_jobs),
                       Filters(), tracker)
    assert [f.id for f in later.failures][:2] == ["1[9].srv", "1[7].srv"]  # 9 seen later than 7: newer


def test_bar_shows_each_part_in_proportion():
    text = bar(Counts(total=100, succeeded=50, failed=10, running=20, pending=20), width=20)
    assert text.plain == "━" * 20
    assert [(span.end - span.start, str(span.style)) for span in text.spans] == [
        (10, "green"), (2, "red"), (4, "yellow"), (4, "grey35")]
    assert [s.end - s.start for s in bar(Counts(total=1000, failed=1, pending=999), width=20).spans] == [1, 19]


@pytest.mark.parametrize("state, status, word, words", [
    ("FAILED", 3, "exit=3", "exit status 3"),
    ("FAILED", 265, "sig=9", "killed by signal 9 (SIGKILL)"),
    ("FAILED", -1, "exit=-1", "exit status -1"),
    ("FAILED", None, "failed", "failed"),
    ("CANCELLED", None, "deleted", "deleted before it finished"),
    ("SUCCEEDED", 0, None, None),
    ("RUNNING", None, None, None),
])
def test_task_outcome(state, status, word, words):
    assert output.task_outcome(state, status) == word
    assert output.outcome_text(state, status) == words


def test_qstat_time_use_shows_array_progress_and_failed_tasks_in_pbs_columns():
    view = array(12, pending=500, running=10, succeeded=480, failed=7, cancelled=3) | {"server": "srv", "job_state": "B"}
    row = output.row_of(output.job_attributes(view, 0.0), "12[].srv")
    line = output.table([row], header=False)
    assert line.split() == ["12[].srv", "a12", "alice", "490/1000", "B", "batch"]
    assert line[53:61] == "490/1000" and line[62] == "B"  # PBS's Time Use and S columns, where they always are
    big = array(13, pending=5000, succeeded=5000)
    assert output.time_use(output.row_of(output.job_attributes(big, 0.0), "13[].srv")) == "50%"
    task = {"id": "12[4].srv", "index": 4, "state": "FAILED", "exit_status": 3, "job_state": "X",
            "array_id": "12[].srv", "name": "a12", "owner": "alice", "queue": "batch", "server": "srv"}
    attrs = output.task_attributes(task, 0.0)
    assert output.table([output.row_of(attrs, task["id"])], header=False).split() == [
        "12[4].srv", "a12", "alice", "exit=3", "X", "batch"]
    assert ("comment", None, "exit status 3") in attrs
    ok = task | {"state": "SUCCEEDED", "exit_status": 0}
    assert output.table([output.row_of(output.task_attributes(ok, 0.0), "12[4].srv")], header=False).split()[3] == "0"


def test_screen_keys_step_the_filters_and_q_quits():
    from hyperbatch.cli.errors import ApiError, Unreachable
    from hyperbatch.cli.top import Screen

    asked: list[Filters] = []
    failure: list[Exception] = []

    def sample(filters: Filters) -> Snapshot:
        asked.append(filters)
        if failure:
            raise failure.pop()
        everyone = [array(1, owner="alice", pending=1), array(2, owner="bob", pending=1)]
        return snapshot(1.0, [a for a in everyone if filters.admits(a)])  # the server filters, as GET /jobs does

    screen = Screen(sample, Filters(), Tracker(), interval=2)
    screen.refresh()
    assert screen.press("u") and screen.filters == Filters(user="alice") and asked[-1] == Filters(user="alice")
    assert screen.press("u") and screen.filters == Filters(user="bob")  # seen before the view was alice's only
    assert screen.press("u") and screen.filters == Filters()
    assert screen.press("u") and screen.press("Q") and screen.filters == Filters(user="alice", queue="batch")
    assert screen.press("x") and len(asked) == 6  # any other key: nothing asked
    failure.append(ApiError(403, "Forbidden", "only admins may list other users' jobs"))
    assert screen.press("u") and screen.problem == "only admins may list other users' jobs"
    assert screen.view is not None  # the last view stays on the screen
    failure.append(Unreachable("cannot reach HyperBatch at http://127.0.0.1:1"))
    screen.refresh()
    assert screen.problem == "cannot reach HyperBatch at http://127.0.0.1:1 (retrying every 2s)"
    screen.refresh()
    assert screen.problem is None
    assert not screen.press("q")


class PagedApi:
    """GET /jobs over `active` unfinished jobs (newest first, pages by `limit` and a `next` token)."""

    def __init__(self, active: list[dict]):
        self.active, self.read = active, 0

    def request(self, method, path, query=None):
        if path == "/queues":
            return 200, {"server": "srv", "queues": [{"name": "batch", "counts": {"QUEUED": len(self.active)}}]}
        if path == "/nodes":
            return 200, {"nodes": []}
        if "SUCCEEDED" in query["state"]:
            return 200, {"jobs": [], "next": None}
        start = int(query.get("next") or 0)
        page = self.active[start:start + query["limit"]]
        self.read += len(page)
        end = start + len(page)
        return 200, {"jobs": page, "next": str(end) if end < len(self.active) else None}


def test_a_big_backlog_is_counted_by_its_queue_not_read_every_refresh():
    from hyperbatch.cli import top

    backlog = [array(9000)] + [job(n, state="QUEUED") for n in range(8999, 3000, -1)]  # newest first
    api = PagedApi(backlog)
    snap = top.take(api, Filters())
    assert api.read == top.ACTIVE_READ and snap.more_active
    view = build_view(snap, Filters(), Tracker())
    assert [a.id for a in view.arrays] == ["9000[].srv"] and view.queues == [("batch", {"QUEUED": 6000}, 0)]
    from rich.console import Console

    console = Console(width=120, record=True, file=io.StringIO())
    console.print(top.render(view, width=120))
    assert "Arrays (among the newest 2,000 unfinished jobs)" in console.export_text()
    small = PagedApi([array(7, pending=3)])
    assert not build_view(top.take(small, Filters()), Filters(), Tracker()).partial


def test_render_shows_names_owners_and_queues_as_text_never_as_rich_markup():
    """Owners come from the caller (X-Hyper-User locally) and queue names from the configuration: a
    `[/bold]` in one is shown as it is, not read as a style (rich's markup raised MarkupError on it)."""
    from rich.console import Console

    odd = "[/bold]x[red]"
    active = [array(1, owner=odd, queue=odd, pending=3, failed=1, failed_tasks={"2": 1})]
    snap = snapshot(1.0, active, [job(4, owner=odd, queue=odd, reason="[bold]why[/]")])
    snap.queues.append({"name": odd, "counts": {"QUEUED": 1}, "backlog": 0})
    snap.server = odd
    console = Console(record=True, width=200, color_system=None)
    console.print(render(build_view(snap, Filters(), Tracker()), problem="[/] gone", width=200))
    shown = console.export_text()
    assert shown.count(odd) >= 4 and "[bold]why[/]" in shown and "[/] gone" in shown


@pytest.mark.parametrize("value", ["nan", "0", "inf"])
def test_an_interval_that_is_no_number_of_seconds_is_a_usage_error(value):
    """NaN passed click's FloatRange, and the screen then spun without ever refreshing."""
    from click.testing import CliRunner

    from hyperbatch.cli.top import top

    result = CliRunner().invoke(top, ["--interval", value, "--once"])
    assert result.exit_code == 2 and "--interval" in result.output and "Traceback" not in result.output
