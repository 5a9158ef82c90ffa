"""The dashboard's HTML, rendered on the server from what the API's routes return.

Every value that a user controls (job names, owners, paths, environment, log text) goes through
`e` (html.escape, quotes too) before it reaches a page, so a job named `<script>...` shows as text.
Pages hold no inline script or style attribute with data in it: the one script
(static/dashboard.js) reads `data-` attributes, and the live log is added as text nodes.
"""

from __future__ import annotations

import html
import json
import time
from string import Template
from typing import Any, Iterable
from urllib.parse import quote, urlencode

from hyperbatch.core.model import ARRAY_COUNTERS
from hyperbatch.core.states import JobState

STATES = [s.value for s in JobState]

_LAYOUT = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · HyperBatch</title>
<link rel="stylesheet" href="/ui/static/dashboard.css">
<script src="/ui/static/dashboard.js" defer></script>
</head>
<body>
<header>
<a class="brand" href="/">HyperBatch</a> <span class="server">$server</span>
<nav>$nav</nav>
</header>
$strip
<main>
<p id="notice" role="alert" hidden></p>
$body
</main>
</body>
</html>
""")


def e(value: Any) -> str:
    """A value as inert HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def job_href(job_id: str, **query: Any) -> str:
    pairs = {k: v for k, v in query.items() if v is not None}
    return f"/ui/jobs/{quote(str(job_id), safe='')}" + (f"?{urlencode(pairs)}" if pairs else "")


def api_href(job_id: str) -> str:
    """The API's path of a job (what the page's buttons and live log call)."""
    return f"/jobs/{quote(str(job_id), safe='')}"


def layout(title: str, body: str, server: str = "", queues: list[dict] | None = None, sign_out: bool = False) -> str:
    """A whole page: the header, a strip of every queue's load (when `queues` is given), `body`."""
    nav = "".join(f'<a href="{href}">{label}</a>' for href, label in
                  (("/", "Queues"), ("/ui/jobs", "Jobs"), ("/ui/workers", "Workers"), ("/swagger", "API")))
    if sign_out:
        nav += '<form method="post" action="/ui/signout"><button type="submit">Sign out</button></form>'
    return _LAYOUT.substitute(title=e(title), server=e(server), nav=nav, body=body,
                              strip=queue_strip(queues) if queues is not None else "")


def sign_in(message: str = "") -> str:
    """The sign-in form: the token is POSTed once, never put in a URL."""
    problem = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    body = f"""<section class="card signin">
<h1>Sign in</h1>
<p>Paste the token of this local daemon: <code>cat $HYPERBATCH_HOME/token</code> (default <code>~/.hyperbatch/token</code>).</p>
{problem}
<form method="post" action="/ui/signin">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
</section>"""
    return layout("Sign in", body)


def message(title: str, text: str) -> str:
    """A page that says one thing: why a request was refused, or what is wrong with it."""
    return layout(title, f'<section class="card"><h1>{e(title)}</h1><p class="error">{e(text)}</p></section>')


def queue_strip(queues: list[dict]) -> str:
    """Every queue's queued and running counts in one line, shown above every page."""
    items = []
    for q in queues:
        counts = q.get("counts") or {}
        items.append(f'<a class="chip" href="/ui/jobs?{urlencode({"queue": q["name"]})}">{e(q["name"])} '
                     f'<b class="s-QUEUED">{int(counts.get("QUEUED", 0))}</b> queued '
                     f'<b class="s-RUNNING">{int(counts.get("RUNNING", 0))}</b> running</a>')
    return f'<nav class="strip" aria-label="queues">{"".join(items)}</nav>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str, cls: str = "") -> str:
    """A table whose cells are HTML already escaped by the caller."""
    rows = list(rows)
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def state_badge(state: str, live: bool = False) -> str:
    extra = ' data-live-state' if live else ""
    return f'<span class="state s-{e(state)}"{extra}>{e(state)}</span>'


