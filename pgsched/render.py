"""Plain-text tables and records that fit the terminal; times carry their zone."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from .settings import DURATION_SETTINGS

CUT_HINT = "(cells ending in … were cut: --wide shows them whole, --json shows everything)"


def format_time(moment: datetime, zone: tzinfo = UTC, *, year: bool | None = None) -> str:
    """`12-02 02:30:00 CET`: in `zone`, labelled; the year only when it is not this one."""
    local = moment.astimezone(zone)
    if year is None:
        year = local.year != datetime.now(zone).year
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if year else "%m-%d %H:%M:%S %Z")


def format_duration(seconds: float) -> str:
    """`5s`, `1h30m`, `2d`, `250ms`, `1.5s`: the shortest exact reading."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def cell(value: Any, zone: tzinfo = UTC) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value, zone)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return " ".join(str(value).split())  # one line per row


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    derive: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
    *,
    zone: tzinfo = UTC,
    wide: bool = False,
) -> None:
    """Columns fit the terminal, the last one giving way first, unless `wide`; a cut cell
    ends in … and a note on stderr says how to see it whole."""
    if not rows:
        click.echo("(none)")
        return
    derive = derive or {}
    table = [
        [cell(derive[k](r) if k in derive else r.get(k), zone) for k, _ in columns] for r in rows
    ]
    headers = [h for _, h in columns]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    full = list(widths)
    if not wide:
        _fit_widths(widths)
    for line in [headers, *table]:
        click.echo("  ".join(_fit(text, w) for text, w in zip(line, widths, strict=True)).rstrip())
    if widths != full:
        click.echo(CUT_HINT, err=True)


def _fit_widths(widths: list[int]) -> None:
    room = shutil.get_terminal_size((120, 20)).columns - 2 * (len(widths) - 1)
    overflow = sum(widths) - room
    if overflow > 0:  # the last column (a message, a description) gives way first
        widths[-1] = max(12, widths[-1] - overflow)
    while sum(widths) > room and max(widths) > 12:
        widest = widths.index(max(widths))  # then the widest, until the table fits
        widths[widest] -= 1


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def print_records(rows: Sequence[dict[str, Any]], zone: tzinfo = UTC) -> None:
    for row in rows:
        width = max(len(k) for k in row)
        for key, value in row.items():
            click.echo(f"{key.ljust(width)}  {cell(value, zone)}")


def print_job(job: Mapping[str, Any], zone: tzinfo = UTC) -> None:
    """`jobs show`: each setting readable — yes/no, durations with units, times in their
    zone (the next run in the job's own), and where each overridden setting came from."""
    job_zone = _zone(job.get("timezone")) or zone
    overrides: Mapping[str, str] = job.get("overrides") or {}
    shown = {k: v for k, v in job.items() if k != "overrides"}
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        if key in DURATION_SETTINGS and isinstance(value, int | float):
            text = format_duration(float(value))
        elif key == "next_run_at" and isinstance(value, datetime):
            text = format_time(value, job_zone)
        elif key == "timeout" and value is None:
            text = "none"
        else:
            text = cell(value, zone)
        click.echo(f"{key.ljust(width)}  {text}")
    if overrides:
        click.echo("\noverridden by the profile:")
        for setting, where in overrides.items():
            click.echo(f"  {setting} ← {where}")
    else:
        click.echo("\noverridden by the profile: nothing (every setting is the code's)")


def _zone(name: object) -> tzinfo | None:
    if not isinstance(name, str):
        return None
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return None


def render_run(run: dict[str, Any]) -> str:
    line = f"run {run['id']} of '{run['job_name']}': {run['status']}"
    if run.get("duration") is not None:
        line += f" in {run['duration']:.3f}s"
    if run.get("message"):
        line += f" — {run['message']}"
    error = run.get("error")
    if error and run["status"] == "failed" and error.get("traceback"):
        line += "\n" + error["traceback"].rstrip()
    return line
