"""A notification when a job reaches a terminal status, for clients that wait on it.

``qserver_job_done`` carries the id of a job that became finished, failed or canceled;
the api's ``GET /job/result/{id}?wait_s=`` answers as soon as it arrives instead of
the client polling. A trigger, so that every code path that ends a job notifies.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
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


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_done ON jobs; DROP FUNCTION notify_job_done()")
