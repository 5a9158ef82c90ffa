"""An array's task maps on DynamoDB: large pages in items of their own, beats apart from the array.

The layout test builds a 1,000,000-task array whose every task failed, through the
core's own operations, and lays it out as the store writes it; the flow test runs a
small array on moto whose failures spill, and reads it back whole.
"""

from hyperbatch.adapters.aws import items
from hyperbatch.core import tasks
from hyperbatch.core.model import Expect, apply, new_job
from hyperbatch.services.dispatch import Dispatcher, Outcome
from tests.handmade_ids import new_job_id

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit


def write(doc, change):
    """What update_array writes: the change, then the derived state."""
    new = apply(doc, Expect(), change)
    return {**new, **tasks.derived_fields(new)}


def status_of(pos: int) -> int:
    """A different exit status from each neighbour: the worst case for runs (none longer than one task)."""
    return 1 + pos % 3


def test_a_million_task_array_whose_tasks_all_fail_settles_in_items_within_the_limit():
    total, chunk = 1_000_000, 50_000
    doc = new_job(id="7", queue="batch", array=f"1-{total}", total=total, pending=total)
    for lo in range(0, total, chunk):
        doc = write(doc, tasks.claim_chunk(doc, f"c{lo}", lo, lo + chunk, 1, "w", 0.0).change)
        settled = tasks.finish_chunk(doc, f"c{lo}", {pos: status_of(pos) for pos in range(lo, lo + chunk)})
        doc = write(doc, settled.change)
    assert (doc["state"], doc["failed"], doc["pending"], doc["running"]) == ("FAILED", total, 0, 0)
    assert doc["exit_status"] == 1 and len(doc["reason"]) < 300  # the reason names the first runs only
    layout = items.array_layout(doc)
    sizes = [items.item_bytes(item) for item in layout]
    assert max(sizes) < ITEM_LIMIT
    assert sizes[0] < 16 * 1024  # the job item, which every write of the array rewrites, stays small
    # Read back from the page items, every task's status is there.
    texts = {item["sk"]["S"][len(items.PAGE_SK_PREFIX):]: item["text"]["S"] for item in layout[1:]}
    job = items.doc_from_item(layout[0])
    pages = {page: texts[text[1:]] if items.is_stub(text) else text for page, text in job[tasks.FAILED_MAP].items()}
    failed = tasks.TaskMap(pages)
    assert failed.count() == total and all(failed.get(pos) == status_of(pos) for pos in range(0, total, 9973))


def test_a_spilled_array_runs_settles_and_reads_back_whole(aws, monkeypatch):
    monkeypatch.setattr(items, "INLINE_PAGE_BYTES", 16)  # a few failures already spill
    total = 40
    doc = new_job(id=new_job_id(), owner="alice", queue="batch", definition="standard", array=f"1-{total}",
                  total=total, pending=total)
    aws.store.create([doc], [])
    aws.queue.send("batch", doc["id"], 0, total, 1)
    worker = Dispatcher(aws.store, aws.queue, "w1", "us-east-1", lease_seconds=30)
    seen = set()
    while (item := aws.queue.claim("batch", "w1", 8, 30)) is not None:
        run = worker.start(item)
        if run is None:
            continue
        before = aws.store.get(doc["id"])["version"]
        assert not worker.heartbeat(run).lease_lost  # a beat without progress: the array is not written
        assert aws.store.get(doc["id"])["version"] == before and run.item.id in aws.store.beats(doc["id"])
        worker.finish_tasks(run, {pos: Outcome(status_of(pos)) for pos in run.positions})
        seen.update(run.positions)
        aws.queue.flush()
    assert seen == set(range(total))
    done = aws.store.get(doc["id"])
    assert (done["state"], done["failed"]) == ("FAILED", total)
    assert tasks.by_index(done, tasks.FAILED_MAP) == {str(pos + 1): status_of(pos) for pos in range(total)}
    # The job item holds a stub; the one page item left is the one it names, due to expire with the job.
    raw = aws.dynamodb.get_item(TableName=aws.plane.table, Key={"pk": {"S": doc["id"]}, "sk": {"S": "job"}})["Item"]
    stub = raw[tasks.FAILED_MAP]["M"]["0"]["S"]
    pages = aws.dynamodb.query(
        TableName=aws.plane.table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={":p": {"S": doc["id"]}, ":s": {"S": items.PAGE_SK_PREFIX}})["Items"]
    assert items.is_stub(stub) and [p["sk"]["S"] for p in pages] == [items.PAGE_SK_PREFIX + stub[1:]]
    assert int(pages[0][items.TTL_ATTRIBUTE]["N"]) == int(raw[items.TTL_ATTRIBUTE]["N"])
    # Another process (no page in its cache) reads the same document.
    other = type(aws.store)(aws.plane.table, aws.dynamodb, queues=["batch"])
    assert other.get(doc["id"]) == done
