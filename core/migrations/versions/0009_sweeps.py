"""Sweeps: a job's parameter bindings and its results per chunk of bindings; receipts; digests.

``jobs.bindings`` holds a sweep's parameter values as the client sent them (an NPY file of
float64, shape ``(*shape, P)``; NULL for a job that is not a sweep). ``sweep_items`` holds a
sweep's results, one row per chunk of consecutive bindings (flat C order): ``first`` is the
index of the chunk's first binding, ``count`` how many it holds, ``items`` a JSON array with one
object per binding ({"counts": ..., "quasi_dist": ..., "expval": [...]}, the result types
asked for), ``node_id`` the Ray node that computed them. The job's ``results`` row and its
history row keep no items: readers summarise a
sweep from its metadata (``metadata.sweep``: parameters and shape).

``results.receipt`` is what makes a finished job's run reproducible: the seed it ran with (its
own, or the one drawn for it), the method the simulator chose, the plugin, Qiskit, Aer and
Python versions (written by the executor with the results). ``jobs.digest`` (core/cache.py)
finds an earlier job with the same answer.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs ADD COLUMN bindings bytea;
        ALTER TABLE results ADD COLUMN receipt jsonb;
        ALTER TABLE jobs ADD COLUMN digest bytea;
        CREATE INDEX jobs_digest ON jobs (digest) WHERE digest IS NOT NULL;
        CREATE TABLE sweep_items (
            job_id  uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            first   integer NOT NULL CHECK (first >= 0),
            count   integer NOT NULL CHECK (count > 0),
            items   jsonb NOT NULL,
            node_id text,
            PRIMARY KEY (job_id, first)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE sweep_items;
        ALTER TABLE results DROP COLUMN receipt;
        ALTER TABLE jobs DROP COLUMN digest;
        ALTER TABLE jobs DROP COLUMN bindings;
        """
    )
