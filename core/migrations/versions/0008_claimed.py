"""A claimed job is not a running one: the internal status ``claimed`` and ``claimed_at``.

The dispatcher's claim moves a job from ``pending`` to ``claimed`` (the guard against running
it twice, as before); its worker moves it to ``running``, with ``start_time`` and ``node_id``,
only when the simulation starts (core.domain.TRANSITIONS). Readers show ``claimed`` as
``pending`` (core/store/reads.py): the contract's five statuses are what users see.
``claimed_at`` dates the claim, for the reaper (a claimed job has no heartbeat yet).

Also: a cancel of a claimed job notifies the dispatcher too (its Ray task may be queued); the
per-user cap counts claimed jobs as the pending ones they are to their owner; the partial
indexes of active jobs cover ``claimed``. Downgrade turns claimed jobs back into running ones.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
        ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
            CHECK (status IN ('pending', 'claimed', 'running', 'finished', 'failed', 'canceled'));
        ALTER TABLE jobs ADD COLUMN claimed_at timestamptz;

        DROP INDEX jobs_active;
        CREATE INDEX jobs_active ON jobs (status, pointer) WHERE status IN ('pending', 'claimed', 'running');
        DROP INDEX jobs_owner_pending;
        CREATE INDEX jobs_owner_pending ON jobs (owner) WHERE status IN ('pending', 'claimed');

        DROP TRIGGER jobs_cancel_running ON jobs;
        CREATE TRIGGER jobs_cancel_running
            AFTER UPDATE OF status ON jobs
            FOR EACH ROW
            WHEN (OLD.status IN ('claimed', 'running') AND NEW.status = 'canceled')
            EXECUTE FUNCTION notify_cancel();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER jobs_cancel_running ON jobs;
        CREATE TRIGGER jobs_cancel_running
            AFTER UPDATE OF status ON jobs
            FOR EACH ROW
            WHEN (OLD.status = 'running' AND NEW.status = 'canceled')
            EXECUTE FUNCTION notify_cancel();

        DROP INDEX jobs_owner_pending;
        CREATE INDEX jobs_owner_pending ON jobs (owner) WHERE status = 'pending';
        DROP INDEX jobs_active;
        CREATE INDEX jobs_active ON jobs (status, pointer) WHERE status IN ('pending', 'running');

        UPDATE jobs SET status = 'running', start_time = coalesce(start_time, claimed_at)
         WHERE status = 'claimed';
        ALTER TABLE jobs DROP COLUMN claimed_at;
        ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
        ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
            CHECK (status IN ('pending', 'running', 'finished', 'failed', 'canceled'));
        """
    )
