"""Listing that scales (GET /jobs and /history filtered, both orders) and backend capabilities.

Indexes for core/store/listing.py's filters, each walked in ``pointer`` order either way (keyset
paging): the backend of a job or history row, a history row's status, the rare terminal statuses
of a job (pending, claimed and running ones have ``jobs_active``, finished ones are most rows:
the pointer index with a filter finds them at once), and BRIN on ``submission_date`` for
``since`` (rows are appended in submission order, so a block range summary is tight and costs
next to nothing per write). ``jobs_owner`` and ``history_owner`` (0005) serve the owner filter.

What they add per job: one btree entry per write of the row for ``jobs_backend`` (a job's row
is written about four times: inserted, claimed, started, ended), one for the status index only
when a job fails or is canceled, and two btree entries when its history row is written.

``backends.capabilities``: what a third-party plugin declares for a backend in its
``<package>/capabilities.json`` (methods, max_qubits, result_types), read at admission; null
when it declares nothing. The built-in backends' are computed (core/capabilities.py).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX jobs_backend ON jobs (target_simulator, pointer);
        CREATE INDEX jobs_ended_badly ON jobs (status, pointer) WHERE status IN ('failed', 'canceled');
        CREATE INDEX jobs_submitted ON jobs USING brin (submission_date);
        CREATE INDEX history_status ON history (status, pointer);
        CREATE INDEX history_backend ON history (target_simulator, pointer);
        CREATE INDEX history_submitted ON history USING brin (submission_date);

        ALTER TABLE backends ADD COLUMN capabilities jsonb;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE backends DROP COLUMN capabilities;
        DROP INDEX history_submitted, history_backend, history_status;
        DROP INDEX jobs_submitted, jobs_ended_badly, jobs_backend;
        """
    )
