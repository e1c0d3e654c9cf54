"""The YAML profile: deployment settings and per-job overrides, with errors that cite the line.

The file is read as a YAML node tree rather than plain data so that every error can name the
line it comes from; duplicate keys, which PyYAML would silently collapse, are errors too.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pgsched.cron import get_zone, parse_schedule
from pgsched.errors import ConfigError, ProfileError
from pgsched.settings import (
    SETTING_NAMES,
    RunnerSettings,
    check_setting,
    merge_runner_settings,
    parse_duration,
    suggest,
)

__all__ = [
    "DatabaseOptions",
    "JobOverride",
    "Profile",
    "RetentionOptions",
    "RunnerSettings",
    "load_profile",
    "profile_from_env",
]

ENV_PROFILE = "PGSCHED_PROFILE"
ENV_DATABASE_URL = "PGSCHED_DATABASE_URL"
ENV_LISTEN_URL = "PGSCHED_LISTEN_URL"
POOLERS = ("auto", "none", "transaction")


@dataclass(frozen=True)
class JobOverride:
    """Profile settings for one job; `source` lets later checks point back at the file."""

    job: str
    extension: str | None
    values: Mapping[str, object]  # normalised, only the keys present in the file
    source: str  # "path/to/profile.yaml:14"


@dataclass(frozen=True)
class DatabaseOptions:
    """How to connect, beyond the URL (README "Behind PgBouncer" and "Locks")."""

    pooler: str = "auto"  # auto (probe once per process) | none | transaction
    listen_url: str | None = None  # a direct connection for LISTEN, behind a pooler
    lock_timeout: float = 60.0  # seconds a sync or migration waits for its lock, then fails


@dataclass(frozen=True)
class RetentionOptions:
    keep_days: float = 14.0
    prune_schedule: str = "0 */10 * * * *"


@dataclass(frozen=True)
class Profile:
    path: Path | None
    database_url: str | None
    schema: str = "pgsched"
    extensions: tuple[str, ...] = ()
    scheduler_enabled: bool = True
    timezone: str = "UTC"
    jobs: tuple[JobOverride, ...] = ()
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    database: DatabaseOptions = field(default_factory=DatabaseOptions)
    retention: RetentionOptions = field(default_factory=RetentionOptions)


_TOP_KEYS = frozenset({"database", "extensions", "scheduler", "runner", "retention"})
_DATABASE_KEYS = frozenset({"url", "schema", "pooler", "listen_url", "lock_timeout"})
_SCHEDULER_KEYS = frozenset({"enabled", "timezone", "jobs"})
_JOB_KEYS = SETTING_NAMES | {"job", "extension"}
_RUNNER_KEYS = frozenset(f.name for f in dataclasses.fields(RunnerSettings))
_RETENTION_KEYS = frozenset(f.name for f in dataclasses.fields(RetentionOptions))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_KINDS = {MappingNode: "a mapping", SequenceNode: "a list", ScalarNode: "a single value"}


class _Reader:
    """Walks the node tree; knows the file name so every error can cite file and line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._constructor = SafeConstructor()

    def at(self, node: Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def error(self, node: Node, entry: str, reason: str, fix: str) -> ProfileError:
        return ProfileError(f"{self.at(node)}: {entry}: {reason}; {fix}")

    def mapping(self, node: Node, entry: str, known: frozenset[str]) -> dict[str, Node]:
        """Keys to value nodes; rejects non-mappings, duplicate and unknown keys."""
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(
                node, entry, f"expected a mapping, got {_kind(node)}", "write 'key: value' lines"
            )
        result: dict[str, Node] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, entry, f"key {key!r} is not a name", "use a text key")
            if key in result:
                raise self.error(
                    key_node,
                    f"{entry}.{key}",
                    f"duplicate key (first at line {lines[key]})",
                    "keep only one",
                )
            if key not in known:
                raise self.error(
                    key_node, f"{entry}.{key}", f"unknown key {key!r}", suggest(key, set(known))
                )
            result[key] = value_node
            lines[key] = key_node.start_mark.line + 1
        return result

    def value(self, node: Node) -> object:
        """A plain scalar value; lists and mappings come back as lists of values and dicts."""
        return self._constructor.construct_object(node, deep=True)

    def scalar(self, node: Node, entry: str) -> object:
        if not isinstance(node, ScalarNode):
            raise self.error(node, entry, f"expected a single value, got {_kind(node)}", "fix it")
        return self.value(node)

    def string(self, node: Node, entry: str, *, optional: bool = False) -> str | None:
        value = self.scalar(node, entry)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(node, entry, f"expected text, got {value!r}", "quote it if needed")
        return value

    def boolean(self, node: Node, entry: str) -> bool:
        value = self.scalar(node, entry)
        if not isinstance(value, bool):
            raise self.error(node, entry, f"expected true or false, got {value!r}", "fix it")
        return value

    def number(self, node: Node, entry: str, *, integer: bool, minimum: float) -> float:
        value = self.scalar(node, entry)
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or value < minimum:  # type: ignore[operator]
            kind = "a whole number" if integer else "a number"
            raise self.error(
                node, entry, f"expected {kind} >= {minimum:g}, got {value!r}", "fix the value"
            )
        assert isinstance(value, int | float)
        return value

    def duration(self, node: Node, entry: str, *, zero_ok: bool = False) -> float:
        value = self.scalar(node, entry)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(node, entry, f"invalid value {value!r}", str(exc)) from None
        if seconds < 0 or (seconds == 0 and not zero_ok):
            hint = "use a duration >= 0 (0 turns it off)" if zero_ok else "use a duration > 0"
            raise self.error(node, entry, f"invalid value {value!r}", hint)
        return seconds


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(node: Node) -> str:
    return _KINDS.get(type(node), "something else")


