"""The job commands start in about the time of a bare interpreter (bench/latency.py measures it):
they import nothing heavy. Checked by what a fresh interpreter has loaded, not by the clock."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("click", "pydantic", "rich", "aws_lambda_powertools", "boto3", "botocore", "http.client", "email",
         "ssl", "typing", "threading", "getpass", "encodings.idna", "hyperbatch.config", "hyperbatch.api")
COMMANDS = {
    "qsub": "hyperbatch.cli.pbs.qsub", "qstat": "hyperbatch.cli.pbs.qstat", "qdel": "hyperbatch.cli.pbs.control",
    "qselect": "hyperbatch.cli.pbs.qselect", "qalter": "hyperbatch.cli.pbs.qalter",
    "qsig": "hyperbatch.cli.pbs.simple", "tracejob": "hyperbatch.cli.pbs.tracejob",
    "pbsnodes": "hyperbatch.cli.pbs.pbsnodes",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_and_its_request_path_import_nothing_heavy(command):
    # The module, the client it talks through and the host registry: everything a run loads.
    code = (f"import sys, {COMMANDS[command]}, hyperbatch.cli.client, hyperbatch.cli.host_registry, "
            f"hyperbatch.core.ids, hyperbatch.core.errors; "
            f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