def progress(array: dict | None) -> str:
    """An array's tasks as one bar, a segment per state, with the count done out of the total."""
    if not array:
        return ""
    total = max(int(array.get("total") or 0), 1)
    counts = {k: int(array.get(k) or 0) for k in ARRAY_COUNTERS if int(array.get(k) or 0)}
    done = sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))  # will not run again
    segments = "".join(f'<span class="seg s-{k}" style="width:{100 * n / total:.2f}%" title="{k} {n}"></span>'
                       for k, n in counts.items())
    legend = " · ".join(f"{k} {n}" for k, n in counts.items())
    return (f'<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" aria-valuenow="{done}">'
            f'<div class="bar">{segments}</div><small>{done}/{total} done · {e(legend)}</small></div>')


def queues_page(queues: list[dict], recent: list[dict]) -> str:
    rows = []
    for q in queues:
        counts = q.get("counts") or {}
        rows.append([
            f'<a href="/ui/jobs?{urlencode({"queue": q["name"]})}">{e(q["name"])}</a>',
            e(", ".join(q.get("definitions") or [q.get("definition")])),
            " ".join(f'<span class="state s-{e(s)}">{e(s)} {int(n)}</span>' for s, n in sorted(counts.items()) if n) or "—",
            e(q.get("backlog", 0)),
            e(", ".join(f"{r}: {n}" for r, n in sorted((q.get("workers") or {}).items())) or "0"),
        ])
    table = _table(["Queue", "Definitions", "Jobs", "Backlog", "Workers"], rows, "No queues are configured.")
    return f"<h1>Queues</h1>{table}<h2>Latest jobs</h2>{jobs_table(recent)}"


def jobs_table(jobs: list[dict]) -> str:
    rows = [[
        f'<a href="{job_href(j["id"])}">{e(j["id"])}</a>',
        e(j.get("name")), e(j.get("owner")), e(j.get("queue")),
        state_badge(j["state"]) + progress(j.get("array")),
    ] for j in jobs]
    return _table(["Job", "Name", "User", "Queue", "State"], rows, "No jobs match.", "jobs")


def jobs_page(jobs: list[dict], filters: dict, queue_names: list[str], more: str | None) -> str:
    def options(values: list[str], chosen: str | None) -> str:
        return '<option value="">any</option>' + "".join(
            f'<option{" selected" if v == chosen else ""}>{e(v)}</option>' for v in values)

    form = f"""<form class="filters" method="get" action="/ui/jobs">
<label>State <select name="state">{options(STATES, filters.get("state"))}</select></label>
<label>User <input name="user" value="{e(filters.get("user"))}" placeholder="any"></label>
<label>Queue <select name="queue">{options(queue_names, filters.get("queue"))}</select></label>
<label>Name <input name="name" value="{e(filters.get("name"))}" placeholder="contains"></label>
<button type="submit">Filter</button>
</form>"""
    nxt = ""
    if more:
        query = {k: v for k, v in filters.items() if v} | {"next": more}
        nxt = f'<p><a href="/ui/jobs?{urlencode(query)}">Older jobs</a></p>'
    return f"<h1>Jobs</h1>{form}{jobs_table(jobs)}{nxt}"


def dependency_graph(job: dict) -> str:
    """The jobs this one waits for, each a box linked to its page, with an arrow into this job (SVG)."""
    parents = []
    for group in (job.get("depend") or "").split(","):
        kind, *ids = group.split(":") if group else ("",)
        parents += [(kind, i) for i in ids]
    if not parents:
        return ""
    row, width = 34, 360
    height = row * len(parents) + 10
    me_y = height / 2
    parts = []
    for n, (kind, pid) in enumerate(parents):
        y = 8 + n * row
        parts.append(f'<a href="{e(job_href(pid))}"><rect x="2" y="{y}" width="150" height="24" rx="4" class="node"/>'
                     f'<text x="10" y="{y + 16}">{e(pid)}</text></a>'
                     f'<line x1="152" y1="{y + 12}" x2="228" y2="{me_y}" class="edge" marker-end="url(#arrow)"/>'
                     f'<text x="160" y="{y + 10}" class="kind">{e(kind)}</text>')
    parts.append(f'<rect x="230" y="{me_y - 12}" width="126" height="24" rx="4" class="node me"/>'
                 f'<text x="238" y="{me_y + 4}">{e(job["id"])}</text>')
    return (f'<svg class="deps" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="dependencies"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
            f'markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z"/></marker></defs>{"".join(parts)}</svg>')


