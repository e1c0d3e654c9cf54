"""Job and Extension: how users define work. Pure Python, no database code."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from .context import JobContext
from .errors import DefinitionError
from .result import JobResult
from .settings import SETTING_NAMES, JobSettings, merge_settings

JobReturn = JobResult | str | None
JobFunction = Callable[[JobContext], JobReturn | Awaitable[JobReturn]]
F = TypeVar("F", bound=JobFunction)


class Job:
    """Subclass and set `name`, `description`, `schedule`; implement `execute` (sync or async).

    Optional class attributes are the per-job settings (see `pgsched.settings.JobSettings`):
    `enabled`, `timezone`, `timeout`, `max_attempts`, `retry_backoff`, `overlap`, `misfire`,
    `misfire_grace`, `misfire_cap`, `tags`, `isolation`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    schedule: ClassVar[str | None] = None

    def execute(self, ctx: JobContext) -> Any:
        raise NotImplementedError(f"job '{self.name}' must implement execute(ctx)")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.execute)

    def settings(self) -> JobSettings:
        """The settings written in code, validated; the profile may override them later."""
        if not self.name or not isinstance(self.name, str):
            raise DefinitionError(
                f"{type(self).__qualname__} has no `name`; give every job a unique string name"
            )
        where = f"job '{self.name}' ({type(self).__module__}.{type(self).__qualname__})"
        values = {s: getattr(self, s) for s in SETTING_NAMES if hasattr(self, s)}
        return merge_settings(JobSettings(), values, where=where)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FunctionJob(Job):
    """A job made by `Extension.job` from a plain function."""

    def __init__(
        self, name: str, func: JobFunction, description: str, settings: dict[str, Any]
    ) -> None:
        self._name = name
        self._func = func
        self._description = description or (inspect.getdoc(func) or "").split("\n")[0]
        self._settings = settings

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    @property
    def description(self) -> str:  # type: ignore[override]
        return self._description

    @property
    def schedule(self) -> str | None:  # type: ignore[override]
        value = self._settings.get("schedule")
        return value if isinstance(value, str) else None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self._func)

    @property
    def origin(self) -> str:
        code = getattr(self._func, "__code__", None)
        if code is None:
            return repr(self._func)
        return f"{code.co_filename}:{code.co_firstlineno}"

    def execute(self, ctx: JobContext) -> Any:
        return self._func(ctx)

    def settings(self) -> JobSettings:
        where = f"job '{self._name}' ({self.origin})"
        return merge_settings(JobSettings(), self._settings, where=where)


class Extension:
    """A named group of jobs. Subclass and override `jobs()`, or create one and use `@ext.job`."""

    name: str = ""

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self._decorated: list[Job] = []

    def jobs(self) -> list[Job]:
        return list(self._decorated)

    def job(
        self, name: str, *, schedule: str | None = None, description: str = "", **settings: Any
    ) -> Callable[[F], F]:
        """Register a function as a job of this extension; the function is returned unchanged."""

        def register(func: F) -> F:
            values = dict(settings)
            if schedule is not None:
                values["schedule"] = schedule
            self._decorated.append(FunctionJob(name, func, description, values))
            return func

        return register

    def __repr__(self) -> str:
        return f"<Extension {self.name!r} jobs={[j.name for j in self.jobs()]}>"