def load_profile(path: Path | str | None) -> Profile:
    """Read a profile file; None means "no profile" and gives the defaults."""
    if path is None:
        return Profile(path=None, database_url=None)
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            f"{where}: profile file not found; check --profile / {ENV_PROFILE}, "
            "or omit them to run without a profile"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{where}: cannot read the profile ({exc}); fix the file") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = exc.problem or "unreadable YAML"
        if exc.context and exc.context_mark is not None:
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        raise ProfileError(
            f"{where}{position}: malformed YAML: {problem}; fix the syntax at that position"
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: malformed YAML: {exc}; fix the syntax") from None
    if root is None:
        return Profile(path=Path(path), database_url=None)
    try:
        return _read_profile(_Reader(where), root, Path(path))
    except ProfileError:
        raise
    except ConfigError as exc:  # a setting check; its message already cites the line
        raise ProfileError(str(exc)) from None


def _read_profile(r: _Reader, root: Node, path: Path) -> Profile:
    if not isinstance(root, MappingNode):
        raise r.error(
            root,
            "top level",
            f"expected a mapping, got {_kind(root)}",
            f"start with keys such as {', '.join(sorted(_TOP_KEYS))}",
        )
    top = r.mapping(root, "profile", _TOP_KEYS)
    url: str | None = None
    schema = "pgsched"
    database = DatabaseOptions()
    if "database" in top:
        db = r.mapping(top["database"], "database", _DATABASE_KEYS)
        if "url" in db:
            url = r.string(db["url"], "database.url", optional=True)
        if "schema" in db:
            schema = r.string(db["schema"], "database.schema") or schema
            if not _IDENTIFIER.fullmatch(schema):
                raise r.error(
                    db["schema"],
                    "database.schema",
                    f"{schema!r} is not a plain SQL identifier",
                    "use letters, digits and underscores (at most 63)",
                )
        database = _read_database(r, db)

    extensions: list[str] = []
    if "extensions" in top and not _is_null(top["extensions"]):
        node = top["extensions"]
        if not isinstance(node, SequenceNode):
            raise r.error(
                node, "extensions", f"expected a list, got {_kind(node)}", "list 'module:Attr'"
            )
        for i, item in enumerate(node.value):
            spec = r.string(item, f"extensions[{i}]")
            assert spec is not None
            if not _IMPORT_PATH.fullmatch(spec):
                raise r.error(
                    item,
                    f"extensions[{i}]",
                    f"{spec!r} is not an import path",
                    "write it as 'package.module:ExtensionAttribute'",
                )
            extensions.append(spec)

    enabled = True
    timezone = "UTC"
    jobs: tuple[JobOverride, ...] = ()
    if "scheduler" in top:
        sched = r.mapping(top["scheduler"], "scheduler", _SCHEDULER_KEYS)
        if "enabled" in sched:
            enabled = r.boolean(sched["enabled"], "scheduler.enabled")
        if "timezone" in sched:
            zone = r.string(sched["timezone"], "scheduler.timezone")
            assert zone is not None
            try:
                get_zone(zone)
            except ConfigError as exc:
                raise r.error(sched["timezone"], "scheduler.timezone", str(exc), "fix it") from None
            timezone = zone
        if "jobs" in sched:
            jobs = _read_jobs(r, sched["jobs"], timezone)

    runner = RunnerSettings()
    if "runner" in top:
        runner = _read_runner(r, top["runner"])
    retention = RetentionOptions()
    if "retention" in top:
        retention = _read_retention(r, top["retention"])
    return Profile(
        path=path,
        database_url=url,
        schema=schema,
        extensions=tuple(extensions),
        scheduler_enabled=enabled,
        timezone=timezone,
        jobs=jobs,
        runner=runner,
        database=database,
        retention=retention,
    )


def _read_database(r: _Reader, db: dict[str, Node]) -> DatabaseOptions:
    options = DatabaseOptions()
    if "pooler" in db:
        pooler = r.string(db["pooler"], "database.pooler")
        if pooler not in POOLERS:
            raise r.error(
                db["pooler"],
                "database.pooler",
                f"unknown pooler mode {pooler!r}",
                "use auto (probe), none, or transaction (PgBouncer pool_mode = transaction)",
            )
        options = dataclasses.replace(options, pooler=pooler)
    if "listen_url" in db:
        listen = r.string(db["listen_url"], "database.listen_url", optional=True)
        options = dataclasses.replace(options, listen_url=listen)
    if "lock_timeout" in db:
        timeout = r.duration(db["lock_timeout"], "database.lock_timeout")
        options = dataclasses.replace(options, lock_timeout=timeout)
    return options


def _read_jobs(r: _Reader, node: Node, timezone: str) -> tuple[JobOverride, ...]:
    if _is_null(node):
        return ()
    if not isinstance(node, SequenceNode):
        raise r.error(
            node, "scheduler.jobs", f"expected a list, got {_kind(node)}", "use '- job: name' items"
        )
    overrides: list[JobOverride] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(node.value):
        entry = f"scheduler.jobs[{i}]"
        fields = r.mapping(item, entry, frozenset(_JOB_KEYS))
        if "job" not in fields:
            raise r.error(item, entry, "missing 'job'", "add 'job: <job name>' to this entry")
        job = r.string(fields["job"], f"{entry}.job")
        assert job is not None
        extension = None
        if "extension" in fields:
            extension = r.string(fields["extension"], f"{entry}.extension", optional=True)
        if job in seen:
            raise r.error(
                fields["job"],
                f"{entry}.job",
                f"second override for job {job!r} (first at {seen[job]})",
                "merge the two entries into one",
            )
        zone = timezone
        if "timezone" in fields:
            tz_value = r.value(fields["timezone"])
            zone = tz_value if isinstance(tz_value, str) else timezone
        values: dict[str, object] = {}
        for name, value_node in fields.items():
            if name in ("job", "extension"):
                continue
            values[name] = check_setting(
                name,
                r.value(value_node),
                where=f"{r.at(value_node)} ({entry}.{name})",
                timezone=zone,
            )
        source = r.at(item)
        seen[job] = source
        overrides.append(JobOverride(job, extension, MappingProxyType(values), source))
    return tuple(overrides)


def _read_runner(r: _Reader, node: Node) -> RunnerSettings:
    """The settings' own rules (pgsched.settings) decide; the profile adds file and line."""
    fields = r.mapping(node, "runner", _RUNNER_KEYS)
    values = {name: r.scalar(value, f"runner.{name}") for name, value in fields.items()}
    origins = {name: f"{r.at(value)}: runner" for name, value in fields.items()}
    try:
        return merge_runner_settings(
            RunnerSettings(), values, where=f"{r.at(node)}: runner", origins=origins
        )
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None


def _read_retention(r: _Reader, node: Node) -> RetentionOptions:
    fields = r.mapping(node, "retention", _RETENTION_KEYS)
    options = RetentionOptions()
    if "keep_days" in fields:
        # 0 turns pruning off (the README's promise): history is then kept forever.
        keep = r.number(fields["keep_days"], "retention.keep_days", integer=False, minimum=0)
        options = dataclasses.replace(options, keep_days=float(keep))
    if "prune_schedule" in fields:
        value_node = fields["prune_schedule"]
        schedule = r.string(value_node, "retention.prune_schedule")
        assert schedule is not None
        try:
            parse_schedule(schedule)
        except ConfigError as exc:
            raise r.error(value_node, "retention.prune_schedule", str(exc), "fix it") from None
        options = dataclasses.replace(options, prune_schedule=schedule)
    return options


def profile_from_env(explicit_path: str | None, explicit_dsn: str | None) -> Profile:
    """Resolve the profile and DSN: explicit option, then environment, then the file."""
    path = explicit_path or os.environ.get(ENV_PROFILE) or None
    profile = load_profile(path)
    dsn = explicit_dsn or os.environ.get(ENV_DATABASE_URL) or profile.database_url
    if listen := os.environ.get(ENV_LISTEN_URL):
        database = dataclasses.replace(profile.database, listen_url=listen)
        profile = dataclasses.replace(profile, database=database)
    return dataclasses.replace(profile, database_url=dsn)
