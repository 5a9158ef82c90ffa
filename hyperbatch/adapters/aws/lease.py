"""A lease item in the job table: single flight for a scheduled function, without reserved concurrency.

Two scaler runs at once would both see a queue short of workers and both start
them. Reserved concurrency 1 would prevent that, but an account with a low
Lambda concurrency quota (10 on new accounts) cannot set any aside, and the
stack would fail to deploy. So a run first takes a lease:

    pk = "lease#scaler"   sk = "lease"   holder = <the invocation's request id>   until = <epoch seconds>

with a conditional PutItem that succeeds only when no item is there or its
`until` has passed; a run that loses exits quietly. The lease lasts a bit more
than the run can (the function's remaining time plus a margin), so a run that
dies without letting go blocks the next tick at most. At the end the holder
deletes it (conditional on still holding it), so the next tick runs on time.

The scaler's role may write only this partition key (IAM dynamodb:LeadingKeys,
stacks/access.py), so the key lives in hyperbatch/core/names.py, where the
stacks read it. The writes show in the table's stream as non-job items, which
the release function skips.
"""

from __future__ import annotations

import time
from typing import Callable

from botocore.exceptions import ClientError

LEASE_SK = "lease"


class TableLease:
    """One named lease item; `acquire` and `release` are single conditional writes."""

    def __init__(self, client, table: str, key: str, clock: Callable[[], float] = time.time):
        self.client, self.table, self.key, self.clock = client, table, key, clock

    def _item_key(self) -> dict:
        return {"pk": {"S": self.key}, "sk": {"S": LEASE_SK}}

    def acquire(self, holder: str, seconds: float) -> bool:
        """Take the lease for `seconds` unless someone else holds one that has not run out."""
        now = self.clock()
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**self._item_key(), "holder": {"S": holder}, "until": {"N": str(int(now + seconds) + 1)}},
                ConditionExpression="attribute_not_exists(pk) OR #u < :now OR #h = :h",
                ExpressionAttributeNames={"#u": "until", "#h": "holder"},
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":h": {"S": holder}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, holder: str) -> None:
        """Let go, if still ours (a lease that ran out may have been taken by the next run)."""
        try:
            self.client.delete_item(
                TableName=self.table, Key=self._item_key(), ConditionExpression="#h = :h",
                ExpressionAttributeNames={"#h": "holder"}, ExpressionAttributeValues={":h": {"S": holder}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
