"""The web page's login: a signed session cookie and the CSRF token bound to it.

Logging in with an API key (``POST /ui/login``) verifies the key once and sets the cookie
``qserver_session``: the key's id and a random CSRF token, signed with a timestamp by
itsdangerous (``URLSafeTimedSerializer``: HMAC-SHA256 keyed from QSERVER_AUTH_SECRET with a salt
of its own). The key itself is never stored in the browser. Each request with the cookie looks the
key id up in ``api_keys`` (``KeyVerifier.verify_key_id``, cached for QSERVER_AUTH_CACHE_TTL_S), so
revoking the key ends the session; the signature's age ends it after QSERVER_UI_SESSION_S.

The cookie is HttpOnly, SameSite=Lax, Path=/ (the events streams under /api/v1 need it) and
Secure when the page is served over TLS (request scheme https, or ``X-Forwarded-Proto: https``
from nginx). A request that changes something and authenticates with the cookie must carry the
session's CSRF token: the form field ``csrf`` (the page's buttons) or the header
``X-CSRF-Token`` (REST). Requests with an API key header need no token (a browser never adds it
on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from core.auth import Caller, KeyVerifier
from core.errors import Forbidden, Unauthenticated
from core.settings import Settings

COOKIE = "qserver_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_PATH = "/ui/login"


@dataclass(frozen=True)
class Session:
    """A login: the id of the API key it was opened with, and its CSRF token."""

    key_id: str
    csrf: str


class Sessions:
    """Issues and reads session cookies (one per app; None while authentication is off)."""

    def __init__(self, secret: str, *, max_age_s: int):
        self._serializer = URLSafeTimedSerializer(
            secret, salt="qserver.ui.session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.max_age_s = max_age_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Sessions:
        """Sessions keyed by QSERVER_AUTH_SECRET, lasting QSERVER_UI_SESSION_S."""
        assert settings.auth_secret is not None
        return cls(settings.auth_secret, max_age_s=settings.ui_session_s)

    def issue(self, key_id: str) -> str:
        """A fresh cookie value for a login with the key ``key_id`` (a new CSRF token)."""
        return self._serializer.dumps({"k": key_id, "c": secrets.token_urlsafe(32)})

    def read(self, value: str) -> Session:
        """The session a cookie value holds.

        Raises:
            Unauthenticated: the signature is wrong, the value malformed, or the session older
                than ``max_age_s``.
        """
        try:
            data = self._serializer.loads(value, max_age=self.max_age_s)
        except SignatureExpired:
            raise Unauthenticated(f"the web session expired: log in again at {LOGIN_PATH}") from None
        except BadSignature:
            raise Unauthenticated(f"the web session cookie is not valid: log in again at {LOGIN_PATH}") from None
        if not (isinstance(data, dict) and isinstance(data.get("k"), str) and isinstance(data.get("c"), str)):
            raise Unauthenticated(f"the web session cookie is not valid: log in again at {LOGIN_PATH}")
        return Session(key_id=data["k"], csrf=data["c"])


def check_csrf(session: Session, sent: str | None) -> None:
    """Raises Forbidden unless ``sent`` is the session's CSRF token (constant-time compare)."""
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden(
            f"no valid CSRF token: a change made with the web session must carry the page's token "
            f"(form field '{CSRF_FIELD}' or header {CSRF_HEADER}); reload the page and try again"
        )


async def session_caller(request: Request, *, sent_csrf: str | None) -> tuple[Caller, Session]:
    """The caller and session of the request's session cookie; for a method other than GET,
    HEAD and OPTIONS, only with the session's CSRF token in ``sent_csrf``.

    Raises:
        Unauthenticated: no cookie, an invalid or expired one, or its key revoked (HTTP 401).
        Forbidden: a change without the session's CSRF token (HTTP 403).
    """
    sessions: Sessions = request.app.state.sessions
    verifier: KeyVerifier = request.app.state.keys
    value = request.cookies.get(COOKIE)
    if not value:
        raise Unauthenticated(f"not logged in: log in at {LOGIN_PATH}")
    session = sessions.read(value)
    caller = await verifier.verify_key_id(request.app.state.pool, session.key_id)
    if request.method not in SAFE_METHODS:
        check_csrf(session, sent_csrf)
    return caller, session


def served_over_tls(request: Request) -> bool:
    """Whether the browser reached us over TLS: the scheme (uvicorn applies nginx's
    X-Forwarded-Proto from loopback) or the header itself (any other ASGI server)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(request: Request, response: Response, value: str, *, max_age_s: int) -> None:
    """Set the session cookie on ``response``: HttpOnly, SameSite=Lax, Path=/, Secure over TLS."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        secure=served_over_tls(request),
        samesite="lax",
    )


def clear_cookie(request: Request, response: Response) -> None:
    """Remove the session cookie (same attributes as when it was set)."""
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=served_over_tls(request), samesite="lax")
