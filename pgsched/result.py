"""What a job returns: a plain value object the runner turns into a run row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

Outcome = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class JobResult:
    """The outcome of one run; builders return new objects so results can be shared safely."""

    status: Outcome = "succeeded"
    message: str | None = None
    processed: int | None = None
    failed: int | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def success(cls, message: str | None = None) -> JobResult:
        return cls("succeeded", message)

    @classmethod
    def failure(cls, message: str) -> JobResult:
        return cls("failed", message)

    def with_message(self, text: str) -> JobResult:
        return replace(self, message=text)

    def with_stats(self, processed: int, failed: int = 0) -> JobResult:
        return replace(self, processed=processed, failed=failed)

    def with_data(self, data: Mapping[str, Any]) -> JobResult:
        return replace(self, data=MappingProxyType(dict(data)))

    @property
    def stats(self) -> dict[str, int] | None:
        if self.processed is None and self.failed is None:
            return None
        return {"processed": self.processed or 0, "failed": self.failed or 0}


_PLAIN_SUCCESS = JobResult()  # immutable: shared by every run that returns None


_OUTCOMES = ("succeeded", "failed")


def coerce_result(value: object, job_name: str) -> JobResult:
    """Accept what the contract allows a job to return; anything else fails the run. A job
    ends its run only as succeeded or failed: a JobResult built with another status
    (`pending` would run it again, `running` leave it without an owner) fails it instead."""
    if isinstance(value, JobResult):
        if value.status not in _OUTCOMES:
            return JobResult.failure(
                f"job '{job_name}' returned JobResult(status={value.status!r}); a job ends "
                "its run only as 'succeeded' or 'failed': return JobResult.success() or "
                "JobResult.failure(message)"
            )
        return value
    if value is None:
        return _PLAIN_SUCCESS
    if isinstance(value, str):
        return JobResult.success(value)
    return JobResult.failure(
        f"job '{job_name}' returned {type(value).__name__}; "
        "return a JobResult, a str (the message) or None"
    )
