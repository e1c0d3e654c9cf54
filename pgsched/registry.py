"""Find the user's extensions and turn them, with the profile's overrides, into job definitions."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any

from .cron import CronSchedule, check_schedule, parse_schedule
from .errors import DefinitionError, ProfileError, UnknownJobError
from .job import Extension as Extension
from .job import FunctionJob, Job
from .profile import Profile
from .settings import JobSettings, merge_settings

ENTRY_POINT_GROUP = "pgsched.extensions"


@dataclass(frozen=True)
class JobDefinition:
    """A job as it will be synced: code settings with the profile's overrides applied."""

    job: Job
    extension: str
    origin: str
    settings: JobSettings
    timezone: str
    overrides: Mapping[str, str] = field(default_factory=dict)  # setting -> profile file:line

    @property
    def name(self) -> str:
        return self.job.name

    @cached_property
    def is_async(self) -> bool:
        """Asked for every run: inspect's answer costs more than a no-op run's bookkeeping."""
        return self.job.is_async

    @property
    def cron(self) -> CronSchedule | None:
        """Built when asked (a sync computing next_run_at), not kept: 100,000 croniter
        iterators would hold over 100 MB for the life of a runner."""
        if self.settings.schedule is None:
            return None
        return parse_schedule(self.settings.schedule, self.timezone, job=self.name)

    def validate(self) -> None:
        if self.settings.schedule is not None:
            check_schedule(self.settings.schedule, self.timezone, job=self.name)


def _origin(job: Job) -> str:
    if isinstance(job, FunctionJob):
        return job.origin
    cls = type(job)
    try:
        return f"{inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]}"
    except (OSError, TypeError):
        return f"{cls.__module__}.{cls.__qualname__}"


def import_extension(spec: str, *, where: str) -> list[Extension]:
    """Import `module:attr` (an Extension, an Extension class, a list of them, or a factory)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise DefinitionError(
            f"{where}: '{spec}' is not an import path; write it as module:attribute"
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: apps in the working directory are importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DefinitionError(
            f"{where}: cannot import module '{module_name}' ({exc}); "
            "check the name and that it is installed or in the current directory"
        ) from exc
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Extension)]
        if not found:
            raise DefinitionError(
                f"{where}: module '{module_name}' holds no Extension; "
                f"name one as {module_name}:NAME"
            )
        return found
    try:
        value: Any = getattr(module, attr)
    except AttributeError as exc:
        raise DefinitionError(f"{where}: module '{module_name}' has no attribute '{attr}'") from exc
    return _as_extensions(value, spec, where)


def _as_extensions(value: Any, spec: str, where: str) -> list[Extension]:
    if isinstance(value, Extension):
        return [value]
    if inspect.isclass(value) and issubclass(value, Extension):
        return [value()]
    if isinstance(value, list | tuple) and all(isinstance(v, Extension) for v in value):
        return list(value)
    if callable(value):
        return _as_extensions(value(), spec, where)
    raise DefinitionError(
        f"{where}: '{spec}' is a {type(value).__name__}, not a pgsched Extension "
        "(or a class, list or factory of them)"
    )


def extensions_from(app: Any, *, where: str) -> list[Extension]:
    """The extensions an `app=` argument names (background_runner's, pgsched.testing's): an
    Extension, an Extension class, a `"module:attr"` import path, a factory, or a list of
    them."""
    items: Iterable[Any] = app if isinstance(app, list | tuple) else [app]
    extensions: list[Extension] = []
    for item in items:
        if isinstance(item, str):
            extensions += import_extension(item, where=where)
        else:
            extensions += _as_extensions(item, repr(item), where)
    if not extensions:
        raise DefinitionError(f"{where}: no Extension given")
    return extensions


def discover(
    app_specs: Iterable[str], profile: Profile, *, use_entry_points: bool = True
) -> list[Extension]:
    """Extensions from --app, the profile's `extensions:` list and the entry-point group."""
    found: list[Extension] = []
    for spec in app_specs:
        found += import_extension(spec, where="--app")
    for spec in profile.extensions:
        found += import_extension(spec, where=f"{profile.path}: extensions")
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found += _as_extensions(ep.load(), ep.value, f"entry point '{ep.name}'")
    unique: dict[int, Extension] = {id(ext): ext for ext in found}  # same object listed twice
    return list(unique.values())


@dataclass(frozen=True)
class Registry:
    """All job definitions of this process, by name."""

    definitions: Mapping[str, JobDefinition]

    def __contains__(self, name: object) -> bool:
        return name in self.definitions

    def __getitem__(self, name: str) -> JobDefinition:
        return self.definitions[name]

    def get(self, name: str) -> JobDefinition | None:
        return self.definitions.get(name)

    def __iter__(self) -> Any:
        return iter(self.definitions.values())

    def __len__(self) -> int:
        return len(self.definitions)

    @property
    def names(self) -> list[str]:
        return sorted(self.definitions)

    def unknown_job(self, name: str, fix: str) -> UnknownJobError:
        """The error for a name this code does not define: the closest name (a typo is the
        usual cause, as in `dberrors.unknown_job_message`), the names it does, then `fix`."""
        close = difflib.get_close_matches(name, self.names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return UnknownJobError(
            f"unknown job '{name}': no loaded extension defines it; {hint}known jobs: "
            f"{', '.join(self.names) or 'none'}. {fix}"
        )

    @cached_property
    def code_version(self) -> str:
        """Which code this is, as the database knows it: a hash of the job names it defines.
        Runners claim only jobs their code version defines (pgsched.definitions)."""
        digest = hashlib.sha256("\n".join(self.names).encode()).hexdigest()
        return digest[:16]


def build_registry(extensions: Iterable[Extension], profile: Profile) -> Registry:
    """Validate every definition, reject duplicates, and apply the profile's overrides."""
    defs: dict[str, JobDefinition] = {}
    ext_names: set[str] = set()
    for ext in extensions:
        if not ext.name:
            raise DefinitionError(f"{ext!r} has no name; give every Extension a unique name")
        ext_names.add(ext.name)
        for job in ext.jobs():
            settings = job.settings()
            origin = _origin(job)
            if job.name in defs:
                first = defs[job.name]
                raise DefinitionError(
                    f"job '{job.name}' is defined twice: in extension '{first.extension}' at "
                    f"{first.origin} and in extension '{ext.name}' at {origin}; rename one"
                )
            tz = settings.timezone or profile.timezone
            defs[job.name] = JobDefinition(job, ext.name, origin, settings, tz)
            defs[job.name].validate()
    for override in profile.jobs:
        current = defs.get(override.job)
        if current is None:
            raise ProfileError(
                f"{override.source}: override for job '{override.job}', which no extension "
                f"defines; known jobs: {', '.join(sorted(defs)) or 'none'}. Fix the name or "
                "remove the entry"
            )
        if override.extension is not None and override.extension != current.extension:
            known = "" if override.extension in ext_names else " (no such extension is loaded)"
            raise ProfileError(
                f"{override.source}: job '{override.job}' belongs to extension "
                f"'{current.extension}', not '{override.extension}'{known}; fix `extension:`"
            )
        settings = merge_settings(current.settings, override.values, where=override.source)
        tz = settings.timezone or profile.timezone
        sources = {**current.overrides, **{k: override.source for k in override.values}}
        defs[override.job] = replace(current, settings=settings, timezone=tz, overrides=sources)
        defs[override.job].validate()
    if not profile.scheduler_enabled:
        defs = {n: replace(d, settings=replace(d.settings, enabled=False)) for n, d in defs.items()}
    return Registry(defs)
