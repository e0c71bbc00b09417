"""One notification per change of a job that its user can see, for live status (server-sent events).

``qserver_job_status`` replaces 0007's ``qserver_job_done``: it carries
``"<id> <status> <epoch seconds> <owner>"`` (the status users see, ``claimed`` read as
``pending``; the transaction's time; the owner, empty with authentication off) when a job

- starts running (with its node), is handed back (running to pending),
- ends: finished, failed or canceled (the long-poll result waits wake on these),
- goes back to pending (requeued, parked for a node), or its parked ``waiting_for`` changes,
- is deleted before it ran (its user's DELETE of a pending job): status ``deleted``; the
  janitor's deletes of ended jobs do not notify.

The dispatcher's claim (pending to claimed) is not seen by users and does not notify, unless it
takes a parked job (its ``waiting_for`` changes), and a submission does not notify: a quick job
on a warm executor goes pending, claimed, finished with ONE notification (its end). A NOTIFY is
queued per row and serializes its transaction's commit with other notifying commits, so no
other write of the per-job path notifies. Listeners read the row when they care.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DROP TRIGGER jobs_done ON jobs;
        DROP FUNCTION notify_job_done();

        CREATE FUNCTION notify_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_job_status',
                NEW.id::text || ' ' || CASE NEW.status WHEN 'claimed' THEN 'pending' ELSE NEW.status END
                || ' ' || extract(epoch FROM now())::text || ' ' || coalesce(NEW.owner, ''));
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_status
            AFTER UPDATE OF status, waiting_for ON jobs
            FOR EACH ROW
            WHEN ((OLD.status IS DISTINCT FROM NEW.status OR OLD.waiting_for IS DISTINCT FROM NEW.waiting_for)
                  AND NOT (OLD.status = 'pending' AND NEW.status = 'claimed'
                           AND OLD.waiting_for IS NOT DISTINCT FROM NEW.waiting_for))
            EXECUTE FUNCTION notify_job_status();

        CREATE FUNCTION notify_job_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_job_status',
                OLD.id::text || ' deleted ' || extract(epoch FROM now())::text || ' ' || coalesce(OLD.owner, ''));
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_deleted
            AFTER DELETE ON jobs
            FOR EACH ROW
            WHEN (OLD.status IN ('pending', 'claimed'))
            EXECUTE FUNCTION notify_job_deleted();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER jobs_deleted ON jobs;
        DROP FUNCTION notify_job_deleted();
        DROP TRIGGER jobs_status ON jobs;
        DROP FUNCTION notify_job_status();

        CREATE FUNCTION notify_job_done() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_job_done', NEW.id::text);
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_done
            AFTER UPDATE OF status ON jobs
            FOR EACH ROW
            WHEN (NEW.status IN ('finished', 'failed', 'canceled') AND OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION notify_job_done();
        """
    )
