"""A web app with its runner inside: `uvicorn examples.web_app:app` (needs `pgsched[web]`).

The app's lifespan runs a pgsched runner in the background (`pgsched.background_runner`),
and its HTTP handlers request runs on their own connection, in their own transaction
(`pgsched.request_run`), cancel them (`pgsched.cancel_run`), and give each user a greeting
on a schedule of their own (`pgsched.add_schedule` / `remove_schedule`: one row of
pgsched.schedules per user, with the user's name as the job's params):

    curl -X POST localhost:8000/greetings/Ada      # -> {"run_id": 17}
    curl localhost:8000/runs/17                    # -> {"status": "succeeded", ...}
    curl -X DELETE localhost:8000/runs/17          # -> {"status": "..."}
    curl -X PUT localhost:8000/users/Ada/greeting \
         -d '{"cron": "0 0 9 * * *", "timezone": "Europe/Berlin"}'
                                                   # -> {"key": "user-Ada", "next": [...]}
    curl -X DELETE localhost:8000/users/Ada/greeting

The database is PGSCHED_DATABASE_URL (run `pgsched migrate` once, or let the runner do it:
`migrate=True` below).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import pgsched

DSN = os.environ.get("PGSCHED_DATABASE_URL", "postgresql:///pgsched")


async def greet(request: Request) -> JSONResponse:
    """One manual run per request, committed with whatever else this transaction does."""
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        run_id = await pgsched.request_run(
            conn, "demo-greet", params={"name": request.path_params["name"]}
        )
        await conn.commit()
    return JSONResponse({"run_id": run_id}, status_code=202)


async def show_run(request: Request) -> JSONResponse:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        cur = await conn.execute(
            "SELECT status, message FROM pgsched.runs WHERE id = %s",
            [int(request.path_params["run_id"])],
        )
        row = await cur.fetchone()
    if row is None:
        return JSONResponse({"error": "no such run"}, status_code=404)
    return JSONResponse({"status": row[0], "message": row[1]})


async def schedule_greeting(request: Request) -> JSONResponse:
    """A per-user schedule: validated before it is written (a bad expression is a 400 that
    says what is wrong), committed with the request's transaction, replaced on a second PUT."""
    user = request.path_params["user"]
    body = await request.json()
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        try:
            schedule = await pgsched.add_schedule(
                conn,
                "demo-greet",
                key=f"user-{user}",
                cron=body.get("cron", ""),
                timezone=body.get("timezone"),
                params={"name": user},
                if_exists="replace",
            )
        except pgsched.CronError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        await conn.commit()
    ticks = [t.isoformat() for t in schedule.next_fire_times(3)]
    return JSONResponse({"key": schedule.key, "next": ticks})


async def unschedule_greeting(request: Request) -> JSONResponse:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        removed = await pgsched.remove_schedule(
            conn, "demo-greet", f"user-{request.path_params['user']}"
        )
    return JSONResponse({"removed": removed}, status_code=200 if removed else 404)


async def cancel(request: Request) -> JSONResponse:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        status = await pgsched.cancel_run(conn, int(request.path_params["run_id"]), by="web")
    return JSONResponse({"status": status})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    async with pgsched.background_runner(DSN, app="examples.demo:ext", migrate=True):
        yield {}


app = Starlette(
    routes=[
        Route("/greetings/{name}", greet, methods=["POST"]),
        Route("/runs/{run_id:int}", show_run),
        Route("/runs/{run_id:int}", cancel, methods=["DELETE"]),
        Route("/users/{user}/greeting", schedule_greeting, methods=["PUT"]),
        Route("/users/{user}/greeting", unschedule_greeting, methods=["DELETE"]),
    ],
    lifespan=lifespan,
)
