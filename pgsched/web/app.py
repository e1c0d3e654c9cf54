"""The dashboard's routes: pages rendered from `Insight`, actions recorded through it.

Pages poll themselves with htmx (`#live` re-fetched every few seconds and swapped in place), so
an operator watches runs finish without reloading. No SQL here: every read and every action is
a verb of pgsched/insight.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..errors import PgschedError, UnknownJobError
from ..insight import ActionRefused, Insight
from ..queries import DEFAULT_SCHEMA
from ..states import JOB_STATES
from .metrics import CONTENT_TYPE, render_metrics
from .security import (
    Credentials,
    CsrfTokens,
    basic_auth_user,
    credentials_from_env,
    cross_site_reason,
)

STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
TRIGGERS = ("schedule", "manual", "retry")
POLL_SECONDS = 3
Handler = Callable[[Request], Awaitable[Response]]


def when(value: datetime | None, zone: str | None = None) -> str:
    """A time with its zone, always: `2026-12-01 02:30:00 CET`."""
    if value is None:
        return "—"
    local = value.astimezone(ZoneInfo(zone) if zone else UTC)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def ago(value: datetime | None) -> str:
    """`12 s ago`, `in 3 min`: how far from now, for glancing."""
    if value is None:
        return ""
    seconds = (value - datetime.now(UTC)).total_seconds()
    span = abs(seconds)
    if span < 90:
        text = f"{span:.0f} s"
    elif span < 5400:
        text = f"{span / 60:.0f} min"
    elif span < 172800:
        text = f"{span / 3600:.0f} h"
    else:
        text = f"{span / 86400:.0f} d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    if abs(value) < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def compact(value: Any) -> str:
    """JSON on one line, as it would be typed: `{"tenant": 42}`."""
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def plural(count: int, noun: str) -> str:
    """`1 error`, `3 errors`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pgsched.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        ago=ago,
        seconds=seconds,
        pretty=pretty,
        compact=compact,
        plural=plural,
        urlpart=quote,
    )
    return env


