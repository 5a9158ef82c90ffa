"""JobStore on one DynamoDB table (the CDK stack's `<stack>-jobs`, see stacks/storage.py).

Items
-----
A job is one item; its document's fields are top-level attributes, so one
UpdateItem can check and change single fields, counters and map entries:

    pk = <job id>   sk = "job"             (the id is the job's sequence number, "1234")
    gsi1pk = owner   gsi1sk = job id padded to 12 digits   (index by_owner; not on a submission's jobs)
    gsi2pk = "<queue>#waiting" while the job is WAITING or HELD, absent otherwise
                     gsi2sk = padded job id   (index by_queue_state: sparse, work no message stands for)
    expires_at = finished_at + job_retention_days   (TTL, set when the job reaches a final state)

Job ids come from one counter item, in blocks (hyperbatch.core.ids.SequenceBlocks):

    pk = "sequence"   sk = "sequence"   last = the last sequence number reserved

`reserve_ids(n)` is one conditional UpdateItem `ADD last n` (1 WRU, whatever
n): the counter is written once per block, not per job, so it is no hot key
(a process reserves bigger blocks while it submits fast; a POST of 1,000
jobs reserves its 1,000 ids at once). A number is reserved once, so no job
write needs a condition to keep ids apart.

A submission (a create of several jobs of one owner with consecutive ids: one
POST of many, which takes one run of numbers from one block) is one by_owner
entry for all its jobs, whose items then carry no gsi1 keys:

    pk = "submission#<first id>"   sk = "submission"
    gsi1pk = owner   gsi1sk = first member id, padded   members = [job ids]
    queue = the members' queue when they all share one    expires_at = 2 x retention + 14 days after

Its conditional PutItem is written first; the job items and edges follow
with BatchWriteItem (1 WRU each, no condition: their ids were reserved for
this submit alone). Other creates write each job conditionally. No other
job's id lies between a submission's first and last member, so by_owner's
entries, newest first by their lowest id, list ids newest first (`_owner_ids`).

    pk = "owners"   sk = <owner>          (every owner that ever created a job: admin listings)
    pk = "workflow#<owner>"   sk = <name> (a workflow's record, put after its jobs: JobStore.create)
    pk = "counts#<queue>"   sk = "counts" (jobs per state and tasks_pending, kept from the stream:
                                           hyperbatch.adapters.aws.counters, `tally`)

Both job indexes project only what is filtered on in the index or needed to
expand an entry (names.INDEX_PROJECTIONS: queue, members; state): a by_owner
entry is written once, at create, and a by_queue_state entry only when a job
enters, leaves or moves within WAITING/HELD. A query reads ids from an index and
fetches the page's items with one strongly consistent BatchGetItem (per 100),
filtering state (and anything else the index could not) there.

Job ids increase with submit time (hyperbatch.core.ids), so sorting by id is
sorting by submit time; DynamoDB hashes `pk`, so a burst of submits
(consecutive ids) still spreads over every partition. A dependency edge is an item of its own
in the child's item collection:

    pk = <child id>   sk = "parent#<parent id>"   gsi3pk = parent id   gsi3sk = child id   (index by_parent)

A script over a few KB is not in the item: it is in the files bucket and the
item's `script_ref` names it (hyperbatch.adapters.aws.scripts), so items,
writes and stream records stay small.

An array's task maps (hyperbatch.core.tasks.TaskMap) are pages of text in
its item; a page longer than a few hundred bytes is kept in an item of its
own, written once under a new token and never changed, and the job item holds
"@<token>" in its place (items.spill), so the job item stays small however its
tasks end. A chunk's heartbeat is an item of its own too (`beat`):

    pk = <array id>   sk = "page#<token>"      text = the page
    pk = <array id>   sk = "beat#<chunk id>"   at = its last beat   expires_at = a day later

Only job items (sk = "job") are jobs in the stream; `hyperbatch.adapters.aws.events`
and the counters skip every other item (the sequence counter's too).

Consistency: `get`, `get_many`, `counts` and `pending_tasks` read strongly
consistent. Queries go through global secondary indexes, which are
eventually consistent (typically well under a second behind); counts lag the
stream (the release function tallies each batch it handles).

Building items and expressions (and the one place Python values meet
DynamoDB attribute values) is hyperbatch.adapters.aws.items.
"""

from __future__ import annotations

import logging
import functools
import json
import heapq
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from typing import Callable, Iterable, Iterator

from botocore.exceptions import ClientError

