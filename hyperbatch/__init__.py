"""HyperBatch: a serverless, multi-region batch scheduler for AWS that also runs whole on one machine."""

__version__ = "0.1.0"
