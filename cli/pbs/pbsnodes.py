"""pbsnodes: the workers as PBS nodes (GET /nodes), as PBS Pro's pbsnodes prints its hosts.

    pbsnodes -a [-v] [-F json|dsv [-D delim]]     every node
    pbsnodes [-v] [-F json|dsv] NODE...           the nodes named
    pbsnodes -l                                   nodes down or offline (a worker is never: none)

A node is one worker: `free`, or `job-busy` while it runs a job (or an
array's task). Its resources are its job definition's; resources_available
also names its region and queue. Locally every live worker is listed; on AWS
the ones running a job. Marking nodes (-o -r -c -C -d) is refused: the
scaler starts and stops workers.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds, and only checkers need it
if TYPE_CHECKING:
    from typing import Any

from hyperbatch.cli.errors import CliError
from hyperbatch.cli.pbs.common import PBS_VERSION, ShowUsage, api_client, err, parse, run

SPEC = "acC:dD:F:HjlLoqrs:Sv"
USAGE = """usage:\tpbsnodes [-{o|r}][-C comment][-s server] host host ...
\tpbsnodes -l [-s server]
\tpbsnodes [-s server] -v vnode vnode ...
\tpbsnodes -a[v][S[j][L]][-F format][-D delim][-s server]
\tpbsnodes -[H][S[j][L]][-F format][-D delim] host host ...
\tpbsnodes --version

"""


def node_attributes(node: dict[str, Any]) -> list[tuple[str, Any]]:
    """A node's attributes in PBS's order (master_node_attr_def.xml); times as epoch seconds."""
    ncpus = int(node.get("ncpus") or 1)
    busy = bool(node.get("jobs"))
    available = {
        "host": node["name"],
        "mem": f"{int(node.get('mem_mib') or 0) * 1024}kb",
        "ncpus": ncpus,
        "ngpus": int(node.get("ngpus") or 0),
        "queue": node.get("queue") or "",
        "region": node.get("region") or "",
        "vnode": node["name"],
    }
    attrs: list[tuple[str, Any]] = [
        ("Mom", node["name"]),
        ("ntype", "PBS"),
        ("state", node.get("state") or "free"),
        ("pcpus", ncpus),
        ("jobs", ", ".join(f"{j}/{i}" for i, j in enumerate(node.get("jobs") or []))),
    ]
    attrs += [(f"resources_available.{k}", v) for k, v in sorted(available.items()) if v != "" and v != 0]
    attrs += [("resources_assigned.ncpus", ncpus if busy else 0)]
    attrs += [
        ("queue", node.get("queue") or ""),
        ("comment", f"HyperBatch worker, definition {node.get('definition')}" if node.get("definition") else ""),
        ("resv_enable", "False"),
        ("sharing", "default_excl"),
        ("last_state_change_time", int(node["started_at"]) if node.get("started_at") else None),
    ]
    return [(k, v) for k, v in attrs if v is not None and v != ""]


def text(node: dict[str, Any]) -> str:
    """prt_node: the name, then `     attr = value` lines (five spaces; times via ctime), a blank line."""
    lines = [node["name"]]
    for key, value in node_attributes(node):
        if key.endswith("_time") and isinstance(value, (int, float)):
            value = time.ctime(value)
        lines.append(f"     {key} = {value}")
    return "\n".join(lines) + "\n\n"


def dsv(node: dict[str, Any], delimiter: str) -> str:
    parts = [f"Name={node['name']}"]
    parts += [f"{k}={str(v).replace(delimiter, chr(92) + delimiter)}" for k, v in node_attributes(node)]
    return delimiter.join(parts) + "\n"


def json_node(node: dict[str, Any]) -> dict[str, Any]:
    """-F json: resources nested, zero assignments left out, jobs a list of distinct ids, times epoch."""
    out: dict[str, Any] = {}
    for key, value in node_attributes(node):
        if "." in key:
            group, resource = key.split(".", 1)
            if group == "resources_assigned" and not value:
                continue
            out.setdefault(group, {})[resource] = value
        elif key == "jobs":
            out["jobs"] = list(dict.fromkeys(node.get("jobs") or []))
        else:
            out[key] = value
    return out


def pbsnodes(args: list[str]) -> int:
    opts, names = parse(args, SPEC)
    flags = {opt.lstrip("-"): value for opt, value in opts}
    for flag in "ocCdr":
        if flag in flags:
            raise CliError(f"-{flag} does not apply: workers are started and stopped by the scaler, not marked")
    for flag in "SLjH":
        if flag in flags:
            raise CliError(f"-{flag} (summaries) is not supported; use -a or -F json")
    fmt = (flags.get("F") or "default").lower()
    if fmt not in ("default", "json", "dsv") or ("D" in flags and fmt != "dsv"):
        raise ShowUsage()
    if "l" in flags:
        if names or len(set(flags) - {"l", "s", "q"}):
            raise ShowUsage()
        api_client().request("GET", "/nodes")  # the server answers: its workers are never down or offline
        return 0
    if "a" in flags and names:
        raise ShowUsage()
    if "a" not in flags and not names:
        raise ShowUsage()
    _, answer = api_client().request("GET", "/nodes")
    server = str(answer.get("server") or "")
    if "s" in flags:
        from hyperbatch.core.ids import same_server

        if not same_server(flags["s"] or "", server):
            err(f"pbsnodes: cannot connect to server {flags['s']}: HyperBatch knows only {server}")
            return 1
    nodes = answer.get("nodes") or []
    rc = 0
    if names:
        by_name = {n["name"]: n for n in nodes}
        picked = []
        for name in names:
            if name in by_name:
                picked.append(by_name[name])
            else:
                err(f"Node: {name},  Error: Unknown node")
                rc = 1
        nodes = picked
    elif not nodes:
        if "q" not in flags:
            err("pbsnodes: No nodes found")
        return 0
    if fmt == "json":
        import json

        doc = {"timestamp": int(time.time()), "pbs_version": PBS_VERSION, "pbs_server": server,
               "nodes": {n["name"]: json_node(n) for n in nodes}}
        sys.stdout.write(json.dumps(doc, indent=4, separators=(",", ":")) + "\n")
    elif fmt == "dsv":
        sys.stdout.write("".join(dsv(n, flags.get("D") or "|") for n in nodes))
    else:
        sys.stdout.write("".join(text(n) for n in nodes))
    return rc


def pbsnodes_main(argv: list[str] | None = None) -> int:
    return run("pbsnodes", pbsnodes, argv, USAGE, usage_exit=1)
