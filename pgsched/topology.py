"""What stands between pgsched and PostgreSQL, and how every connection must be opened for it.

Behind a transaction-pooling PgBouncer, consecutive transactions of one client connection run
on whichever server connection is free, so nothing may outlive a transaction: server-side
prepared statements (psycopg prepares a query after its 5th run) are found missing or
duplicated on the next server connection, LISTEN registers on a server connection the client
leaves at once, and session advisory locks are taken and released on different backends.

`resolve_topology` decides once per process, from the profile (`database.pooler`) or, with
`auto`, from a probe; every connection pgsched opens (the store's pool, the jobs' pools, the
migration engine, the LISTEN connection) takes `connect_kwargs` and `listen_dsn` from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .logs import get_logger


@dataclass(frozen=True)
class Topology:
    """How to talk to the database: through a transaction pooler or not, and where to LISTEN."""

    dsn: str
    transaction_pooler: bool = False
    listen_dsn: str | None = None  # None: no connection on which LISTEN works (poll only)
    why: str = "database.pooler: none"

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg connect() arguments every connection to `dsn` needs. prepare_threshold=None
        never prepares server-side (psycopg's docs: "Using prepared statements with
        PgBouncer" https://www.psycopg.org/psycopg3/docs/advanced/prepare.html)."""
        return {"prepare_threshold": None} if self.transaction_pooler else {}

    @property
    def listen_unavailable(self) -> str | None:
        """Why runners cannot LISTEN here (then they poll), or None when they can."""
        if self.listen_dsn is not None:
            return None
        return (
            f"LISTEN does not work through a transaction pooler ({self.why}) and no "
            "database.listen_url (or PGSCHED_LISTEN_URL) gives a direct connection for it: "
            "runners poll, so manual requests and schedule changes are seen within "
            "runner.poll_interval instead of at once"
        )


def resolve_topology(dsn: str, pooler: str = "auto", listen_url: str | None = None) -> Topology:
    """The topology for `dsn`: as the profile says, or probed when `pooler` is `auto`."""
    if pooler == "transaction":
        pooled, why = True, "database.pooler: transaction"
    elif pooler == "none":
        pooled, why = False, "database.pooler: none"
    else:
        pooled = probe_transaction_pooler(dsn)
        why = (
            "detected: two client connections shared one server backend"
            if pooled
            else "database.pooler: auto, no transaction pooler detected"
        )
    listen = None if pooled and listen_url is None else listen_url or dsn
    topology = Topology(dsn, pooled, listen, why)
    if pooled and pooler == "auto":
        get_logger(__name__).warning(
            "transaction pooler detected: no server-side prepared statements, no session state; "
            "set database.pooler: transaction in the profile to skip the probe",
            listen=topology.listen_dsn is not None,
        )
    return topology


def probe_transaction_pooler(dsn: str, timeout: float = 10) -> bool:
    """True when `dsn` leads to a transaction (or statement) pooler.

    Two client connections open at once each have their own backend when connected directly
    or through a session pooler, for as long as they stay connected. Through a transaction
    pooler one backend serves both in turn (PgBouncer hands out the server connection used
    last), or one client's backend changes between its transactions. Either is proof; a
    pooler that happens to give each client its own backend during the probe is not detected,
    which is why the profile setting exists. Costs two connections and five queries, once.
    Unreachable: False (the real connection attempt then reports the error)."""
    backend = "SELECT pg_backend_pid()"
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": timeout}
    try:
        with (
            psycopg.connect(dsn, prepare_threshold=None, **kwargs) as a,
            psycopg.connect(dsn, prepare_threshold=None, **kwargs) as b,
        ):
            seen_a, seen_b = set(), set()
            for _ in range(2):
                seen_a.add(_scalar(a, backend))
                seen_b.add(_scalar(b, backend))
            seen_a.add(_scalar(a, backend))
    except psycopg.Error:
        return False
    return len(seen_a) > 1 or len(seen_b) > 1 or bool(seen_a & seen_b)


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


__all__ = ["Topology", "probe_transaction_pooler", "resolve_topology"]
