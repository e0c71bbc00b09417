"""API keys: format, keyed hash stored (never the key), verification, revocation, the TTL cache."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter

import pytest

from core import auth
from core.errors import Unauthenticated
from tests.auth.conftest import SECRET


class Pool:
    """Counts checkouts of the real pool: how many times verification went to Postgres."""

    def __init__(self, pool):
        self.pool, self.checkouts = pool, 0

    def connection(self):
        self.checkouts += 1
        return self.pool.connection()


@pytest.fixture
async def pool(auth_dsn):
    from core import store

    real = await store.open_pool(auth_dsn, max_size=2)
    yield Pool(real)
    await real.close()


def test_key_format_and_entropy():
    keys = [auth.new_key() for _ in range(200)]
    for key_id, key in keys:
        assert key.startswith(f"qsk_{key_id}_")
        assert len(key_id) == 12 and all(c in "0123456789abcdef" for c in key_id)
        secret = key[len(f"qsk_{key_id}_") :]
        assert len(secret) == 43  # token_urlsafe(32): 256 random bits
        assert auth.parse_key(key) == key_id
    assert len({key for _, key in keys}) == len({key_id for key_id, _ in keys}) == 200
    letters = Counter("".join(key[17:] for _, key in keys))
    entropy = -sum(n / letters.total() * math.log2(n / letters.total()) for n in letters.values())
    assert entropy > 5.9  # ~6 bits per base64url character


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "qsk_",
        "sk_abc",
        "qsk_0123456789ab",
        "qsk_0123456789ab_",
        "qsk_XYZ456789abc_" + "a" * 43,
        "Bearer qsk_0123456789ab_" + "a" * 43,
        "qsk_0123456789ab_" + "a" * 43 + " ",
        "qsk_0123456789ab_" + "a" * 500,
    ],
)
def test_malformed_keys_are_refused_before_any_lookup(bad):
    with pytest.raises(Unauthenticated, match="malformed API key"):
        auth.parse_key(bad)


def test_hash_is_hmac_sha256_under_the_server_secret():
    _, key = auth.new_key()
    expected = hmac.new(SECRET.encode(), key.encode(), hashlib.sha256).digest()
    assert auth.hash_key(SECRET, key) == expected
    assert auth.hash_key(SECRET + "x", key) != expected


@pytest.mark.parametrize(
    ("authorization", "api_key", "key"),
    [
        (None, None, None),
        ("", "", None),
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", None, "abc"),
        (None, "abc", "abc"),
        ("Bearer abc", "other", "abc"),
    ],
)
def test_key_from_headers(authorization, api_key, key):
    assert auth.key_from_headers(authorization, api_key) == key


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwdw==", "Bearer", "Token abc"])
def test_another_authorization_scheme_is_refused_with_a_message(authorization):
    with pytest.raises(Unauthenticated, match="Bearer <key>"):
        auth.key_from_headers(authorization, None)


def test_only_the_hash_is_stored(db):
    key_id, key = auth.create_key_sync(db, secret=SECRET, owner="hash-check", role="user")
    try:
        row = db.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
        assert row["owner"] == "hash-check" and row["role"] == "user"
        assert bytes(row["hash"]) == auth.hash_key(SECRET, key)
        assert row["created_at"] is not None and row["revoked_at"] is None
        everything = repr(db.execute("SELECT * FROM api_keys").fetchall())
        secret_part = key[17:][-30:]
        assert key not in everything and secret_part not in everything
    finally:
        db.execute("DELETE FROM api_keys WHERE key_id = %s", (key_id,))


@pytest.mark.parametrize(
    ("owner", "role"), [("", "user"), ("-x", "user"), ("a b", "user"), ("x" * 65, "user"), ("bob", "root")]
)
def test_bad_owner_or_role_is_refused(db, owner, role):
    with pytest.raises(ValueError):
        auth.create_key_sync(db, secret=SECRET, owner=owner, role=role)


async def test_verify_create_and_revoke(db, pool, make_key):
    from core import store

    verifier = auth.KeyVerifier(SECRET, ttl_s=0)
    key = make_key("alice")
    caller = await verifier.verify(pool, key)
    assert caller.name == make_key.owner(key) and caller.role == "user" and not caller.is_admin
    assert caller.owner_filter == caller.name and caller.key_id == auth.parse_key(key)
    admin = await verifier.verify(pool, make_key("root", role="admin"))
    assert admin.is_admin and admin.owner_filter is None

    row = db.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (caller.key_id,)).fetchone()
    assert row["last_used_at"] is not None

    revoked = store.revoke_api_key_sync(db, key_id=caller.key_id)
    assert revoked["newly"] and revoked["owner"] == caller.name
    with pytest.raises(Unauthenticated, match=f"API key {caller.key_id} was revoked at"):
        await verifier.verify(pool, key)
    again = store.revoke_api_key_sync(db, key_id=caller.key_id)
    assert not again["newly"] and again["revoked_at"] == revoked["revoked_at"]
    assert store.revoke_api_key_sync(db, key_id="000000000000") is None


async def test_wrong_unknown_and_missing_keys(pool, make_key):
    verifier = auth.KeyVerifier(SECRET, ttl_s=0)
    key = make_key("bob")
    key_id = auth.parse_key(key)
    wrong_secret = f"qsk_{key_id}_" + "A" * 43
    unknown_id = "qsk_ffffffffffff_" + key[17:]
    for bad in (wrong_secret, unknown_id):
        with pytest.raises(Unauthenticated, match="^invalid API key$"):
            await verifier.verify(pool, bad)
    for missing in (None, ""):
        with pytest.raises(Unauthenticated, match="missing API key"):
            await verifier.verify(pool, missing)
    other_server = auth.KeyVerifier("another-secret-" + "o" * 40, ttl_s=0)
    with pytest.raises(Unauthenticated, match="^invalid API key$"):
        await other_server.verify(pool, key)


async def test_a_revoked_key_with_the_wrong_secret_does_not_learn_it_was_revoked(db, pool, make_key):
    from core import store

    key = make_key("carol")
    key_id = auth.parse_key(key)
    store.revoke_api_key_sync(db, key_id=key_id)
    with pytest.raises(Unauthenticated, match="^invalid API key$"):
        await auth.KeyVerifier(SECRET, ttl_s=0).verify(pool, f"qsk_{key_id}_" + "B" * 43)


async def test_the_cache_holds_a_verified_key_for_its_ttl_only(db, pool, make_key):
    from core import store

    now = [1000.0]
    verifier = auth.KeyVerifier(SECRET, ttl_s=5, clock=lambda: now[0])
    key = make_key("dave")
    await verifier.verify(pool, key)
    await verifier.verify(pool, key)
    assert pool.checkouts == 1  # the second came from the cache

    # a wrong secret for a cached key id still goes to Postgres, and is refused
    with pytest.raises(Unauthenticated):
        await verifier.verify(pool, f"qsk_{auth.parse_key(key)}_" + "C" * 43)
    assert pool.checkouts == 2

    store.revoke_api_key_sync(db, key_id=auth.parse_key(key))
    now[0] += 4.9  # within the TTL: still accepted
    assert (await verifier.verify(pool, key)).name == make_key.owner(key)
    now[0] += 0.2  # past it: refused
    with pytest.raises(Unauthenticated, match="was revoked"):
        await verifier.verify(pool, key)


async def test_the_cache_stays_bounded(pool, make_key):
    verifier = auth.KeyVerifier(SECRET, ttl_s=60, max_entries=2)
    keys = [make_key("eve") for _ in range(5)]
    for key in keys:
        await verifier.verify(pool, key)
    assert len(verifier._cache) <= 2
