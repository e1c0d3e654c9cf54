"""Who may act on the dashboard, and refusing cross-site requests.

Read-only unless credentials are configured. With them, every page asks for HTTP basic auth
and every POST must come from the dashboard's own pages: a browser's `Sec-Fetch-Site` (or, for
older browsers, `Origin`) must say same-origin, and the form must carry the CSRF token the
page was rendered with (an HMAC of the user under a per-app secret), so neither a forged form
on another site nor a replayed request from another user gets through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from starlette.requests import Request

USER_ENV = "PGSCHED_DASHBOARD_USER"
PASSWORD_ENV = "PGSCHED_DASHBOARD_PASSWORD"
SECRET_ENV = "PGSCHED_DASHBOARD_SECRET"


@dataclass(frozen=True)
class Credentials:
    """The one operator account; its user name is recorded with every action."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=***)"

    def check(self, user: str, password: str) -> bool:
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


def credentials_from_env(environ: dict[str, str] | None = None) -> Credentials | None:
    """Credentials from PGSCHED_DASHBOARD_USER / PGSCHED_DASHBOARD_PASSWORD; None (read-only)
    unless both are set and non-empty."""
    env = os.environ if environ is None else environ
    user, password = env.get(USER_ENV, ""), env.get(PASSWORD_ENV, "")
    return Credentials(user, password) if user and password else None


def basic_auth_user(request: Request, credentials: Credentials) -> str | None:
    """The authenticated user name, or None when the header is absent or wrong."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user if sep and credentials.check(user, password) else None


def cross_site_reason(request: Request) -> str | None:
    """Why a state-changing request is not from this dashboard's own pages (None: it is).

    `Sec-Fetch-Site` is set by the browser and cannot be forged by a page; "same-site" is
    refused too (another port of this host is another application). Without it, an `Origin`
    that is not ours is refused. Clients that send neither (curl, scripts) still need the
    CSRF token, which only a rendered page carries."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        return f"cross-site request refused (Origin {origin} is not {own})"
    return None


class CsrfTokens:
    """Tokens bound to a user under a secret (PGSCHED_DASHBOARD_SECRET, so that several
    dashboard processes behind one load balancer agree; else random per process)."""

    def __init__(self, secret: bytes | None = None) -> None:
        env = os.environ.get(SECRET_ENV)
        self._secret = secret or (env.encode() if env else secrets.token_bytes(32))

    def token(self, user: str) -> str:
        return hmac.new(self._secret, user.encode(), hashlib.sha256).hexdigest()

    def valid(self, user: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.token(user), token)
