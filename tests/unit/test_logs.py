"""The per-run logger is bound on first use, and behaves like a structlog logger."""

from __future__ import annotations

import copy
import pickle

import pytest

from pgsched.logs import LazyLogger


def test_lazy_logger_binds_on_first_use_only() -> None:
    log = LazyLogger(job="nightly", run_id=7)
    assert log._logger is None
    bound = log.bind(extra=1)  # reaches the real logger
    assert log._logger is not None
    assert bound._context == {"job": "nightly", "run_id": 7, "extra": 1}


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy])
def test_lazy_logger_can_be_copied(clone: object) -> None:
    """copy and pickle probe attributes on an instance made without __init__: no recursion."""
    copied = clone(LazyLogger(job="nightly"))  # type: ignore[operator]
    assert copied._bound == {"job": "nightly"}
    assert pickle.loads(pickle.dumps(LazyLogger(job="x")))._bound == {"job": "x"}
