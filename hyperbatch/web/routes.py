"""The dashboard's routes on the API's resolver: pages at `/` and under `/ui/`, the sign-in of local mode.

The pages call the scheduler as the API's routes do, as the same caller (`caller`), so a page shows
what the API would answer; the page's buttons and live log call the API itself (fetch from
static/dashboard.js). Locally a browser signs in once with the daemon's token and gets a session
cookie (hyperbatch.support.sessions); on AWS every request is signed by `hyper dashboard`'s proxy,
and there is no sign-in form.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable
from urllib.parse import parse_qs, unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from hyperbatch.core import limits
from hyperbatch.core.errors import SpecError
from hyperbatch.core.ids import parse_job_ref
from hyperbatch.core.views import view
from hyperbatch.services.scheduler import Caller, Scheduler
from hyperbatch.support.sessions import COOKIE, Sessions, same_origin, session_id
from hyperbatch.web import pages

HTML = "text/html; charset=utf-8"
STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
# What API Gateway must route to the function for the dashboard on AWS (stacks/api.ROUTES): the pages,
# not the sign-in, which is local mode's.
AWS_PAGES = (("GET", "/"), ("GET", "/ui/jobs"), ("GET", "/ui/jobs/{id}"), ("GET", "/ui/workers"),
             ("GET", "/ui/static/{name}"))
PUBLIC = ("/ui/signin", "/ui/static/")  # answered without credentials
TASKS_SHOWN = 200  # an array's tasks listed on its page; the bar counts them all
MAX_FILTER = 256  # characters of a filter (user, queue, state, name), as the API takes an owner
NO_SIGN_IN = "this host checks each request's AWS signature: open the dashboard with `hyper dashboard`"
WRONG_TOKEN = "That token is not this daemon's: copy it again from the token file."
FOREIGN_FORM = "The sign-in form was sent from another site: open the dashboard and sign in there."
# A page tells the browser to run only its own script and style and to frame nothing.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "same-origin"}


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC)


def is_page(path: str) -> bool:
    return path == "/" or path.startswith("/ui/")


def page(body: str, status: int = 200, cookies: list[Cookie] | None = None) -> Response:
    return Response(status, HTML, body, headers=PAGE_HEADERS, cookies=cookies)


def problem_page(message: str, status: int) -> Response:
    """A request a page cannot answer (an unknown job, a bad filter): the problem in one line."""
    return page(pages.message("Cannot show this", message), status)


def refused_page(sessions: Sessions | None, status: int) -> Response:
    """What a page answers a request without credentials: the sign-in form locally, else one line."""
    if sessions is not None:
        return page(pages.sign_in(), 401)
    return page(pages.message("Not signed", NO_SIGN_IN), status)


def register(app: APIGatewayHttpResolver, scheduler: Scheduler, caller: Callable[[], Caller],
             workers: Callable[[], dict[tuple[str, str], int]], nodes: Callable[[], list[dict]] | None,
             sessions: Sessions | None) -> None:
    """Add the dashboard's routes to `app` (whose middleware has already authorized the caller)."""

    def shell(title: str, body: str) -> Response:
        return page(pages.layout(title, body, scheduler.server, scheduler.queues(workers()), sign_out=sessions is not None))

    def query(name: str) -> str | None:
        value = (app.current_event.query_string_parameters or {}).get(name)
        if value is not None and len(value) > MAX_FILTER:
            raise SpecError(f"{name}: at most {MAX_FILTER} characters")
        return value.strip() if value and value.strip() else None

    @app.get("/", include_in_schema=False)
    def home():
        queues = scheduler.queues(workers())
        recent = scheduler.list(caller(), owner="*", limit=10).items
        return page(pages.layout("Queues", pages.queues_page(queues, [view(d) for d in recent]), scheduler.server,
                                 queues, sign_out=sessions is not None))

    @app.get("/ui/jobs", include_in_schema=False)
    def jobs():
        filters = {"state": query("state"), "user": query("user"), "queue": query("queue"), "name": query("name")}
        state = filters["state"].upper() if filters["state"] else None
        if state is not None and state not in pages.STATES:
            raise SpecError(f"unknown state '{state}': use {', '.join(pages.STATES)}")
        found = scheduler.list(caller(), owner=filters["user"] or "*", queue=filters["queue"],
                               states=[state] if state else None, limit=100, next=query("next"))
        shown = [view(d) for d in found.items]
        if filters["name"]:
            shown = [j for j in shown if filters["name"].lower() in (j.get("name") or "").lower()]
        names = [q.name for q in scheduler.config.queues]
        return shell("Jobs", pages.jobs_page(shown, filters, names, found.next))

    @app.get("/ui/jobs/<job_id>", include_in_schema=False)
    def job(job_id: str):
        ref = parse_job_ref(unquote(job_id), scheduler.server)
        doc = view(scheduler.get(ref.seq, caller()))
        index = ref.index
        if index is None and query("index") is not None:
            try:
                index = int(query("index") or "")
            except ValueError:
                raise SpecError("index: must be a task's index, a whole number") from None
        if index is not None:  # a task that is not there is a 404 page, not a page following no output
            scheduler.task(ref.seq, index, caller())
        stream = "stderr" if query("stream") == "stderr" else "stdout"
        tasks = scheduler.tasks(ref.seq, caller(), 0, TASKS_SHOWN)[0] if doc.get("array") else []
        if doc.get("array") and index is None:  # follow the first task that runs, else the first
            running = [t for t in tasks if t["state"] == "RUNNING"]
            index = (running or tasks or [{"index": None}])[0]["index"]
        return shell(doc["id"], pages.job_page(doc, tasks, index, stream))

    @app.get("/ui/workers", include_in_schema=False)
    def workers_page():
        return shell("Workers", pages.workers_page(scheduler.nodes(nodes() if nodes is not None else None)))

    @app.get("/ui/static/<name>", include_in_schema=False)
    def static(name: str):
        if name not in STATIC:
            return page(pages.message("Not found", f"no file {name}"), 404)
        text = resources.files("hyperbatch.web").joinpath("static", name).read_text(encoding="utf-8")
        return Response(200, STATIC[name], text, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    @app.get("/ui/signin", include_in_schema=False)
    def sign_in_form():
        if sessions is None:
            return page(pages.message("Not signed", NO_SIGN_IN), 404)
        return page(pages.sign_in())

    @app.post("/ui/signin", include_in_schema=False)
    def sign_in():
        if sessions is None:
            return page(pages.message("Not signed", NO_SIGN_IN), 404)
        event = app.current_event
        if not same_origin("POST", event.headers):
            return page(pages.sign_in(FOREIGN_FORM), 403)
        try:
            body = event.decoded_body or ""
        except UnicodeDecodeError:  # no token is bytes that are not text
            return page(pages.sign_in(WRONG_TOKEN), 401)
        if len(body) > limits.MAX_REF_CHARS * 4:
            return page(pages.sign_in(WRONG_TOKEN), 401)
        given = (parse_qs(body).get("token") or [""])[0]
        sid = sessions.sign_in(given)
        if sid is None:
            return page(pages.sign_in(WRONG_TOKEN), 401)
        cookie = Cookie(COOKIE, sid, path="/", secure=False, http_only=True, max_age=sessions.seconds,
                        same_site=SameSite.STRICT_MODE)
        return Response(303, HTML, "", headers={"Location": "/", "Cache-Control": "no-store"}, cookies=[cookie])

    @app.post("/ui/signout", include_in_schema=False)
    def sign_out():
        if sessions is not None:
            sessions.sign_out(session_id(app.current_event.headers))
        gone = Cookie(COOKIE, "", path="/", secure=False, http_only=True, max_age=0, same_site=SameSite.STRICT_MODE)
        return Response(303, HTML, "", headers={"Location": "/ui/signin", "Cache-Control": "no-store"}, cookies=[gone])