ACTIONS = (  # (label, HTTP method, path under the job, the states it applies to: the scheduler's rules)
    ("Cancel (qdel)", "DELETE", "", ("QUEUED", "HELD", "WAITING", "RUNNING")),
    ("Hold (qhold)", "POST", "/hold", ("QUEUED", "WAITING")),
    ("Release (qrls)", "POST", "/release", ("HELD",)),
    ("Rerun (qrerun)", "POST", "/rerun", ("RUNNING",)),
)
ARRAY_RERUN = ("FAILED", "CANCELLED")  # an array's failed and cancelled tasks run again


def job_page(job: dict, tasks: list[dict], index: int | None, stream: str) -> str:
    """One job: its state and buttons, an array's progress and tasks, its dependencies, the live log of
    the job (or of task `index`), and every attribute."""
    buttons = ""
    for label, method, path, applies in ACTIONS:
        states: tuple[str, ...] = applies + ARRAY_RERUN if path == "/rerun" and job.get("array") else applies
        buttons += (f'<button type="button" data-action="{e(api_href(job["seq"]) + path)}" data-method="{method}" '
                    f'data-confirm="{e(label.split(" ")[0])} {e(job["id"])}?" data-states="{" ".join(states)}"'
                    f'{"" if job["state"] in states else " disabled"}>{e(label)}</button>')
    head = (f'<h1>{e(job["id"])} <span class="name">{e(job.get("name"))}</span></h1>'
            f'<p>{state_badge(job["state"], live=True)} <span class="muted">{e(job.get("owner"))} · '
            f'{e(job.get("queue"))} · {e(job.get("reason") or "")}</span></p>'
            f'<div class="actions">{buttons}</div>')
    array = ""
    if job.get("array"):
        rows = [[f'<a href="{job_href(job["seq"], index=t["index"], stream=stream)}">{e(t["id"])}</a>',
                 state_badge(t["state"]), e(t.get("exit_status"))] for t in tasks]
        head += progress(job["array"])
        array = f'<section class="card"><h2>Tasks</h2>{_table(["Task", "State", "Exit"], rows, "No tasks.", "tasks")}</section>'
    graph = dependency_graph(job)
    deps = f'<section class="card"><h2>Dependencies</h2>{graph}</section>' if graph else ""
    log = _log_pane(job, index, stream)
    attributes = _table(["Attribute", "Value"], ([e(k), e(_shown(v, k))] for k, v in job.items()
                                                 if v not in (None, "", [], {}) and k not in ("history",)),
                        "No attributes.", "attributes")
    return f'{head}{log}{array}{deps}<section class="card"><h2>Attributes</h2>{attributes}</section>'


def _log_pane(job: dict, index: int | None, stream: str) -> str:
    if job.get("array") and index is None:
        return '<section class="card"><h2>Output</h2><p class="empty">Pick a task to follow its output.</p></section>'
    src = api_href(job["seq"] if index is None else f'{job["seq"]}[{index}]') + "/log?" + urlencode({"stream": stream})
    which = f"task {index}" if index is not None else "job"
    task = f' data-task="{index}"' if index is not None else ""
    current = ' aria-current="page"'
    tabs = " ".join(f'<a href="{job_href(job["seq"], index=index, stream=s)}"{current if s == stream else ""}>{s}</a>'
                    for s in ("stdout", "stderr"))
    return (f'<section class="card"><h2>Output of the {which} <small>{tabs}</small></h2>'
            f'<pre id="log" class="log" data-src="{e(src)}"{task} aria-live="polite"></pre></section>')


def _shown(value: Any, key: str = "") -> str:
    """An attribute as text: times (`*_at`, seconds since the epoch) in UTC, structures as JSON."""
    if key.endswith("_at") and isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def workers_page(nodes: list[dict]) -> str:
    keys: list[str] = []
    for node in nodes:
        keys += [k for k in node if k not in keys]
    rows = [[e(_shown(node.get(k), k)) if node.get(k) is not None else "" for k in keys] for node in nodes]
    return f"<h1>Workers</h1>{_table(keys, rows, 'No workers are running.')}"
