"""The records of workers on your own machines, as items of the job table (hyperbatch.core.onprem).

    pk = "workers#onprem"   sk = <worker name>   queue, definition, ncpus, mem_mib, ngpus, host,
    started_at, seen_at, instance, expires_at

One partition, so the scaler and the API list them all with one Query. A
worker rewrites its item every minute (a 1-WRU PutItem, conditional on the
name being free, its own, or gone quiet) and marks it gone when it stops (an
UpdateItem; the worker role has no DeleteItem): the item then lingers until
its TTL, and readers skip it as stale. The writes show in the table's stream as
non-job items, which the release function skips.
"""

from __future__ import annotations

import time
from typing import Callable

from botocore.exceptions import ClientError

from hyperbatch.core import onprem
from hyperbatch.core.errors import Conflict
from hyperbatch.core.names import ONPREM_WORKERS_KEY

# A record's item outlives its last refresh by a day, then DynamoDB's TTL deletes it.
KEEP_SECONDS = 86400
_NUMBERS = ("ncpus", "mem_mib", "ngpus", "started_at", "seen_at")


class TableWorkerRegistry:
    def __init__(self, client, table: str, clock: Callable[[], float] = time.time):
        self.client, self.table, self.clock = client, table, clock

    def register(self, record: dict) -> None:
        now = self.clock()
        item = {"pk": {"S": ONPREM_WORKERS_KEY}, "sk": {"S": record["name"]},
                "expires_at": {"N": str(int(now + KEEP_SECONDS))}}
        for key in ("queue", "definition", "host", "instance"):
            item[key] = {"S": str(record[key])}
        for key in _NUMBERS:
            item[key] = {"N": str(record[key])}
        try:
            self.client.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #i = :i OR seen_at < :stale",
                ExpressionAttributeNames={"#i": "instance"},
                ExpressionAttributeValues={":i": {"S": record["instance"]},
                                           ":stale": {"N": str(now - onprem.STALE_AFTER_SECONDS)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(f"worker name {record['name']!r} is in use by a live on-premises worker: "
                               "choose another --name") from None
            raise

    def forget(self, name: str, instance: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table, Key={"pk": {"S": ONPREM_WORKERS_KEY}, "sk": {"S": name}},
                UpdateExpression="SET seen_at = :gone, expires_at = :now",
                ConditionExpression="#i = :i",
                ExpressionAttributeNames={"#i": "instance"},
                ExpressionAttributeValues={":i": {"S": instance}, ":gone": {"N": "0"},
                                           ":now": {"N": str(int(self.clock()))}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":  # another holds it now
                raise

    def workers(self) -> list[dict]:
        out: list[dict] = []
        start = None
        while True:
            kwargs: dict = {"ExclusiveStartKey": start} if start else {}
            page = self.client.query(TableName=self.table, KeyConditionExpression="pk = :pk",
                                     ExpressionAttributeValues={":pk": {"S": ONPREM_WORKERS_KEY}}, **kwargs)
            for item in page.get("Items", []):
                record = {"name": item["sk"]["S"]}
                record |= {k: item[k]["S"] for k in ("queue", "definition", "host", "instance") if k in item}
                record |= {k: float(item[k]["N"]) for k in _NUMBERS if k in item}
                out.append(record)
            start = page.get("LastEvaluatedKey")
            if not start:
                return out
