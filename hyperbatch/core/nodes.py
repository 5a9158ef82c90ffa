"""Workers as PBS nodes (pbsnodes): one node per worker, busy with the jobs it runs.

A worker runs one job (or one chunk of an array's tasks) at a time, so a node
is `free` or `job-busy`. Its resources are its definition's (vcpus,
memory_mib, gpus). Where the workers themselves are known (local mode: the
daemon's worker table) idle ones are listed too; on AWS the API knows only
the workers that run something, from the running jobs' exec_host (its
function may not list Batch jobs), so every node listed there is busy. A
worker on your own machine (hyperbatch.core.onprem) is listed from its
record, idle or busy, as `onprem/NAME`, with the resources it offers.
"""

from __future__ import annotations

from typing import Sequence

from hyperbatch.core import arrays, onprem
from hyperbatch.core.ids import display_id


def node_of(exec_host: str) -> str:
    """The PBS node name of the worker an exec_host (`region/worker`) names: the worker's id, or
    `onprem/NAME` for a worker on your own machine (its id alone could be any machine's name)."""
    region, _, worker = exec_host.rpartition("/")
    return exec_host if region == onprem.ONPREM else worker


def describe(workers: list[dict] | None, running: list[dict], definitions: dict[str, dict],
             registered: Sequence[dict] = ()) -> list[dict]:
    """Nodes from worker rows (id, region, queue, definition, started_at; None when unknown) and the
    running jobs' documents; `definitions` maps a definition's name to its vcpus, memory_mib and gpus.
    `registered`: the live on-premises workers' rows (hyperbatch.core.onprem), with the ncpus, mem_mib
    and ngpus they offer, listed besides the others."""
    jobs: dict[str, list[str]] = {}
    seen: dict[str, dict] = {}
    for doc in running:
        for host, job_id in _hosts(doc):
            node = node_of(host)
            jobs.setdefault(node, []).append(job_id)
            seen.setdefault(node, {"id": host.rsplit("/", 1)[-1],
                                   "region": host.rsplit("/", 1)[0] if "/" in host else "",
                                   "queue": doc["queue"], "definition": doc["definition"], "started_at": None})
    rows = {_name(row): row for row in workers} if workers is not None else dict(seen)
    rows |= {_name(row): row for row in registered}
    out = []
    for name, row in sorted(rows.items()):
        definition = definitions.get(row.get("definition") or "", {})
        busy = jobs.get(name, [])
        out.append({
            "name": name,
            "state": "job-busy" if busy else "free",
            "region": row.get("region") or "",
            "queue": row.get("queue") or "",
            "definition": row.get("definition") or "",
            "ncpus": int(row.get("ncpus") or definition.get("vcpus") or 1) or 1,
            "mem_mib": int(row.get("mem_mib") or definition.get("memory_mib") or 0),
            "ngpus": int(row.get("ngpus") or definition.get("gpus") or 0),
            "jobs": busy,
            "started_at": row.get("started_at"),
        })
    return out


def _name(row: dict) -> str:
    return node_of(f"{row.get('region') or ''}/{row['id']}")


def _hosts(doc: dict) -> list[tuple[str, str]]:
    """(exec host, PBS id) of what a running job runs: the job, or each running chunk's tasks."""
    if doc.get("array") is None:
        return [(doc["exec_host"], display_id(doc))] if doc.get("exec_host") else []
    spec = arrays.parse_array(doc["array"])
    out = []
    for chunk in doc.get("chunks", {}).values():
        skip = set(chunk.get("skip", ()))
        for pos in range(chunk["lo"], chunk["hi"]):
            if pos not in skip:
                out.append((chunk["worker"], display_id(doc, spec.index_at(pos))))
    return out
