"""Registered runs (hyperbatch.core.ports.RunRegister) as items of the job table.

    pk = "runs#registered"   sk = <exec_host>   job_id, attempt, chunk, queue, item, receipt, at, lease,
    expires_at

One item per worker, not per job: a worker's next long run overwrites its
entry (one 1-WRU PutItem, no index), and nothing is written when a run ends.
The reconciler lists the one partition with a Query a minute (eventually
consistent, by the bytes read: about 200 bytes an entry) and removes the
entries of workers that are gone. An entry left by a worker that stopped
is removed by TTL (`expires_at`: a day after its promise) should the
reconciler not get to it. The writes show in the table's stream as
non-job items, which the release function skips.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from hyperbatch.core.names import REGISTERED_RUNS_KEY

KEEP_SECONDS = 86400  # an entry outlives its promise by a day, then TTL deletes it
_STRINGS = ("job_id", "chunk", "queue", "item", "receipt")
_NUMBERS = ("attempt", "at", "lease")


class TableRunRegister:
    def __init__(self, client, table: str):
        self.client, self.table = client, table

    def _key(self, host: str) -> dict:
        return {"pk": {"S": REGISTERED_RUNS_KEY}, "sk": {"S": host}}

    def hold(self, entry: dict) -> None:
        item = {**self._key(entry["host"]),
                "expires_at": {"N": str(int(entry["at"] + entry["lease"] + KEEP_SECONDS))}}
        item |= {k: {"S": str(entry[k])} for k in _STRINGS}
        item |= {k: {"N": repr(float(entry[k]))} for k in _NUMBERS}
        self.client.put_item(TableName=self.table, Item=item)

    def entry(self, host: str) -> dict | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(host), ConsistentRead=True).get("Item")
        return _entry(item) if item else None

    def entries(self) -> list[dict]:
        out: list[dict] = []
        start = None
        while True:
            kwargs: dict = {"ExclusiveStartKey": start} if start else {}
            page = self.client.query(TableName=self.table, KeyConditionExpression="pk = :pk",
                                     ExpressionAttributeValues={":pk": {"S": REGISTERED_RUNS_KEY}}, **kwargs)
            out += [_entry(item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def drop(self, host: str, at: float) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key=self._key(host), ConditionExpression="#a = :a",
                                    ExpressionAttributeNames={"#a": "at"},
                                    ExpressionAttributeValues={":a": {"N": repr(float(at))}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":  # registered again since
                raise


def _entry(item: dict) -> dict:
    entry: dict = {"host": item["sk"]["S"]}
    entry |= {k: item[k]["S"] for k in _STRINGS if k in item}
    entry |= {k: float(item[k]["N"]) for k in _NUMBERS if k in item}
    entry["attempt"] = int(entry.get("attempt", 0))
    return entry