class Dashboard:
    """The routes of one dashboard over one schema."""

    def __init__(
        self,
        insight: Insight,
        credentials: Credentials | None,
        csrf: CsrfTokens,
        timezone: str,
    ) -> None:
        self.insight = insight
        self.credentials = credentials
        self.csrf = csrf
        self.timezone = timezone
        self.templates = _environment()

    # --- plumbing ---------------------------------------------------------------------------

    def user(self, request: Request) -> str | None:
        if self.credentials is None:
            return None
        return basic_auth_user(request, self.credentials)

    def guarded(self, handler: Handler) -> Handler:
        """Pages: with credentials configured, nothing is shown to a stranger."""

        async def page(request: Request) -> Response:
            if self.credentials is not None and self.user(request) is None:
                return _challenge()
            try:
                return await handler(request)
            except UnknownJobError as exc:
                return self.render(request, "error.html", {"message": str(exc)}, status=404)

        return page

    def action(self, handler: Callable[[Request, str], Awaitable[str]]) -> Handler:
        """POSTs: same-origin only, then credentials, then the CSRF token; the handler gets the
        user and returns the message an operator sees."""

        async def post(request: Request) -> Response:
            reason = cross_site_reason(request)
            if reason is not None:
                return PlainTextResponse(reason, status_code=403)
            if self.credentials is None:
                return PlainTextResponse(
                    "the dashboard is read-only: set PGSCHED_DASHBOARD_USER and "
                    "PGSCHED_DASHBOARD_PASSWORD to allow actions",
                    status_code=403,
                )
            user = self.user(request)
            if user is None:
                return _challenge()
            form = await request.form()
            token = request.headers.get("x-csrf-token") or str(form.get("csrf") or "") or None
            if not self.csrf.valid(user, token):
                return PlainTextResponse("missing or wrong CSRF token", status_code=403)
            try:
                message, ok = await handler(request, user), True
            except (ActionRefused, PgschedError, ValueError) as exc:
                message, ok = str(exc), False
            if request.headers.get("hx-request"):
                flash = self.templates.get_template("_flash.html").render(message=message, ok=ok)
                return HTMLResponse(flash, headers={"HX-Trigger": "refresh"})
            back = request.headers.get("referer") or "/"
            return RedirectResponse(back, status_code=303)

        return post

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        user = self.user(request)
        base = {
            "request": request,
            "root": request.scope.get("root_path", "").rstrip("/"),
            "user": user,
            "can_act": user is not None,
            "csrf": self.csrf.token(user) if user else "",
            "tz": self.timezone,
            "poll": POLL_SECONDS,
            "version": __version__,
            "schema": self.insight.schema,
            "now": datetime.now(UTC),
        }
        html = self.templates.get_template(template).render({**base, **context})
        return HTMLResponse(html, status_code=status)

    # --- pages ------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        return self.render(request, "overview.html", await self.insight.overview())

    async def jobs(self, request: Request) -> Response:
        q = request.query_params.get("q") or None
        state = request.query_params.get("state") or None
        if state not in (None, *JOB_STATES):
            state = None
        page = max(1, _int(request.query_params.get("page")) or 1)
        per_page = 50
        rows, total = await self.insight.jobs_page(q, state, per_page, (page - 1) * per_page)
        pages = max(1, -(-total // per_page))
        return self.render(
            request,
            "jobs.html",
            {
                "jobs": rows,
                "total": total,
                "q": q or "",
                "state": state or "",
                "states": JOB_STATES,
                "page": page,
                "pages": pages,
                "query": lambda **kw: urlencode(
                    {k: v for k, v in {"q": q, "state": state, **kw}.items() if v}
                ),
            },
        )

    async def job(self, request: Request) -> Response:
        detail = await self.insight.job_detail(request.path_params["name"])
        return self.render(request, "job.html", detail)

    async def job_timings(self, request: Request) -> Response:
        if self.credentials is not None and self.user(request) is None:
            return _challenge()
        rows = await self.insight.job_timings(request.path_params["name"])
        return JSONResponse(
            [[r["at"] for r in rows], [r["lag"] for r in rows], [r["duration"] for r in rows]]
        )

    async def runs(self, request: Request) -> Response:
        p = request.query_params
        status = p.get("status") if p.get("status") in STATUSES else None
        trigger = p.get("trigger") if p.get("trigger") in TRIGGERS else None
        filters: dict[str, Any] = {
            "job": p.get("job") or None,
            "status": status,
            "trigger": trigger,
            "since": self._local_time(p.get("since")),
            "until": self._local_time(p.get("until")),
            "before": _int(p.get("before")),
        }
        rows = await self.insight.search_runs(**filters, limit=50)
        form = {k: p.get(k, "") for k in ("job", "status", "trigger", "since", "until")}
        older = None
        if len(rows) == 50:
            older = urlencode({**{k: v for k, v in form.items() if v}, "before": rows[-1]["id"]})
        return self.render(
            request,
            "runs.html",
            {
                "runs": rows,
                "form": form,
                "statuses": STATUSES,
                "triggers": TRIGGERS,
                "older": older,
            },
        )

    async def run(self, request: Request) -> Response:
        run_id = _int(request.path_params["run_id"])
        run = await self.insight.run_detail(run_id) if run_id is not None else None
        if run is None:
            return self.render(request, "error.html", {"message": f"no run {run_id}"}, 404)
        return self.render(request, "run.html", {"run": run})

    async def metrics(self, request: Request) -> Response:
        snapshot = await self.insight.cluster_snapshot()
        return Response(render_metrics(snapshot), media_type=CONTENT_TYPE)

    async def health(self, request: Request) -> Response:
        health = await self.insight.health()
        body = {"ok": health.ok, "live_runners": health.live_runners, "reasons": health.reasons}
        return JSONResponse(body, status_code=200 if health.ok else 503)

    def _local_time(self, text: str | None) -> datetime | None:
        """A `datetime-local` field, read in the dashboard's zone."""
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(self.timezone))

    # --- actions ----------------------------------------------------------------------------

    async def run_now(self, request: Request, user: str) -> str:
        name = request.path_params["name"]
        form = await request.form()
        params = _params(str(form.get("params") or ""))
        run_id = await self.insight.request_run(name, params, user)
        return Markup('run <a href="{}/runs/{}">{}</a> of {} requested').format(
            request.scope.get("root_path", ""), run_id, run_id, name
        )

    async def pause(self, request: Request, user: str) -> str:
        await self.insight.set_paused(request.path_params["name"], True, user)
        return f"{request.path_params['name']} paused"

    async def resume(self, request: Request, user: str) -> str:
        await self.insight.set_paused(request.path_params["name"], False, user)
        return f"{request.path_params['name']} resumed"

    async def cancel(self, request: Request, user: str) -> str:
        run_id = _int(request.path_params["run_id"])
        if run_id is None:
            raise ActionRefused("not a run id")
        if await self.insight.cancel_run(run_id, user) == "cancelled":
            return f"run {run_id} cancelled"
        return f"run {run_id} is running: its runner has been asked to stop it"

    async def retry(self, request: Request, user: str) -> str:
        run_id = _int(request.path_params["run_id"])
        if run_id is None:
            raise ActionRefused("not a run id")
        new = await self.insight.retry_run(run_id, user)
        return Markup('retry requested: run <a href="{}/runs/{}">{}</a>').format(
            request.scope.get("root_path", ""), new, new
        )

    def routes(self) -> list[Route | Mount]:
        g, a = self.guarded, self.action
        return [
            Route("/", g(self.overview)),
            Route("/jobs", g(self.jobs)),
            Route("/jobs/{name}", g(self.job)),
            Route("/jobs/{name}/timings.json", self.job_timings),
            Route("/jobs/{name}/run", a(self.run_now), methods=["POST"]),
            Route("/jobs/{name}/pause", a(self.pause), methods=["POST"]),
            Route("/jobs/{name}/resume", a(self.resume), methods=["POST"]),
            Route("/runs", g(self.runs)),
            Route("/runs/{run_id}", g(self.run)),
            Route("/runs/{run_id}/cancel", a(self.cancel), methods=["POST"]),
            Route("/runs/{run_id}/retry", a(self.retry), methods=["POST"]),
            Route("/metrics", self.metrics),
            Route("/health", self.health),
            Mount("/static", StaticFiles(packages=[("pgsched.web", "static")]), name="static"),
        ]


def _challenge() -> Response:
    return PlainTextResponse(
        "log in with the dashboard's user and password",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="pgsched", charset="UTF-8"'},
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _params(text: str) -> dict[str, Any]:
    """Run-now params: a JSON object, or empty."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"params must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError('params must be a JSON object, e.g. {"tenant": 42}')
    return value


def create_app(
    dsn: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    credentials: Credentials | bool | None = True,
    lease_timeout: float = 15.0,
    timezone: str = "UTC",
    secret: bytes | None = None,
    connect_kwargs: dict[str, Any] | None = None,
) -> Starlette:
    """The dashboard as an ASGI app, to serve or to mount (`Mount("/pgsched", app=...)`).

    `credentials=True` (the default) reads PGSCHED_DASHBOARD_USER/PASSWORD; None or False
    makes it read-only. It opens its own small pool on startup and closes it on shutdown.
    `connect_kwargs`: psycopg connect() arguments (`{"prepare_threshold": None}` behind a
    transaction-pooling PgBouncer; `pgsched dashboard` passes its detected topology's)."""
    if credentials is True:
        credentials = credentials_from_env()
    creds = credentials or None
    insight = Insight(
        dsn, schema, lease_timeout=lease_timeout, max_size=4, connect_kwargs=connect_kwargs
    )
    dashboard = Dashboard(insight, creds, CsrfTokens(secret), timezone)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await insight.open(wait=True, timeout=10)
        try:
            yield
        finally:
            await insight.close()

    app = Starlette(routes=dashboard.routes(), lifespan=lifespan)
    app.state.dashboard = dashboard
    return app
