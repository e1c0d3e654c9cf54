"""Discovery and registry rules (no database needed)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from pgsched import DefinitionError, Extension, Job, ProfileError
from pgsched import registry as registry_module
from pgsched.profile import load_profile
from pgsched.registry import build_registry, discover

first = Extension("first")
second = Extension("second")


@first.job("shared-name", schedule="0 */15 * * * *")
def one(ctx: object) -> None: ...


@second.job("shared-name")
def two(ctx: object) -> None: ...


def test_duplicate_job_names_are_an_error_naming_both_places() -> None:
    with pytest.raises(DefinitionError) as err:
        build_registry([first, second], load_profile(None))
    message = str(err.value)
    assert "'shared-name' is defined twice" in message
    assert "extension 'first'" in message and "extension 'second'" in message
    assert "test_registry.py:" in message  # where each one is defined


def test_extensions_are_found_through_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = EntryPoint("tests", "tests.apps.basic:ext", "pgsched.extensions")
    monkeypatch.setattr(
        registry_module,
        "entry_points",
        lambda group: [point] if group == "pgsched.extensions" else [],
    )
    names = build_registry(discover([], load_profile(None)), load_profile(None)).names
    assert "echo-params" in names and "tick-every-second" in names


def test_override_of_an_unknown_job_names_the_profile_line(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text("scheduler:\n  jobs:\n    - job: no-such-job\n      enabled: false\n")
    with pytest.raises(ProfileError) as err:
        build_registry([first], load_profile(path))
    assert f"{path}:3" in str(err.value) and "no-such-job" in str(err.value)


def test_profile_overrides_apply_and_record_their_source(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "scheduler:\n  timezone: Europe/Berlin\n  jobs:\n"
        "    - job: shared-name\n      schedule: '0 0 * * * *'\n"
    )
    definition = build_registry([first], load_profile(path))["shared-name"]
    assert definition.settings.schedule == "0 0 * * * *"
    assert definition.timezone == "Europe/Berlin"
    assert definition.overrides["schedule"].startswith(f"{path}:")


class IsolatedJob(Job):
    name = "isolated-class"
    isolation = "process"


class IsolatedExtension(Extension):
    name = "isolated"

    def jobs(self) -> list[Job]:
        return [IsolatedJob(), *super().jobs()]


isolated = IsolatedExtension()


@isolated.job("isolated-decorated", isolation="process")
def isolated_decorated(ctx: object) -> None: ...


@isolated.job("isolated-by-profile")
def isolated_by_profile(ctx: object) -> None: ...


def test_isolation_is_set_in_code_or_in_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "scheduler:\n  jobs:\n"
        "    - job: isolated-by-profile\n      isolation: process\n"
        "    - job: isolated-class\n      isolation: thread\n"
    )
    plain = build_registry([isolated], load_profile(None))
    assert plain["isolated-class"].settings.isolation == "process"
    assert plain["isolated-decorated"].settings.isolation == "process"
    assert plain["isolated-by-profile"].settings.isolation == "thread"
    overridden = build_registry([isolated], load_profile(path))
    assert overridden["isolated-by-profile"].settings.isolation == "process"
    assert overridden["isolated-class"].settings.isolation == "thread"
