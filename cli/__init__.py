"""HyperBatch command line: `hyper ...` and the PBS-style qsub/qstat/qdel/qlog/qhold/qrls.

The CLI talks to the HTTP API only (docs/architecture.md §1). Keep this package
light to import: the job commands must start in well under 300 ms, so heavy
modules (rich, boto3/botocore) are imported only where they are needed.
"""
