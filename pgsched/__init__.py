"""pgsched: database-native cron jobs for Python on PostgreSQL."""

from .context import Cancelled, JobContext
from .errors import (
    ConfigError,
    CronError,
    DefinitionError,
    PgschedError,
    ProfileError,
    UnknownJobError,
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
    "__version__",
]
