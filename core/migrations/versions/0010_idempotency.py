"""Idempotent submission: the jobs submitted under a client's idempotency key.

One row per (owner, key): the job stored for the first submission that carried the key, and
a digest (SHA-256, core.idempotency.request_digest) of that request, so the same request sent
again is answered with the same job and a different one under the same key is refused.
``owner`` is the submitting user; '' with authentication off (a user name is never empty), so
the primary key needs no NULL. A key lives as long as its job: deleting the job (by its user,
by retention, or by ingest when the queue did not take its message) frees the key.

The reference to the job is checked at commit (DEFERRABLE INITIALLY DEFERRED): ingest claims
the key first and stores the job after it, in one transaction, so a repeated submission is
answered before the per-user cap on pending jobs is checked, and a concurrent one waits on
the key's row instead of storing a second job.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            owner    text NOT NULL DEFAULT '',
            key      text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
            digest   bytea NOT NULL,
            job_id   uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
            created  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (owner, key)
        );
        -- the cascade from a deleted job finds its key by job id
        CREATE INDEX idempotency_keys_job ON idempotency_keys (job_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys;")
