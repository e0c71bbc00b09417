"""API keys and the authentication mode, shared by ingest, the api and ``qserver keys``.

A key reads ``qsk_<key id>_<secret>``: 12 hex digits of key id (the row's primary key,
so verifying is one indexed lookup) and ``secrets.token_urlsafe(32)`` (256 bits).
Postgres holds only HMAC-SHA256(QSERVER_AUTH_SECRET, key), compared with
``hmac.compare_digest``: a fast keyed hash, not bcrypt, because the key already has
full entropy and the api's latency budget is milliseconds. ``auth_mode`` is the one
decision whether authentication is on; ``KeyVerifier`` turns a key into a ``Caller``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from core import store
from core.errors import Forbidden, Unauthenticated, UnsafeSettings
from core.settings import Settings

KEY_PREFIX = "qsk_"
ROLES = ("admin", "user")
MIN_SECRET_CHARS = 32
_KEY = re.compile(r"qsk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
HOW_TO_SEND = (
    "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (an HTTP header, or gRPC "
    "metadata 'authorization' / 'x-api-key'); an admin makes one with `qserver keys create NAME`"
)


# --- who is calling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a user name and role from their key, or anyone (authentication off)."""

    name: str | None
    role: str
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """Admins (and everyone, with authentication off) see and change every job."""
        return self.role == "admin"

    @property
    def owner_filter(self) -> str | None:
        """The owner whose rows this caller may see; None for all (an admin)."""
        return None if self.is_admin else self.name

    def require_admin(self, what: str) -> None:
        """Raises Forbidden unless the caller is an admin."""
        if not self.is_admin:
            raise Forbidden(f"{what} is for admins only; the key of {self.name} has role {self.role}")


ANONYMOUS = Caller(name=None, role="admin")
"""The caller of every request when authentication is off: sees everything, owns nothing."""


# --- keys: pure functions ---------------------------------------------------------------------------


def new_key() -> tuple[str, str]:
    """A fresh (key id, key): ``qsk_<12 hex digits>_<token_urlsafe(32)>``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_key(key: str) -> str:
    """The key id of a well-formed key.

    Raises:
        Unauthenticated: it does not look like a QServer key.
    """
    match = _KEY.fullmatch(key)
    if match is None:
        raise Unauthenticated("malformed API key: QServer keys look like qsk_<key id>_<secret>")
    return match.group(1)


def hash_key(secret: str, key: str) -> bytes:
    """HMAC-SHA256 of ``key`` under the server secret: what Postgres stores (32 bytes)."""
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).digest()


def key_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (first) or ``X-API-Key: <key>``; None if absent.

    Raises:
        Unauthenticated: an Authorization header of another scheme (Basic, ...).
    """
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthenticated(f"the Authorization header must read 'Bearer <key>'; {HOW_TO_SEND}")
        return credentials.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    return None


