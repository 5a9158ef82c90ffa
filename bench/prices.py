"""AWS list prices used by bench/aws_cost.py: us-east-1, on-demand, in US dollars. One place only.

Taken from AWS's public pricing pages as of November 2024 (DynamoDB on-demand
after its 1 November 2024 price cut), the prices the issue quotes. Not
re-checked since (the bench runs with no network); update PRICES_AS_OF with
any change. Free tiers are ignored (they vanish at the volumes that matter).
"""

PRICES_AS_OF = "2024-11 (AWS public list prices, us-east-1; recorded 2026-11-21)"
REGION = "us-east-1"

# API Gateway HTTP API: per request, first 300 M a month; metered in 512 KB increments of payload.
API_GATEWAY_HTTP_PER_REQUEST = 1.00 / 1e6
API_GATEWAY_HTTP_METERING_BYTES = 512 * 1024

# Lambda on arm64 (the stack's ARCHITECTURE): per request, and per GB-second, billed per 1 ms.
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND_ARM64 = 0.0000133334

# DynamoDB on-demand, standard table class (Nov 2024): per write request unit (1 KB; x2 in a
# transaction) and per read request unit (4 KB strongly consistent; half for eventually consistent).
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6
DYNAMODB_STORAGE_PER_GB_MONTH = 0.25
# DynamoDB Streams: GetRecords by a Lambda event source mapping is free.
DYNAMODB_STREAMS_READ_BY_LAMBDA = 0.0

# SQS standard queue: per request (after the first 1 M a month); each 64 KB chunk of a payload is a request.
SQS_PER_REQUEST = 0.40 / 1e6
SQS_CHUNK_BYTES = 64 * 1024

# CloudWatch Logs: ingestion (standard log class) per GB; each event counts its message plus 26 bytes.
CLOUDWATCH_LOGS_INGEST_PER_GB = 0.50
CLOUDWATCH_LOGS_EVENT_OVERHEAD_BYTES = 26
# CreateLogStream, PutLogEvents, GetLogEvents, DescribeLogStreams carry no request charge.

# EventBridge Scheduler: per invocation (a schedule firing). The stack uses EventBridge rules with a
# rate(): charged here at the Scheduler's price as an upper bound.
EVENTBRIDGE_SCHEDULER_PER_INVOCATION = 1.00 / 1e6

# EventBridge custom events (PutEvents): per event, each 64 KB chunk of an entry counting as one. Job state
# changes and notices on the default bus (hyperbatch/adapters/aws/notices.py).
EVENTBRIDGE_PER_EVENT = 1.00 / 1e6
EVENTBRIDGE_CHUNK_BYTES = 64 * 1024

# AWS Batch has no charge of its own (its EC2/Fargate capacity is the workers' cost, not the scheduler's).
BATCH_PER_REQUEST = 0.0

# S3 Standard (bench/staging.py): PUT, COPY, POST and LIST requests; GET, HEAD and the rest; storage per
# GB-month (first 50 TB); data transfer out to the internet (first 10 TB a month; a `hyper fetch` to a
# laptop) and between regions (a worker in a hub region reading the main region's bucket).
S3_PUT_PER_REQUEST = 0.005 / 1000
S3_GET_PER_REQUEST = 0.0004 / 1000
S3_STORAGE_PER_GB_MONTH = 0.023
DATA_TRANSFER_OUT_PER_GB = 0.09
S3_INTER_REGION_PER_GB = 0.02
