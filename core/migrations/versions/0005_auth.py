"""Authentication and ownership: API keys, and the owner of each job and history row.

A key is stored only as HMAC-SHA256(QSERVER_AUTH_SECRET, key); ``key_id`` (the
primary key) is the public part of the key, so verifying one is a single indexed
lookup. ``owner`` is the user name a key belongs to (several keys may share it);
jobs submitted with authentication off have none. The history trigger copies the
owner, so a user keeps seeing their history after the job is deleted.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            key_id        text PRIMARY KEY,
            owner         text NOT NULL,
            role          text NOT NULL CHECK (role IN ('admin', 'user')),
            hash          bytea NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            revoked_at    timestamptz,
            last_used_at  timestamptz
        );
        CREATE INDEX api_keys_owner ON api_keys (owner);

        ALTER TABLE jobs ADD COLUMN owner text;
        -- a user's page of jobs, and the per-user cap on pending jobs
        CREATE INDEX jobs_owner ON jobs (owner, pointer) WHERE owner IS NOT NULL;
        CREATE INDEX jobs_owner_pending ON jobs (owner) WHERE status = 'pending';

        ALTER TABLE history ADD COLUMN owner text;
        CREATE INDEX history_owner ON history (owner, pointer) WHERE owner IS NOT NULL;

        -- 0002's function, copying the owner too
        CREATE OR REPLACE FUNCTION record_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO history (job_id, target_simulator, status, metadata, error, node_id,
                                 attempts, submission_date, start_time, finish_time,
                                 result_types, results, owner)
            SELECT j.id, j.target_simulator, j.status, j.metadata, j.error, j.node_id,
                   j.attempts, j.submission_date, j.start_time, coalesce(j.finish_time, now()),
                   jsonb_build_object('counts', rt.counts, 'quasi_dist', rt.quasi_dist,
                                      'expval', rt.expval),
                   (SELECT jsonb_build_object('counts', r.counts, 'quasi_dist', r.quasi_dist,
                                              'expval', r.expval)
                      FROM results r WHERE r.job_id = j.id),
                   j.owner
              FROM jobs j JOIN result_types rt ON rt.job_id = j.id
             WHERE j.id = NEW.id AND j.status IN ('finished', 'failed', 'canceled')
            ON CONFLICT (job_id) DO NOTHING;
            RETURN NULL;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION record_history() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO history (job_id, target_simulator, status, metadata, error, node_id,
                                 attempts, submission_date, start_time, finish_time,
                                 result_types, results)
            SELECT j.id, j.target_simulator, j.status, j.metadata, j.error, j.node_id,
                   j.attempts, j.submission_date, j.start_time, coalesce(j.finish_time, now()),
                   jsonb_build_object('counts', rt.counts, 'quasi_dist', rt.quasi_dist,
                                      'expval', rt.expval),
                   (SELECT jsonb_build_object('counts', r.counts, 'quasi_dist', r.quasi_dist,
                                              'expval', r.expval)
                      FROM results r WHERE r.job_id = j.id)
              FROM jobs j JOIN result_types rt ON rt.job_id = j.id
             WHERE j.id = NEW.id AND j.status IN ('finished', 'failed', 'canceled')
            ON CONFLICT (job_id) DO NOTHING;
            RETURN NULL;
        END $$;
        ALTER TABLE history DROP COLUMN owner;
        DROP INDEX jobs_owner_pending;
        ALTER TABLE jobs DROP COLUMN owner;
        DROP TABLE api_keys;
        """
    )