def check_owner(name: str) -> str:
    """A user name: 1-64 letters, digits, '.', '_', '@', '-', starting with a letter or digit.

    Raises:
        ValueError: naming the rule.
    """
    if not _OWNER.fullmatch(name):
        raise ValueError(
            f"user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    """``admin`` or ``user``.

    Raises:
        ValueError: any other role.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role


def check_secret(secret: str | None) -> str:
    """The server secret, if long enough to key the HMAC.

    Raises:
        UnsafeSettings: missing or shorter than MIN_SECRET_CHARS.
    """
    if not secret or len(secret) < MIN_SECRET_CHARS:
        got = "is not set" if not secret else f"has {len(secret)} characters"
        raise UnsafeSettings(
            f"QSERVER_AUTH_SECRET {got}: authentication needs a server secret of at least "
            f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`), the same for ingest, "
            "the api and `qserver keys`"
        )
    return secret


# --- the authentication mode --------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; False for wildcards (0.0.0.0, ::) and any name."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthMode:
    """Whether authentication is on, and the warning to log loudly at start when it is off."""

    on: bool
    reason: str
    warning: str | None = None


def decide_auth(*, auth: str | None, trusted_lan: bool, binds: Mapping[str, str], secret: str | None) -> AuthMode:
    """Decide whether authentication is on (pure: no I/O).

    ``auth`` is ``"on"``, ``"off"`` or None (default); ``binds`` maps each service
    (nginx, ingest, api) to the address it listens on. Default: off only when every
    bind is loopback. Off on a non-loopback bind only with ``trusted_lan``.

    Raises:
        UnsafeSettings: off on a non-loopback bind without ``trusted_lan``; on without a
            usable ``secret``.
    """
    exposed = {name: host for name, host in binds.items() if not is_loopback(host)}
    shown = ", ".join(f"{name} on {host}" for name, host in exposed.items())
    if auth is None:
        on = bool(exposed)
        reason = f"default: {shown} (not loopback)" if on else "default: every service binds to loopback"
    elif auth == "on":
        on, reason = True, "QSERVER_AUTH=on"
    elif auth == "off":
        on = False
        if exposed and not trusted_lan:
            raise UnsafeSettings(
                f"QSERVER_AUTH=off while {shown} (not loopback): anyone on that network could "
                "submit and read every job. Turn authentication on (unset QSERVER_AUTH, set "
                "QSERVER_AUTH_SECRET, make keys with `qserver keys create`), bind to 127.0.0.1, or "
                "declare the network trusted with QSERVER_TRUSTED_LAN=true"
            )
        reason = "QSERVER_AUTH=off, " + (
            f"QSERVER_TRUSTED_LAN=true ({shown})" if exposed else "every service binds to loopback"
        )
    else:
        raise UnsafeSettings(f"QSERVER_AUTH={auth!r}: must be on or off (or unset)")
    if on:
        check_secret(secret)
        return AuthMode(on=True, reason=reason)
    where = ", ".join(f"{name} on {host}" for name, host in binds.items())
    return AuthMode(
        on=False,
        reason=reason,
        warning=(
            f"authentication is OFF ({reason}): anyone who can reach {where} can submit and read "
            "every job; the upstream client (no keys) works only this way"
        ),
    )


def auth_mode(settings: Settings) -> AuthMode:
    """``decide_auth`` over the settings' binds: nginx_bind, ingest_host, api_host."""
    return decide_auth(
        auth=settings.auth,
        trusted_lan=settings.trusted_lan,
        binds={"nginx": settings.nginx_bind, "ingest": settings.ingest_host, "api": settings.api_host},
        secret=settings.auth_secret,
    )


# --- keys in Postgres ----------------------------------------------------------------------------------


def create_key_sync(conn: psycopg.Connection, *, secret: str, owner: str, role: str) -> tuple[str, str]:
    """Make a key for ``owner`` with ``role``, store its hash; returns (key id, key).

    The key itself is returned once and stored nowhere.

    Raises:
        ValueError: a bad user name or role.
        UnsafeSettings: no usable server secret.
    """
    check_owner(owner)
    check_role(role)
    check_secret(secret)
    for _ in range(5):  # 48-bit key ids: a clash is all but impossible, but cheap to survive
        key_id, key = new_key()
        if store.insert_api_key_sync(conn, key_id=key_id, owner=owner, role=role, key_hash=hash_key(secret, key)):
            return key_id, key
    raise RuntimeError("could not find a free key id")  # pragma: no cover


@dataclass
class _Verified:
    digest: bytes
    caller: Caller
    until: float


class KeyVerifier:
    """Turns the key a request carries into its Caller: one indexed lookup, or a cache hit.

    Verified keys stay cached for ``ttl_s`` seconds in this process (0: no cache), so a
    revoked key is refused within ``ttl_s``. ``last_used_at`` is written at most once a
    minute per key.
    """

    def __init__(
        self,
        secret: str,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ):
        self._secret = check_secret(secret)
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._cache: dict[str, _Verified] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyVerifier | None:
        """A verifier when authentication is on, None when it is off.

        Raises:
            UnsafeSettings: as ``auth_mode``.
        """
        if not auth_mode(settings).on:
            return None
        assert settings.auth_secret is not None
        return cls(settings.auth_secret, ttl_s=settings.auth_cache_ttl_s)

    async def verify(self, pool: AsyncConnectionPool, key: str | None) -> Caller:
        """The caller whose key this is.

        Raises:
            Unauthenticated: no key, a malformed, unknown, wrong or revoked one.
        """
        if not key:
            raise Unauthenticated(f"missing API key: {HOW_TO_SEND}")
        key_id = parse_key(key)
        digest = hash_key(self._secret, key)
        return await self._look_up(pool, key_id, digest)

    async def verify_key_id(self, pool: AsyncConnectionPool, key_id: str) -> Caller:
        """The caller whose key has id ``key_id``, without the key itself: for a web session that
        was opened with the key (api/ui/session.py signs the id). Revocation counts as for keys.

        Raises:
            Unauthenticated: no key has that id any more, or it was revoked.
        """
        return await self._look_up(pool, key_id, None)

    async def _look_up(self, pool: AsyncConnectionPool, key_id: str, digest: bytes | None) -> Caller:
        """The cached or stored caller of ``key_id``; with ``digest``, only if the key's hash is it."""
        now = self._clock()
        hit = self._cache.get(key_id)
        if hit is not None and hit.until > now and (digest is None or hmac.compare_digest(hit.digest, digest)):
            return hit.caller
        async with pool.connection() as conn:
            row = await store.get_api_key(conn, key_id=key_id)
            if row is None or (digest is not None and not hmac.compare_digest(bytes(row["hash"]), digest)):
                raise Unauthenticated("invalid API key")
            if row["revoked_at"] is not None:
                self._cache.pop(key_id, None)
                raise Unauthenticated(f"API key {key_id} was revoked at {_when(row['revoked_at'])}")
            if row["stale"]:
                await store.touch_api_key(conn, key_id=key_id)
        caller = Caller(name=row["owner"], role=row["role"], key_id=key_id)
        if self._ttl_s > 0:
            self._remember(key_id, _Verified(bytes(row["hash"]), caller, now + self._ttl_s), now)
        return caller

    def _remember(self, key_id: str, entry: _Verified, now: float) -> None:
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v.until > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        self._cache[key_id] = entry


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)
