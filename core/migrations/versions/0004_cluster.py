"""The cluster's nodes as the dispatcher sees them, what backends need, what jobs wait for.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per Ray node ever seen; the dispatcher (the only Ray driver) keeps it current.
        CREATE TABLE nodes (
            node_id       text PRIMARY KEY,
            address       text NOT NULL,
            hostname      text,
            tags          text[] NOT NULL DEFAULT '{}',
            alive         boolean NOT NULL,
            cpus_total    double precision NOT NULL DEFAULT 0,
            cpus_free     double precision NOT NULL DEFAULT 0,
            gpus_total    double precision NOT NULL DEFAULT 0,
            gpus_free     double precision NOT NULL DEFAULT 0,
            memory_total  bigint NOT NULL DEFAULT 0,
            memory_free   bigint NOT NULL DEFAULT 0,
            jobs_running  integer NOT NULL DEFAULT 0,
            versions      jsonb NOT NULL DEFAULT '{}'::jsonb,
            first_seen    timestamptz NOT NULL DEFAULT now(),
            last_seen     timestamptz NOT NULL DEFAULT now()
        );

        ALTER TABLE backends ADD COLUMN needs_gpu boolean NOT NULL DEFAULT false;
        INSERT INTO backends (backend_name, plugin, needs_gpu) VALUES ('aer_gpu', 'aer-plugin', true);

        -- Why a pending job is not running yet (a node with its tag or GPU is offline).
        ALTER TABLE jobs ADD COLUMN waiting_for text;
        -- The memory the job asked Ray for, in bytes (from its active qubits and method).
        ALTER TABLE jobs ADD COLUMN memory_bytes bigint;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs DROP COLUMN memory_bytes, DROP COLUMN waiting_for;
        DELETE FROM backends WHERE backend_name = 'aer_gpu';
        ALTER TABLE backends DROP COLUMN needs_gpu;
        DROP TABLE nodes;
        """
    )
