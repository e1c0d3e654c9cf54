"""What `import pgsched.cli` loads: every command pays for it, so the engines that only some
commands need (croniter, alembic, the web stack, the runner) load where they are used. A
merge once undid the lazy croniter import without anything noticing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LAZY = ["croniter", "alembic", "sqlalchemy", "starlette", "uvicorn", "pgsched.runner"]


def loaded_by(statement: str) -> set[str]:
    probe = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(json.loads(out))


@pytest.fixture(scope="module")
def cli_modules() -> set[str]:
    return loaded_by("import pgsched.cli")


@pytest.mark.parametrize("module", LAZY)
def test_importing_the_cli_leaves_the_heavy_engines_unloaded(
    module: str, cli_modules: set[str]
) -> None:
    assert "pgsched.cli" in cli_modules and module not in cli_modules


def test_parsing_a_schedule_loads_croniter() -> None:
    """The probe sees a lazy import happen (so the test above can fail)."""
    assert "croniter" in loaded_by(
        "import pgsched.cron as c; c.parse_schedule('* * * * * *', 'UTC')"
    )
