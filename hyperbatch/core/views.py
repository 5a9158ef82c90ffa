"""The job as the API shows it (`view`): no script body, no internal bookkeeping, PBS ids, and an
array's failed and cancelled tasks by index (read from its task maps, hyperbatch.core.tasks).

Apart from hyperbatch.core.model, which tasks builds on: a view reads tasks, so it sits above both.
"""

from __future__ import annotations

from hyperbatch.core import history, tasks
from hyperbatch.core.ids import display_id, format_id
from hyperbatch.core.model import ARRAY_COUNTERS, is_array, new_job
from hyperbatch.core.states import pbs_state

DEFAULTS = new_job()  # what a document written before a field existed shows for it


def view(doc: dict) -> dict:
    """The job as the API shows it: no script body, no internal bookkeeping.

    `id` is the PBS id (`1234.server`, `1234[].server` for an array: what qsub
    prints); `seq` the sequence number alone; dependencies name PBS ids too.
    """
    out = {
        key: doc.get(key, DEFAULTS.get(key))  # a document written before a field existed shows its default
        for key in (
            "name", "owner", "queue", "definition", "state", "attempt", "run_count",
            "max_attempts", "priority", "exit_status", "reason", "submitted_at", "started_at",
            "finished_at", "exec_host", "walltime", "env", "resources", "command",
            "script_name", "cpu_seconds", "workdir", "account", "project", "checkpoint", "output_path",
            "error_path", "join", "keep", "remove_files", "shell", "rerunnable", "execution_time", "mail_points",
            "mail_users", "notify", "umask", "sandbox", "stagein", "stageout", "stageout_files",
        )
    }
    server = doc.get("server") or ""
    out["job_state"], out["substate"] = pbs_state(doc)
    out["id"] = display_id(doc)
    out["seq"] = doc["id"]
    out["server"] = server
    out["depend"] = _pbs_depend(doc["depend"], server)
    out["history"] = history.render(doc)  # as tracejob prints it
    out["array"] = _array_view(doc) if is_array(doc) else None
    return out


def _array_view(doc: dict) -> dict:
    return {
        "spec": doc["array"],
        "total": doc["total"],
        **{k: doc[k] for k in ARRAY_COUNTERS},
        "failed_tasks": tasks.by_index(doc, tasks.FAILED_MAP),
        "cancelled_tasks": sorted(int(i) for i in tasks.by_index(doc, tasks.CANCELLED_MAP)),
    }


def _pbs_depend(depend: str, server: str) -> str:
    """`afterok:12:13` as PBS shows it: `afterok:12.server:13.server`."""
    if not depend or not server:
        return depend
    groups = []
    for group in depend.split(","):
        kind, *job_ids = group.split(":")
        groups.append(":".join([kind, *(format_id(j, server) for j in job_ids)]))
    return ",".join(groups)
