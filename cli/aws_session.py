"""boto3 for the management commands: sessions, short timeouts, and AWS failures as one-line CliErrors.

boto3 is imported only when a command needs AWS, so the other commands stay fast.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from hyperbatch.cli.errors import CliError

NO_CREDENTIALS = "no AWS credentials found: configure them with `aws configure` or AWS_PROFILE, or pass --profile"


@contextmanager
def errors(doing: str) -> Iterator[None]:
    """Turn botocore's exceptions raised inside the block into `CliError("<doing>: <why>")`."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise CliError(f"{doing}: {NO_CREDENTIALS}") from None
    except ProfileNotFound as exc:
        raise CliError(f"{doing}: AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config") from None
    except EndpointConnectionError as exc:
        raise CliError(f"{doing}: cannot reach AWS at {exc.kwargs.get('endpoint_url')}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"{doing}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise CliError(f"{doing}: {exc}") from None


def session(profile: str | None = None) -> Any:
    """A boto3 session for `profile` (None: the default credential chain). Raises ProfileNotFound."""
    import boto3

    return boto3.Session(profile_name=profile or None)


def client(session: Any, service: str, region: str | None) -> Any:
    """A client that gives up quickly: these are interactive commands."""
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})
    return session.client(service, region_name=region, config=config)


def describe_stack(session: Any, region: str, name: str) -> dict | None:
    """The CloudFormation stack `name` in `region`, or None if there is none."""
    from botocore.exceptions import ClientError

    try:
        return client(session, "cloudformation", region).describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            return None
        raise


def caller_identity(profile: str | None, doing: str = "checking AWS credentials") -> dict:
    """STS get_caller_identity: who the credentials belong to (CliError if there are none)."""
    with errors(doing):
        chosen = session(profile)
        return client(chosen, "sts", chosen.region_name or "us-east-1").get_caller_identity()
