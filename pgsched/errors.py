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


class DatabaseUnavailableError(PgschedError):
    """The database could not be reached; the message says which one and how to configure it."""


class LockTimeoutError(PgschedError):
    """A sync or a migration waited for its lock longer than `database.lock_timeout`; the
    message names the sessions holding it and what to do."""
