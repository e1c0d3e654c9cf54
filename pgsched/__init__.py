"""pgsched: database-native cron jobs for Python on PostgreSQL."""

from typing import TYPE_CHECKING

from .context import Cancelled, JobContext
from .errors import (
    ConfigError,
    CronError,
    DefinitionError,
    PgschedError,
    ProfileError,
    ScheduleExistsError,
    UnknownJobError,
    UnknownRunError,
    UnknownScheduleError,
)
from .job import Extension, Job
from .result import JobResult
from .schedules import Schedule

__version__ = "0.2.0"

__all__ = [
    "Cancelled",
    "ConfigError",
    "CronError",
    "DefinitionError",
    "Extension",
    "Job",
    "JobContext",
    "JobResult",
    "PgschedError",
    "ProfileError",
    "Schedule",
    "ScheduleExistsError",
    "UnknownJobError",
    "UnknownRunError",
    "UnknownScheduleError",
    "__version__",
    "add_schedule",
    "background_runner",
    "cancel_run",
    "list_schedules",
    "remove_schedule",
    "request_run",
]


if TYPE_CHECKING:
    from .api import add_schedule, cancel_run, list_schedules, remove_schedule, request_run
    from .runner import background_runner


def __getattr__(name: str) -> object:
    """The application API is imported on first use: it brings in psycopg and the runner,
    which the definitions (a job module's `from pgsched import Job`) do not need."""
    if name in ("request_run", "cancel_run", "add_schedule", "remove_schedule", "list_schedules"):
        from . import api

        return getattr(api, name)
    if name == "background_runner":
        from .runner import background_runner

        return background_runner
    raise AttributeError(f"module 'pgsched' has no attribute {name!r}")
