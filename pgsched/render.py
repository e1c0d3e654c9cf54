"""Plain-text tables that fit the terminal."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        local = value.astimezone()
        same_year = local.year == datetime.now().year  # the year only when it says something
        return local.strftime("%m-%d %H:%M:%S" if same_year else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return " ".join(str(value).split())  # one line per row


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    derive: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
) -> None:
    if not rows:
        click.echo("(none)")
        return
    derive = derive or {}
    table = [[cell(derive[k](r) if k in derive else r.get(k)) for k, _ in columns] for r in rows]
    headers = [h for _, h in columns]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    room = shutil.get_terminal_size((120, 20)).columns - 2 * (len(widths) - 1)
    overflow = sum(widths) - room
    if overflow > 0:  # the last column (a message, a description) gives way first
        widths[-1] = max(12, widths[-1] - overflow)
    while sum(widths) > room and max(widths) > 12:
        widest = widths.index(max(widths))  # then the widest, until the table fits
        widths[widest] -= 1
    for line in [headers, *table]:
        click.echo("  ".join(_fit(text, w) for text, w in zip(line, widths, strict=True)).rstrip())


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def print_records(rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        width = max(len(k) for k in row)
        for key, value in row.items():
            click.echo(f"{key.ljust(width)}  {cell(value)}")


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