from hyperbatch.support import backoff
from hyperbatch.core.errors import Conflict, NotFound, StaleTransition
from hyperbatch.core.ids import (
    MAX_SEQUENCE, check_reservation, consecutive, from_sort_key, number, sort_key, valid_job_id,
)
from hyperbatch.core.model import Change, Expect
from hyperbatch.core.names import INDEXES
from hyperbatch.core.ports import Page
from hyperbatch.core.tasks import BEAT_KEPT_SECONDS
from hyperbatch.adapters.aws import counters
from hyperbatch.adapters.aws.scripts import SCRIPT_REF, S3Scripts
from hyperbatch.adapters.aws.items import (
    ALL_STATES, BEAT_SK_PREFIX, FINAL_STATES, JOB_SK, MEMBERS, OWNERS_PK, PAGE_SK_PREFIX, PUT_TOKEN,
    SUBMISSION_EXTRA_SECONDS, SUBMISSION_PREFIX, TTL_ATTRIBUTE, WAITING_STATES, Expression, decode, doc_from_item,
    edge_item, expiry, item_bytes, job_item, needs_queue, owner_item, page_item, sequence_request, spill,
    state_value, stubs, submission_item, update_request, waiting_key, workflow_item, WORKFLOW_PREFIX,
)

log = logging.getLogger("hyperbatch.dynamo")

# TransactWriteItems: at most 100 actions and 4 MB per call.
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 4 * 1024 * 1024 - 64 * 1024  # headroom: our size estimate is not DynamoDB's exact one
TRANSACTION_RETRIES = 5
BATCH_WRITE_ITEMS = 25  # BatchWriteItem limit (16 MB: 25 items of at most 400 KB fit)
BATCH_GET_KEYS = 100  # BatchGetItem limit
QUERY_PAGE_MAX = 1000  # index entries per Query call at most (pages grow to this)
UNPROCESSED_RETRIES = 8
QUEUE_CACHE_SIZE = 100_000
PAGE_CACHE_SIZE = 2_000  # task pages kept apart (at most about 200 KB each) this process remembers
READ_RETRIES = 10  # reads of an array whose pages changed under them, before giving up


# ---- the store ------------------------------------------------------------------------------

