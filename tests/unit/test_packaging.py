"""The wheel holds every module and data file of the source tree: the README's first command
installs pgsched without `-e`, and a package left out of pyproject's explicit list only shows
there (`pgsched.runner` was, until 0.2.0)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# source directory -> where its files land in the wheel (the SQL and the migrations are
# inside the package, so a checkout on PYTHONPATH loads them too)
SHIPPED = {"pgsched": "pgsched"}
MODULES = ["_pgsched_pytest.py"]  # top-level: the pytest plugin (see its docstring)
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


def test_the_wheel_holds_every_source_file(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: no stale build/ of the working tree gets in
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *MODULES):
        shutil.copy(ROOT / name, source / name)
    for name in SHIPPED:
        shutil.copytree(ROOT / name, source / name, ignore=SKIP)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    if built.returncode and "Could not find a version" in built.stderr:
        pytest.skip(f"no build backend reachable: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("pgsched-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = set(MODULES) | {
        f"{target}/{path.relative_to(source / directory).as_posix()}"
        for directory, target in SHIPPED.items()
        for path in (source / directory).rglob("*")
        if path.is_file()
    }
    missing = sorted(expected - in_wheel)
    assert not missing, f"not in the wheel (add them to pyproject's packages): {missing}"
    (entry_points,) = (name for name in in_wheel if name.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\npgsched = _pgsched_pytest" in text
