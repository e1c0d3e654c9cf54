"""pgsched's own exceptions: callers catch by meaning, the CLI maps them to exit codes."""

from __future__ import annotations


class PgschedError(Exception):
    """Something pgsched was asked to do could not be done."""

    exit_code = 1


class ConfigError(PgschedError):
    """Bad configuration or usage: a cron string, a profile, a job definition, an argument.

    The message names the thing that is wrong (job, file, field) and what to do; the CLI
    exits with code 2.
    """

    exit_code = 2


class CronError(ConfigError):
    """A schedule expression that pgsched cannot read."""


class ProfileError(ConfigError):
    """A profile file that is malformed or names something that does not exist."""


class DefinitionError(ConfigError):
    """A job or extension defined in code is invalid (duplicate name, bad setting, bad import)."""


class UnknownJobError(ConfigError):
    """A job name that no definition and no row in pgsched.jobs carries."""


class UnknownRunError(ConfigError):
    """A run id that pgsched.runs does not hold."""


class ScheduleExistsError(ConfigError):
    """add_schedule(..., if_exists="error") of a key the job has already."""


class UnknownScheduleError(ConfigError):
    """A (job, key) that pgsched.schedules does not hold."""


class DatabaseError(PgschedError):
    """The database did not do what the store asked; `sqlstate` says why when it answered.

    The store raises this family instead of psycopg's, so nothing above it handles driver
    classes (procrastinate's `wrap_exceptions` is the model)."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached, or the connection broke: wait and try again."""


class DatabaseRefusedError(DatabaseError):
    """The database answered and refused the statement (bad data, a constraint): trying the
    same again will not help."""


class SchemaMissingError(DatabaseError, ConfigError):
    """The pgsched schema is missing or older than this code: run `pgsched migrate`."""


class PermissionDeniedError(DatabaseError, ConfigError):
    """The database role may not do this; grant it with `pgsched grant KIND ROLE`."""


class LockTimeoutError(PgschedError):
    """A sync or a migration waited for its lock longer than `database.lock_timeout`; the
    message names the sessions holding it and what to do."""
