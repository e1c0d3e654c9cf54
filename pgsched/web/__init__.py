"""pgsched's web dashboard and cluster metrics (the `web` extra: `pip install 'pgsched[web]'`).

`create_app(dsn)` is an ASGI app to mount in a host application; `serve` runs it with uvicorn
for `pgsched dashboard`.
"""

from __future__ import annotations

from typing import Any

from .app import create_app
from .security import Credentials, credentials_from_env

__all__ = ["Credentials", "create_app", "credentials_from_env", "serve"]


def serve(
    dsn: str,
    *,
    schema: str,
    host: str,
    port: int,
    lease_timeout: float,
    timezone: str = "UTC",
    connect_kwargs: dict[str, Any] | None = None,
) -> None:
    """Serve the dashboard until interrupted (credentials from the environment)."""
    import uvicorn

    app = create_app(
        dsn,
        schema=schema,
        lease_timeout=lease_timeout,
        timezone=timezone,
        connect_kwargs=connect_kwargs,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)
