"""Load pgsched's SQL: whole files and the named queries of sql/queries.sql.

`{schema}` and `{channel}` in the files become the quoted schema identifier and the quoted
NOTIFY channel literal, so a configurable schema name can never inject SQL.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from psycopg import sql

DEFAULT_SCHEMA = "pgsched"
_HEADER = re.compile(r"^-- name: (?P<name>[a-z_]+)\s*$", re.MULTILINE)


def quote_ident(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def quote_literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel; one per schema so two installs in one database stay apart."""
    return schema


def read_sql(filename: str) -> str:
    return files("pgsched.sql").joinpath(filename).read_text(encoding="utf-8")


def render(text: str, schema: str) -> str:
    return text.replace("{schema}", quote_ident(schema)).replace(
        "{channel}", quote_literal(channel_for(schema))
    )


@cache
def named_queries(schema: str = DEFAULT_SCHEMA, filename: str = "queries.sql") -> dict[str, str]:
    """Every `-- name: x` block of a file of sql/ (queries.sql by default), rendered for
    `schema`."""
    text = read_sql(filename)
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = render("\n".join(lines).strip().rstrip(";"), schema)
    return queries


@cache
def operator_queries(schema: str = DEFAULT_SCHEMA) -> dict[str, str]:
    """The read model's queries (insight.sql) and the shared ones of queries.sql, under one
    name each: a name both files define is refused, so the two can never drift apart."""
    shared, own = named_queries(schema), named_queries(schema, "insight.sql")
    if both := sorted(shared.keys() & own.keys()):
        raise AssertionError(f"queries.sql and insight.sql both define {', '.join(both)}")
    return {**shared, **own}
