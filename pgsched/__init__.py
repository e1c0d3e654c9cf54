"""pgsched: database-native cron jobs for Python on PostgreSQL."""

from typing import TYPE_CHECKING

from .context import Cancelled, JobContext
from .errors import (
    ConfigError,
    CronError,
    DefinitionError,
    PgschedError,
    ProfileError,
    UnknownJobError,
    UnknownRunError,
)
from .job import Extension, Job
from .result import JobResult

__version__ = "0.1.0"

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
    "UnknownJobError",
    "UnknownRunError",
    "__version__",
    "background_runner",
    "cancel_run",
    "request_run",
]


if TYPE_CHECKING:
    from .api import cancel_run, request_run
    from .runner import background_runner


def __getattr__(name: str) -> object:
    """The application API is imported on first use: it brings in psycopg and the runner,
    which the definitions (a job module's `from pgsched import Job`) do not need."""
    if name in ("request_run", "cancel_run"):
        from . import api

        return getattr(api, name)
    if name == "background_runner":
        from .runner import background_runner

        return background_runner
    raise AttributeError(f"module 'pgsched' has no attribute {name!r}")
