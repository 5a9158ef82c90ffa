"""Jobs walled off from the worker's credentials: instance metadata out of containers' reach,
and a job user of their own in the worker image."""

from __future__ import annotations

import re

from infra_synthesis import REPO
from infra_templates import metadata_problems

from stacks import contract

DOCKERFILE = REPO / "worker_image" / "Dockerfile"


def test_batch_instances_answer_metadata_only_with_a_token_and_only_on_the_instance(synth):
    assert metadata_problems(synth) == []


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_worker_image_runs_jobs_as_their_own_unprivileged_user():
    instructions = dockerfile_instructions()
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    job_user = contract.JOB_USER
    assert re.search(rf"useradd [^&]*\b{job_user}\b", runs), "the job user is created"
    # The agent runs as another user, whose home the job user cannot read.
    (agent_user,) = [args for kind, args in instructions if kind == "USER"][-1:]
    assert agent_user not in (job_user, "root", "0")
    assert f"chmod 0700 /home/{agent_user}" in runs
    # The agent may become the job user and no one else; the job user is given no sudo at all.
    sudoers = re.findall(r"printf '([^']*)' > /etc/sudoers\.d/", runs)
    rules = [rule for text in sudoers for rule in text.split("\\n") if rule and not rule.startswith("Defaults")]
    assert rules == [f"{agent_user} ALL=({job_user}) NOPASSWD:SETENV: ALL"]
    env = " ".join(args for kind, args in instructions if kind == "ENV")
    assert f"HYPER_JOB_USER={job_user}" in env.split()
