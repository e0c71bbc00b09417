"""Initial schema: backends, plugins, jobs, result types, results, history.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE plugins (
            name         text PRIMARY KEY,
            version      text,
            builtin      boolean NOT NULL DEFAULT false,
            admitted_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE backends (
            id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            pointer       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            backend_name  text NOT NULL UNIQUE,
            plugin        text NOT NULL,
            enabled       boolean NOT NULL DEFAULT true
        );

        CREATE TABLE jobs (
            id               uuid PRIMARY KEY,
            pointer          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            target_simulator text NOT NULL,
            qasm             text NOT NULL,
            status           text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'running', 'finished', 'failed', 'canceled')),
            metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
            error            text,
            node_id          text,
            attempts         integer NOT NULL DEFAULT 0,
            submission_date  timestamptz NOT NULL DEFAULT now(),
            start_time       timestamptz,
            finish_time      timestamptz
        );
        CREATE INDEX jobs_active ON jobs (status, pointer) WHERE status IN ('pending', 'running');

        CREATE TABLE result_types (
            job_id      uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            counts      boolean NOT NULL DEFAULT false,
            quasi_dist  boolean NOT NULL DEFAULT false,
            expval      boolean NOT NULL DEFAULT false
        );

        CREATE TABLE results (
            id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            job_id      uuid NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
            counts      jsonb,
            quasi_dist  jsonb,
            expval      jsonb
        );

        -- One row per job that reached a terminal status; no foreign key, so it
        -- outlives the job.
        CREATE TABLE history (
            id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            pointer          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            job_id           uuid NOT NULL UNIQUE,
            target_simulator text NOT NULL,
            status           text NOT NULL CHECK (status IN ('finished', 'failed', 'canceled')),
            metadata         jsonb NOT NULL,
            error            text,
            node_id          text,
            attempts         integer NOT NULL,
            submission_date  timestamptz NOT NULL,
            start_time       timestamptz,
            finish_time      timestamptz NOT NULL,
            result_types     jsonb NOT NULL,
            results          jsonb
        );

        INSERT INTO plugins (name, version, builtin) VALUES ('aer-plugin', NULL, true);
        INSERT INTO backends (backend_name, plugin) VALUES ('aer', 'aer-plugin');
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE history, results, result_types, jobs, backends, plugins")
