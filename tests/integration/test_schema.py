"""sql/schema.sql is the schema the migrations build: applied from an empty database, the
revisions and the one readable file give the same catalog, object by object (procrastinate's
migration test is the model; here the catalog is compared directly, so no pg_dump of the
server's version is needed)."""

from __future__ import annotations

import difflib
import re

import psycopg
import pytest

from pgsched import migrate
from pgsched.queries import read_sql, render

pytestmark = pytest.mark.matrix

# Each query returns (kind, name, definition) rows for the objects of schema %(s)s; the
# schema's own name is replaced by "{schema}" before comparing.
CATALOG = {
    "column": """
        SELECT c.relname || '.' || to_char(a.attnum, 'FM000') || ' ' || a.attname,
               concat_ws(' ', format_type(a.atttypid, a.atttypmod),
                         CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                         'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid),
                         CASE a.attidentity WHEN 'a' THEN 'IDENTITY ALWAYS'
                                            WHEN 'd' THEN 'IDENTITY BY DEFAULT' END,
                         CASE a.attgenerated WHEN 's' THEN 'GENERATED STORED' END)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = %(s)s::regnamespace AND c.relkind = 'r'
          AND c.relname <> 'alembic_version' AND a.attnum > 0 AND NOT a.attisdropped""",
    "table options": """
        SELECT relname, array_to_string(ARRAY(SELECT unnest(reloptions) ORDER BY 1), ', ')
        FROM pg_class
        WHERE relnamespace = %(s)s::regnamespace AND relkind = 'r'
          AND relname <> 'alembic_version'""",
    "constraint": """
        SELECT c.relname || ' ' || k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = %(s)s::regnamespace AND c.relname <> 'alembic_version'""",
    "index": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = %(s)s::regnamespace AND c.relname <> 'alembic_version'""",
    "function": """
        SELECT p.proname, pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace = %(s)s::regnamespace""",
    "trigger": """
        SELECT c.relname || ' ' || t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(s)s::regnamespace AND NOT t.tgisinternal""",
    "comment": """
        SELECT c.relname, obj_description(c.oid, 'pg_class')
        FROM pg_class c
        WHERE c.relnamespace = %(s)s::regnamespace AND obj_description(c.oid, 'pg_class')
              IS NOT NULL""",
    "other relation": """
        SELECT relname, relkind::text FROM pg_class
        WHERE relnamespace = %(s)s::regnamespace AND relkind NOT IN ('r', 'i', 'S')""",
}


def describe(conn: psycopg.Connection[tuple[str, str]], schema: str) -> list[str]:
    lines: list[str] = []
    for kind, query in CATALOG.items():
        for name, definition in sorted(conn.execute(query, {"s": schema}).fetchall()):
            text = re.sub(rf"\b{schema}\b", "{schema}", f"{kind} {name}: {definition}")
            lines.extend(text.splitlines())
    return lines


def test_migrations_from_empty_build_exactly_schema_sql(empty_dsn: str) -> None:
    migrate.upgrade(empty_dsn, "sched_migrated")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sched_written")
        conn.execute(render(read_sql("schema.sql"), "sched_written").encode())
        migrated = describe(conn, "sched_migrated")
        written = describe(conn, "sched_written")
    assert len(migrated) > 100  # the catalog queries found the objects
    diff = "\n".join(
        difflib.unified_diff(migrated, written, "the migrations", "sql/schema.sql", lineterm="")
    )
    assert not diff, f"sql/schema.sql differs from what the migrations build:\n{diff}"


def test_the_comparison_sees_a_difference(empty_dsn: str) -> None:
    """The check can fail: a schema one index short is told apart."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for schema in ("sched_a", "sched_b"):
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(render(read_sql("schema.sql"), schema).encode())
        conn.execute("DROP INDEX sched_b.runs_finished_idx")
        assert describe(conn, "sched_a") != describe(conn, "sched_b")