class DynamoJobStore:
    """JobStore on DynamoDB; see the module docstring for the item layout.

    `queues` (the configured queue names) lets `query` list WAITING and HELD
    jobs without naming a queue, one by_queue_state partition per queue.
    Listings without an owner merge every registered owner's by_owner listing.
    Never a Scan.
    """

    def __init__(
        self, table: str, client, *, queues: Iterable[str] = (), retention_days: float = 30,
        clock: Callable[[], float] = time.time, scripts: S3Scripts | None = None,
    ):
        self.table, self.client = table, client
        # Large scripts go to the files bucket, the item keeps a reference (aws/scripts.py);
        # without one (tests of the store alone) they stay inline.
        self.scripts = scripts
        self.queues = list(queues)
        self.retention_seconds = retention_days * 86400
        self.clock = clock
        # job id -> queue. A job never changes queue, and nearly every update
        # follows a read of the same job in the same process, so this makes a
        # state change's index key known without another read.
        self._queues: OrderedDict[str, str] = OrderedDict()
        # Owners known to be in the registry: each is written once per store object, not per create.
        self._owners: set[str] = set()
        # Task pages kept apart (token -> text): a page item never changes, so a page read once is
        # known for good; and each array's stubs as last seen (job id -> (version, stubs)), so that a
        # write that replaces a page can delete the page item it replaced.
        self._page_texts: OrderedDict[str, str] = OrderedDict()
        self._stubs: OrderedDict[str, tuple[int, dict]] = OrderedDict()
        self._lock = threading.Lock()

    # ---- queue cache --------------------------------------------------------------------
    def _remember(self, doc: dict) -> dict:
        with self._lock:
            self._queues[doc["id"]] = doc["queue"]
            self._queues.move_to_end(doc["id"])
            while len(self._queues) > QUEUE_CACHE_SIZE:
                self._queues.popitem(last=False)
        return doc

    def queue_of(self, job_id: str) -> str:
        """The job's queue (cached; one small GetItem when not seen before). NotFound if no such job."""
        with self._lock:
            found = self._queues.get(job_id)
        if found is not None:
            return found
        response = self.client.get_item(
            TableName=self.table, Key=self._key(job_id), ProjectionExpression="#q",
            ExpressionAttributeNames={"#q": "queue"},
        )
        if "Item" not in response:
            raise NotFound(f"Unknown Job Id {job_id}")
        queue = decode(response["Item"]["queue"])
        self._remember({"id": job_id, "queue": queue})
        return queue

    @staticmethod
    def _key(job_id: str) -> dict:
        return {"pk": {"S": job_id}, "sk": {"S": JOB_SK}}

    # ---- ids ----------------------------------------------------------------------------
    def reserve_ids(self, n: int) -> int:
        """n consecutive sequence numbers: one conditional ADD on the counter item; returns the first."""
        try:
            response = self.client.update_item(**sequence_request(self.table, n))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            check_reservation(MAX_SEQUENCE + 1, n)  # the counter is past MAX_SEQUENCE - n: raises
            raise
        last = decode(response["Attributes"]["last"])
        return last - n + 1

    # ---- create -------------------------------------------------------------------------
    def create(self, docs: list[dict], edges: list[tuple[str, str]], workflow: dict | None = None) -> None:
        """Write new jobs and their edges, all or nothing; Conflict if an id (or a submission) is taken.

        Three ways, cheapest first:

        - A lone job without edges is one conditional PutItem.
        - Several jobs of one owner with consecutive ids (one submit's, from
          `reserve_ids`) are a submission: its conditional PutItem first, then
          the job items and edges with BatchWriteItem, 25 per call,
          unconditional: their ids were reserved for this submit alone. 1 WRU
          per item instead of a transaction's 2, and one by_owner entry for all of them.
        - Anything else uses TransactWriteItems, each job conditional on its id
          being new: at most 100 actions and 4 MB per call, 1,000 jobs are 10
          calls. Consecutive ids still put an ownerless submission item in the
          first transaction, so a second submission of the same ids fails.

        Across calls, all-or-nothing is kept by compensation: when a later call
        fails, what the earlier ones wrote is deleted again (the stream then
        carries an INSERT and a REMOVE for each: the counters net to zero, and
        work sent for such a job finds no job). A transaction
        carries a client request token, so botocore's retry of a call whose
        response was lost is idempotent instead of failing on our own first
        write as a Conflict; a conditional PutItem carries a token of this call
        (`put_token`, not part of the document) for the same reason: when the
        condition fails, the item that is there comes back (ALL_OLD), and if it
        bears our token, the create succeeded. Any other existing item is a Conflict.

        Every owner is put in the owners registry (unconditionally) the first
        time this object sees it, before its jobs, so an admin listing finds them.

        A workflow's record is put (unconditionally: the newest of a name wins) once every job is
        written; if that put fails, the jobs, their edges and their submission are deleted again.
        """
        ids = [d["id"] for d in docs]
        if len(set(ids)) != len(ids):
            raise Conflict("the same job id appears twice in one submission")
        if self.scripts is not None:
            docs = self.scripts.stage(docs)
        now = self.clock()
        self._register_owners(docs)
        if len(docs) == 1 and not edges:
            item = job_item(docs[0], self.retention_seconds, now)
            item[PUT_TOKEN] = {"S": uuid.uuid4().hex[:16]}
            self._put_new(item, f"a job with id {docs[0]['id']}")
        else:
            block = len(docs) > 1 and consecutive(ids)
            owners = {d.get("owner") for d in docs}
            expires_at = int(now + 2 * self.retention_seconds + SUBMISSION_EXTRA_SECONDS)
            if block and len(owners) == 1 and all(owners):
                self._create_submission(docs, edges, submission_item(docs, owners.pop(), expires_at), now)
            else:
                claim = submission_item(docs, None, expires_at) if block else None
                self._create_transacted(docs, edges, claim, now)
        if workflow is not None:
            try:
                expires_at = int(now + 2 * self.retention_seconds + SUBMISSION_EXTRA_SECONDS)
                self.client.put_item(TableName=self.table, Item=workflow_item(workflow, expires_at))
            except BaseException:
                written = [job_item(d, self.retention_seconds, now) for d in docs]
                written += [edge_item(p, c) for p, c in dict.fromkeys(edges)]
                if len(docs) > 1 and consecutive(ids):
                    written.append(submission_item(docs, None, 0))
                self._delete(written)
                raise
        for doc in docs:
            self._remember(doc)

    def workflow(self, owner: str, name: str) -> dict:
        """The owner's workflow record of that name: one strongly consistent GetItem."""
        response = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                        Key={"pk": {"S": WORKFLOW_PREFIX + owner}, "sk": {"S": name}})
        if "Item" not in response:
            raise NotFound(f"no workflow {name} of {owner}")
        return json.loads(response["Item"]["doc"]["S"])

    def workflows(self, owner: str) -> list[dict]:
        """The owner's workflow records: one strongly consistent Query of their partition (a page per MB)."""
        params = {
            "TableName": self.table, "KeyConditionExpression": "#pk = :p", "ProjectionExpression": "#d",
            "ExpressionAttributeNames": {"#pk": "pk", "#d": "doc"},
            "ExpressionAttributeValues": {":p": {"S": WORKFLOW_PREFIX + owner}}, "ConsistentRead": True,
        }
        found = [json.loads(item["doc"]["S"]) for items in self._pages(params, None) for item in items]
        return sorted(found, key=lambda r: r["created_at"], reverse=True)

    def add_edges(self, edges: list[tuple[str, str]]) -> None:
        """Dependency edge items (BatchWriteItem, 25 a call): an edge is keyed by its pair, so writing one twice is harmless."""
        items = [edge_item(p, c) for p, c in dict.fromkeys(edges)]
        for start in range(0, len(items), BATCH_WRITE_ITEMS):
            self._batch_write([{"PutRequest": {"Item": item}} for item in items[start:start + BATCH_WRITE_ITEMS]])

    def _register_owners(self, docs: list[dict]) -> None:
        with self._lock:
            new = sorted({d["owner"] for d in docs if d.get("owner")} - self._owners)
        if not new:
            return
        if len(new) == 1:
            self.client.put_item(TableName=self.table, Item=owner_item(new[0]))
        else:
            for start in range(0, len(new), BATCH_WRITE_ITEMS):
                chunk = new[start:start + BATCH_WRITE_ITEMS]
                self._batch_write([{"PutRequest": {"Item": owner_item(o)}} for o in chunk])
        with self._lock:
            self._owners.update(new)

    def _create_submission(self, docs: list[dict], edges: list[tuple[str, str]], submission: dict, now: float) -> None:
        submission[PUT_TOKEN] = {"S": uuid.uuid4().hex[:16]}
        self._put_new(submission, f"a submission from id {submission['pk']['S'][len(SUBMISSION_PREFIX):]}")
        items = [job_item(d, self.retention_seconds, now, by_owner=False) for d in docs]
        items += [edge_item(p, c) for p, c in dict.fromkeys(edges)]
        attempted: list[dict] = []
        try:
            for start in range(0, len(items), BATCH_WRITE_ITEMS):
                chunk = items[start:start + BATCH_WRITE_ITEMS]
                attempted += chunk  # a failed call may have written some of its items
                self._batch_write([{"PutRequest": {"Item": item}} for item in chunk])
        except BaseException:
            self._delete(attempted + [submission])  # the submission last: it is what lists the rest
            raise

    def _create_transacted(self, docs: list[dict], edges: list[tuple[str, str]], claim: dict | None,
                           now: float) -> None:
        new = "attribute_not_exists(pk)"
        actions = [{"Put": {"TableName": self.table, "Item": claim, "ConditionExpression": new}}] if claim else []
        actions += [
            {"Put": {"TableName": self.table, "Item": job_item(doc, self.retention_seconds, now),
                     "ConditionExpression": new}}
            for doc in docs
        ]
        actions += [{"Put": {"TableName": self.table, "Item": edge_item(p, c)}} for p, c in dict.fromkeys(edges)]
        written: list[dict] = []
        try:
            for chunk in _chunks(actions):
                self._transact(chunk, functools.partial(self._taken, chunk))
                written += [a["Put"]["Item"] for a in chunk]
        except BaseException:
            self._delete(written[1:] + written[:1] if claim else written)  # the claim last
            raise

    def _put_new(self, item: dict, what: str) -> None:
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            if old is not None and old.get(PUT_TOKEN) == item[PUT_TOKEN]:
                return  # our own write, retried by botocore after its response was lost
            raise Conflict(f"{what} exists already") from None

    def _transact(self, actions: list[dict], conditions_failed: Callable[[list], None]) -> None:
        """TransactWriteItems, retried while it only conflicts with another transaction or is throttled.

        When a condition failed, `conditions_failed(codes)` (one code per action)
        raises, or returns to take the write as done. One client request token
        per call of ours, so botocore's retries of it are idempotent.
        """
        for attempt in range(TRANSACTION_RETRIES):
            try:
                self.client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    conditions_failed(codes)
                    return
                if not set(codes) <= {"TransactionConflict", "None", None, "ThrottlingError"} or (
                    attempt == TRANSACTION_RETRIES - 1
                ):
                    raise
                backoff.pause(attempt, 0.05)

    @staticmethod
    def _taken(chunk: list[dict], codes: list) -> None:
        """Conflict naming what exists already: a job id, or a submission's first id."""
        taken = [chunk[i]["Put"]["Item"]["pk"]["S"] for i, code in enumerate(codes) if code == "ConditionalCheckFailed"]
        claims = [t[len(SUBMISSION_PREFIX):] for t in taken if t.startswith(SUBMISSION_PREFIX)]
        if claims:
            raise Conflict(f"a submission from id {claims[0]} exists already")
        raise Conflict(f"a job with id {', '.join(taken)} exists already")

    def _delete(self, items: list[dict]) -> None:
        """Best effort: delete these items again (the undo of a create that failed part way)."""
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in items]
        for start in range(0, len(keys), BATCH_WRITE_ITEMS):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + BATCH_WRITE_ITEMS]]
            try:
                self._batch_write(requests)
            except Exception as exc:  # the caller sees the original error
                log.warning("could not undo a partial create: %s", exc)

    def _batch_write(self, requests: list[dict]) -> None:
        for attempt in range(UNPROCESSED_RETRIES):
            response = self.client.batch_write_item(RequestItems={self.table: requests})
            requests = response.get("UnprocessedItems", {}).get(self.table, [])
            if not requests:
                return
            backoff.pause(attempt, 0.05)
        raise RuntimeError(f"{len(requests)} writes stayed unprocessed")

    # ---- read ---------------------------------------------------------------------------
    def get(self, job_id: str, consistent: bool = True) -> dict:
        for _ in range(READ_RETRIES):
            response = self.client.get_item(TableName=self.table, Key=self._key(job_id), ConsistentRead=consistent)
            if "Item" not in response:
                raise NotFound(f"Unknown Job Id {job_id}")
            doc = self._resolved(self._remember(doc_from_item(response["Item"])))
            if doc is not None:
                return doc
        raise StaleTransition(f"job {job_id}: its task pages kept changing while read")

    # ---- task pages kept apart --------------------------------------------------------------
    def _resolved(self, doc: dict) -> dict | None:
        """The document with its task pages kept apart read back in (hyperbatch.adapters.aws.items.spill):
        from this process's cache, else with one strongly consistent BatchGetItem per 100. None when a
        page is gone (a later write replaced it since the item was read): the caller reads again."""
        found = stubs(doc)
        if not found:
            return doc
        with self._lock:
            self._stubs[doc["id"]] = (doc["version"], found)
            self._stubs.move_to_end(doc["id"])
            while len(self._stubs) > QUEUE_CACHE_SIZE:
                self._stubs.popitem(last=False)
            texts = {t: self._page_texts[t] for t in found.values() if t in self._page_texts}
        missing = [t for t in found.values() if t not in texts]
        for start in range(0, len(missing), BATCH_GET_KEYS):
            keys = [{"pk": {"S": doc["id"]}, "sk": {"S": PAGE_SK_PREFIX + t}} for t in missing[start:start + BATCH_GET_KEYS]]
            for attempt in range(UNPROCESSED_RETRIES):
                response = self.client.batch_get_item(RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}})
                for item in response.get("Responses", {}).get(self.table, []):
                    texts[item["sk"]["S"][len(PAGE_SK_PREFIX):]] = item["text"]["S"]
                keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
                backoff.pause(attempt, 0.05)
        if any(t not in texts for t in found.values()):
            return None
        self._cache_pages({t: texts[t] for t in missing})
        out = dict(doc)
        for (name, page), token in found.items():
            out[name] = {**out[name], page: texts[token]}
        return out

    def _cache_pages(self, pages: dict[str, str]) -> None:
        with self._lock:
            self._page_texts.update(pages)
            while len(self._page_texts) > PAGE_CACHE_SIZE:
                self._page_texts.popitem(last=False)

    def _put_pages(self, job_id: str, pages: dict[str, str]) -> None:
        items = [page_item(job_id, token, text) for token, text in pages.items()]
        for start in range(0, len(items), BATCH_WRITE_ITEMS):
            self._batch_write([{"PutRequest": {"Item": item}} for item in items[start:start + BATCH_WRITE_ITEMS]])

    def _drop_pages(self, job_id: str, tokens) -> None:
        """Best effort: delete page items no stub stands for any more (what is left over is deleted
        when the array finishes: `_pages_at_end`)."""
        self._delete([{"pk": {"S": job_id}, "sk": {"S": PAGE_SK_PREFIX + t}} for t in tokens])

    def _after_write(self, job_id: str, expect: Expect, doc: dict) -> None:
        """A write of an array landed: delete the page items it replaced (known when the write expected the
        version this process last read), and once the array is final, give the pages it keeps the job's
        expiry and delete any other (`_pages_at_end`)."""
        with self._lock:
            seen = self._stubs.get(job_id)
        now = stubs(doc)
        if seen is not None and expect.version is not None and seen[0] == expect.version:
            gone = set(seen[1].values()) - set(now.values())
            if gone:
                self._drop_pages(job_id, gone)
        with self._lock:
            self._stubs[job_id] = (doc["version"], now)
        if doc["state"] in FINAL_STATES and doc.get("array") is not None:
            self._pages_at_end(job_id, doc, set(now.values()))

    def _pages_at_end(self, job_id: str, doc: dict, kept: set[str]) -> None:
        params = {
            "TableName": self.table, "KeyConditionExpression": "#pk = :p AND begins_with(#sk, :s)",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"}, "ProjectionExpression": "#sk",
            "ExpressionAttributeValues": {":p": {"S": job_id}, ":s": {"S": PAGE_SK_PREFIX}}, "ConsistentRead": True,
        }
        tokens = [item["sk"]["S"][len(PAGE_SK_PREFIX):] for items in self._pages(params, None) for item in items]
        self._drop_pages(job_id, [t for t in tokens if t not in kept])
        at = expiry(doc.get("finished_at"), self.retention_seconds, self.clock())
        for token in sorted(kept & set(tokens)):
            self.client.update_item(
                TableName=self.table, Key={"pk": {"S": job_id}, "sk": {"S": PAGE_SK_PREFIX + token}},
                UpdateExpression="SET #t = :t", ExpressionAttributeNames={"#t": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":t": {"N": str(at)}},
            )

    # ---- beats ----------------------------------------------------------------------------
    def beat(self, job_id: str, run: str, at: float) -> None:
        """One PutItem of a small item of the job's own (`beat#<run>`), never the job item: a beat writes
        1 WRU however big the array is, and no stream record of the job."""
        self.client.put_item(TableName=self.table, Item={
            "pk": {"S": job_id}, "sk": {"S": BEAT_SK_PREFIX + run}, "at": {"N": repr(float(at))},
            TTL_ATTRIBUTE: {"N": str(int(at + BEAT_KEPT_SECONDS))},
        })

    def beats(self, job_id: str) -> dict[str, float]:
        params = {
            "TableName": self.table, "KeyConditionExpression": "#pk = :p AND begins_with(#sk, :s)",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
            "ExpressionAttributeValues": {":p": {"S": job_id}, ":s": {"S": BEAT_SK_PREFIX}}, "ConsistentRead": True,
        }
        return {item["sk"]["S"][len(BEAT_SK_PREFIX):]: decode(item["at"])
                for items in self._pages(params, None) for item in items}

    def script(self, doc: dict) -> str | None:
        """The script: inline, or fetched from the files bucket when the item holds a reference."""
        key = doc.get(SCRIPT_REF)
        if key is None:
            return doc["script"]
        if self.scripts is None:
            raise RuntimeError(f"job {doc['id']}'s script is in the files bucket, but no bucket is configured "
                               "(HYPER_FILES_BUCKET)")
        return self.scripts.fetch(key)

    def get_many(self, job_ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH_GET_KEYS):
            keys = [self._key(i) for i in ids[start : start + BATCH_GET_KEYS]]
            for attempt in range(UNPROCESSED_RETRIES):
                response = self.client.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                for item in response.get("Responses", {}).get(self.table, []):
                    doc = self._remember(doc_from_item(item))
                    out[doc["id"]] = self._resolved(doc) or self.get(doc["id"])
                keys = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
                backoff.pause(attempt, 0.05)
            else:
                raise RuntimeError(f"{len(keys)} reads stayed unprocessed")
        return out

    # ---- update -------------------------------------------------------------------------
    def update(self, job_id: str, expect: Expect, change: Change) -> dict:
        """One conditional UpdateItem (see `update_request`), returning the new document.

        When the condition fails, DynamoDB hands back the old item
        (ReturnValuesOnConditionCheckFailure=ALL_OLD): none means NotFound, one
        means StaleTransition — no second read either way.

        An array's large task pages are put first, as page items of their own,
        and the job item gets their stubs (`items.spill`): the job item stays
        small however its tasks end, so every write of it stays cheap.
        """
        change, pages = spill(change)
        if pages:  # written first: never changed, and deleted again if the write does not land
            self._put_pages(job_id, pages)
            self._cache_pages(pages)
        try:
            doc = self._update(job_id, expect, change)
        except BaseException:
            if pages:
                self._drop_pages(job_id, pages)
            raise
        if doc.get("array") is not None:
            self._after_write(job_id, expect, doc)
        resolved = self._resolved(doc)
        return resolved if resolved is not None else self.get(job_id)

    def _update(self, job_id: str, expect: Expect, change: Change) -> dict:
        needs = needs_queue(change)
        queue = self.queue_of(job_id) if needs else None
        for _ in range(2):
            request = update_request(
                expect, change, queue=queue, retention_seconds=self.retention_seconds, now=self.clock()
            )
            try:
                response = self.client.update_item(
                    TableName=self.table, Key=self._key(job_id), ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD", **request,
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                item = exc.response.get("Item")
                if item is None:
                    raise NotFound(f"Unknown Job Id {job_id}") from None
                old = doc_from_item(item)
                if needs and old["queue"] != queue:  # a stale cache entry: learn and try again
                    queue = self._remember(old)["queue"]
                    continue
                raise StaleTransition(f"job {job_id} is {old['state']} attempt {old['attempt']}") from None
            return self._remember(doc_from_item(response["Attributes"]))
        raise StaleTransition(f"job {job_id}: its queue changed under us")

    # ---- queries ------------------------------------------------------------------------
    def query(self, *, owner=None, queue=None, states=None, limit=100, next=None) -> Page:
        """Jobs newest first, through the indexes (never a Scan).

        - By owner: the owner's by_owner entries, newest first, submissions
          expanded into their members (`_owner_ids`); `queue` filtered in the index.
        - Without an owner, for WAITING/HELD jobs only: by_queue_state, per
          queue (all configured queues unless one is named), state filtered in the index.
        - Otherwise without an owner: every registered owner's listing, merged.

        Candidate ids are fetched in pages with one strongly consistent
        BatchGetItem (per 100) and kept if the fresh item matches (state is
        filtered only here; the index may also lag a write or list a job TTL
        has removed); reading goes on until the page is full or the candidates
        run out. The `next` token is the last job id of the previous page: each
        listing continues below it, which works across merged listings too.
        """
        wanted = frozenset(state_value(s) for s in states) if states else None  # no states: any state
        if limit <= 0 or (next is not None and not valid_job_id(next)):
            return Page([], None)
        # Filters can drop entries and candidates: read the index in bigger pages then.
        first = min(QUERY_PAGE_MAX, (limit + 1) * (4 if wanted else 1))
        late_filter = wanted is not None  # states are filtered after the fetch (except in by_queue_state)
        if owner is not None:
            ids = self._owner_ids(owner, queue, next, first)
        elif wanted and wanted <= WAITING_STATES and (queue is not None or self.queues):
            queues = [queue] if queue is not None else self.queues
            ids = _newest_first([self._waiting_ids(q, wanted, next, first) for q in queues])
            late_filter = False
        else:
            owners = self.owners()
            per_owner = max(10, first // max(1, len(owners)))  # pages grow as a listing proves busy
            ids = _newest_first([self._owner_ids(o, queue, next, per_owner) for o in owners])

        def matches(doc: dict) -> bool:
            return (
                (owner is None or doc.get("owner") == owner)
                and (queue is None or doc["queue"] == queue)
                and (wanted is None or doc["state"] in wanted)
            )

        return self._page(ids, limit, matches, late_filter)

    def _page(self, ids: Iterator[str], limit: int, matches: Callable[[dict], bool], late_filter: bool) -> Page:
        """Up to `limit` matching jobs from the candidate ids, fetched a chunk at a time."""
        page: list[dict] = []
        while True:
            want = limit - len(page)
            # Most candidates match unless states are filtered here: then fetch more per call.
            size = min(BATCH_GET_KEYS, max(want, 25) if late_filter else want)
            chunk = list(itertools.islice(ids, size))
            if not chunk:
                return Page(page, None)
            found = self.get_many(chunk)
            page += [found[i] for i in chunk if i in found and matches(found[i])]
            if len(page) > limit:
                return Page(page[:limit], page[limit - 1]["id"])
            if len(page) == limit:
                # More only if a candidate is left; it may still fail the filter (an empty last page).
                more = next(ids, None) is not None
                return Page(page, page[-1]["id"] if more else None)

    def _owner_ids(self, owner: str, queue: str | None, before: str | None, first: int) -> Iterator[str]:
        """Lazily, newest first, the ids in `owner`'s by_owner entries below `before`.

        An entry is a job (gsi1sk is its id) or a submission (its `members`, a
        run of consecutive ids from gsi1sk up that no other job's id falls
        inside). Entries come by gsi1sk descending, so once an entry with
        gsi1sk = g is read, every unread entry holds only ids below g: ids
        from g up can go out, the rest wait in a heap. An entry holds ids below
        `before` exactly when its gsi1sk is below it: that is the key
        condition, and members >= `before` are dropped.
        """
        if not owner:  # an index key is never empty: ownerless jobs are in no listing by owner
            return
        ex = Expression()
        bound = number(before) if before else None
        params = self._partition_query(ex, "by_owner", owner, sort_key(before) if before else None)
        if queue is not None:
            # A submission of several queues carries no queue: its members are filtered after the fetch.
            name = ex.name("queue")
            params["FilterExpression"] = f"{name} = {ex.value(queue)} OR attribute_not_exists({name})"
        params.update(ExpressionAttributeNames=ex.names, ExpressionAttributeValues=ex.values)
        heap: list[int] = []  # negated ids: heapq is a min-heap
        for items in self._pages(params, first):
            for item in items:
                lowest = int(item["gsi1sk"]["S"])
                while heap and -heap[0] >= lowest:
                    yield str(-heapq.heappop(heap))
                for job_id in decode(item[MEMBERS]) if MEMBERS in item else (str(lowest),):
                    if bound is None or number(job_id) < bound:
                        heapq.heappush(heap, -number(job_id))
        while heap:
            yield str(-heapq.heappop(heap))

    def _waiting_ids(self, queue: str, states: frozenset[str], before: str | None, first: int) -> Iterator[str]:
        """Lazily, newest first, the ids of `queue`'s WAITING/HELD jobs (these `states` of them) below `before`."""
        ex = Expression()
        params = self._partition_query(ex, "by_queue_state", waiting_key(queue), sort_key(before) if before else None)
        if states != WAITING_STATES:
            params["FilterExpression"] = f"{ex.name('state')} IN ({', '.join(ex.value(s) for s in sorted(states))})"
        params.update(ExpressionAttributeNames=ex.names, ExpressionAttributeValues=ex.values)
        for items in self._pages(params, first):
            for item in items:
                yield from_sort_key(item["gsi2sk"]["S"])

    def _partition_query(self, ex: Expression, index: str, partition: str, below: str | None) -> dict:
        """Query parameters for one partition of `index`, sort keys below `below`, newest first; the
        caller adds its filter to `ex` and then its names and values to the parameters."""
        pk, sk = INDEXES[index]
        key = f"{ex.name(pk)} = {ex.value(partition)}"
        if below:
            key += f" AND {ex.name(sk)} < {ex.value(below)}"
        return {"TableName": self.table, "IndexName": index, "KeyConditionExpression": key, "ScanIndexForward": False}

    def owners(self) -> list[str]:
        """Every owner in the registry (one strongly consistent Query)."""
        params = {
            "TableName": self.table, "KeyConditionExpression": "#pk = :p", "ProjectionExpression": "#sk",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
            "ExpressionAttributeValues": {":p": {"S": OWNERS_PK}}, "ConsistentRead": True,
        }
        found = [item["sk"]["S"] for items in self._pages(params, None) for item in items]
        with self._lock:
            self._owners.update(found)
        return found

    def _pages(self, params: dict, first: int | None) -> Iterator[list[dict]]:
        """Query pages until exhausted: `first` items in the first (None: as many as 1 MB holds),
        twice as many in each next one up to QUERY_PAGE_MAX. Lazy: a caller that stops early reads no more."""
        size = first
        start = None
        while True:
            call = dict(params)
            if size:
                call["Limit"] = size
                size = min(QUERY_PAGE_MAX, size * 2)
            if start:
                call["ExclusiveStartKey"] = start
            response = self.client.query(**call)
            yield response.get("Items", [])
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    # ---- counts -------------------------------------------------------------------------
    def tally(self, records: list[dict]) -> None:
        """Apply the counts deltas of these stream records (hyperbatch.adapters.aws.counters): one UpdateItem
        ADD per queue touched; several queues in one TransactWriteItems, so a batch counts all or nothing.

        Each record must be tallied once; the release function calls this once
        per batch of records it handled. Records that change no count write nothing.
        """
        per_queue = counters.deltas(records)
        if not per_queue:
            return
        token = uuid.uuid4().hex
        updates = [counters.add_request(self.table, q, d, token) for q, d in sorted(per_queue.items())]
        if len(updates) == 1:
            try:
                self.client.update_item(**updates[0])
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                # The item bears our token: botocore retried a call whose response was lost, and it counted.
            return
        for start in range(0, len(updates), TRANSACTION_ITEMS):  # more than 100 queues: per 100
            # A failed condition: an attempt of ours whose response was lost had counted (its token is there).
            self._transact([{"Update": u} for u in updates[start:start + TRANSACTION_ITEMS]], lambda codes: None)

    def _counts_item(self, queue: str) -> dict:
        response = self.client.get_item(TableName=self.table, Key=counters.counts_key(queue), ConsistentRead=True)
        return response.get("Item", {})

    def counts(self, queue: str) -> dict[str, int]:
        """Jobs per state in `queue` (an array once, by its state), from its counts item: one GetItem.

        As current as the stream's tally (the release function), so a moment behind the jobs.
        """
        item = self._counts_item(queue)
        found = {s: decode(item[s]) for s in ALL_STATES if s in item}
        return {s: n for s, n in found.items() if n > 0}

    def pending_tasks(self, queue: str) -> int:
        """Jobs and array tasks waiting to run in `queue` (what the scaler should size on, on AWS).

        SQS counts messages, and one message can carry thousands of array
        positions; the counts item knows the real figure: each QUEUED job is 1,
        each QUEUED or RUNNING array adds its `pending` counter (counters.pending_of).
        """
        item = self._counts_item(queue)
        return max(0, decode(item[counters.TASKS_PENDING])) if counters.TASKS_PENDING in item else 0

    def dependents(self, parent_id: str) -> list[str]:
        params = {
            "TableName": self.table, "IndexName": "by_parent",
            "KeyConditionExpression": "gsi3pk = :p", "ExpressionAttributeValues": {":p": {"S": parent_id}},
            "ProjectionExpression": "gsi3sk",
        }
        return [item["gsi3sk"]["S"] for items in self._pages(params, None) for item in items]


def _newest_first(listings: list[Iterator[str]]) -> Iterator[str]:
    """Merge listings that are each newest first (highest id first) into one, without repeats."""
    last = None
    for job_id in heapq.merge(*listings, key=number, reverse=True):
        if job_id != last:
            yield job_id
            last = job_id


def _chunks(actions: list[dict]) -> Iterator[list[dict]]:
    """Transaction-sized chunks: at most 100 actions and about 4 MB each."""
    chunk: list[dict] = []
    size = 0
    for action in actions:
        n = item_bytes(action["Put"]["Item"])
        if chunk and (len(chunk) == TRANSACTION_ITEMS or size + n > TRANSACTION_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += n
    if chunk:
        yield chunk
