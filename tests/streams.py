"""A DynamoDB table's stream read in tests as a Lambda event source mapping reads it: every shard,
from the trim horizon on, each read going on from where the last one stopped."""

from __future__ import annotations

import boto3

STREAMS_ENDPOINT = "https://streams.dynamodb.{region}.amazonaws.com"


class StreamReader:
    def __init__(self, dynamodb, table: str, client=None):
        region = dynamodb.meta.region_name
        # botocore sends stream calls to <account>.streams-ddb..., which moto 5.2.5 does not route.
        self.client = client or boto3.client(
            "dynamodbstreams", region_name=region, endpoint_url=STREAMS_ENDPOINT.format(region=region))
        self.arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.iterators: dict[str, str] | None = None  # opened at the first read

    def read(self) -> dict[str, list[dict]]:
        """The records written since the last read, per shard."""
        if self.iterators is None:
            shards = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
            self.iterators = {
                s["ShardId"]: self.client.get_shard_iterator(
                    StreamArn=self.arn, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                for s in shards
            }
        out = {}
        for shard, iterator in self.iterators.items():
            records = []
            while iterator:
                page = self.client.get_records(ShardIterator=iterator, Limit=1000)
                records += page["Records"]
                iterator = page.get("NextShardIterator")
                if not page["Records"]:
                    break
            self.iterators[shard] = iterator
            out[shard] = records
        return out

    def records(self) -> list[dict]:
        """The records written since the last read, shard after shard."""
        return [record for records in self.read().values() for record in records]
