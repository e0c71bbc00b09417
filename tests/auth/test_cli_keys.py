"""`qserver keys create/list/revoke` as an admin runs it (real subprocesses) against a scratch database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import auth, store
from tests.auth.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(auth_dsn, db):
    """``keys("create", "alice", secret=...)`` runs ``qserver keys ...``; its keys are deleted after."""
    before = {r["key_id"] for r in store.list_api_keys_sync(db)}

    def run(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QSERVER_AUTH")}
        env["QSERVER_DATABASE_URL"] = auth_dsn
        if secret is not None:
            env["QSERVER_AUTH_SECRET"] = secret
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", "keys", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    yield run
    db.execute("DELETE FROM api_keys WHERE NOT key_id = ANY(%s)", (list(before),))


async def test_create_list_revoke(keys, db, auth_dsn):
    created = keys("create", "cli-alice", "--role", "admin")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = auth.parse_key(key)  # stdout is the key alone
    assert "only time the key is shown" in created.stderr and key_id in created.stderr
    row = db.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
    assert row["owner"] == "cli-alice" and row["role"] == "admin"
    assert bytes(row["hash"]) == auth.hash_key(SECRET, key)

    user = keys("create", "cli-bob")
    assert user.returncode == 0, user.stderr
    bob_id = auth.parse_key(user.stdout.strip())
    assert db.execute("SELECT role FROM api_keys WHERE key_id = %s", (bob_id,)).fetchone()["role"] == "user"

    listed = keys("list", secret=None)  # listing needs no secret
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert lines[key_id].split()[1:3] == ["cli-alice", "admin"]
    assert lines[bob_id].split()[1:3] == ["cli-bob", "user"]
    for header in ("key id", "owner", "role", "created", "revoked", "last used"):
        assert header in listed.stdout
    assert key not in listed.stdout and key[17:] not in listed.stdout
    assert bytes(row["hash"]).hex() not in listed.stdout

    # the key works until it is revoked
    pool = await store.open_pool(auth_dsn, max_size=1)
    try:
        verifier = auth.KeyVerifier(SECRET, ttl_s=0)
        assert (await verifier.verify(pool, key)).name == "cli-alice"
        revoked = keys("revoke", key_id, secret=None)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked key {key_id} of cli-alice" in revoked.stdout
        with pytest.raises(auth.Unauthenticated, match="was revoked"):
            await verifier.verify(pool, key)
    finally:
        await pool.close()

    again = keys("revoke", key_id)
    assert again.returncode == 0 and "already revoked" in again.stdout
    relisted = keys("list").stdout
    line = next((line for line in relisted.splitlines() if line.startswith(key_id)), relisted)
    # created, revoked and last used are all set now: a date and a time each
    assert len(line.split()) == 3 + 3 * 2, line


def test_revoke_an_unknown_key(keys):
    done = keys("revoke", "000000000000")
    assert done.returncode == 1 and "no API key has id" in done.stderr


@pytest.mark.parametrize(
    ("args", "secret", "message"),
    [
        (("create", "carol"), None, "QSERVER_AUTH_SECRET is not set"),
        (("create", "carol"), "short", "QSERVER_AUTH_SECRET has 5 characters"),
        (("create", "carol", "--role", "root"), SECRET, "role 'root'"),
        (("create", "bad name"), SECRET, "user name 'bad name'"),
    ],
)
def test_create_refuses_with_a_message(keys, db, args, secret, message):
    count = len(store.list_api_keys_sync(db))
    done = keys(*args, secret=secret)
    assert done.returncode == 2, done.stdout
    assert message in " ".join(done.stderr.split())
    assert done.stdout == ""
    assert len(store.list_api_keys_sync(db)) == count
