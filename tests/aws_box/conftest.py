"""AWS in a box (tests/aws_box/harness.py): the Lambda handlers and worker agents against moto, in-process."""

import pytest

from tests.aws_box.harness import Box


@pytest.fixture
def box():
    """Short leases (3 s, heartbeat 1 s, a registered run's 6 s), workers idle out after 2 s, the stream delivered every 0.1 s."""
    with Box() as b:
        b.start_stream()
        yield b
