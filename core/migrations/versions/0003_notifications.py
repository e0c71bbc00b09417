"""Notifications the dispatcher listens to: a running job canceled, a plugin admitted.

``qserver_cancel`` carries the id of a job that went from running to canceled (the
dispatcher stops its Ray work); ``qserver_plugins`` carries the name of a plugin
admitted or re-admitted (the dispatcher builds its runtime_env ahead of the first job).
Triggers, so that every code path that makes the change notifies.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_cancel', NEW.id::text);
            RETURN NULL;
        END $$;

        CREATE TRIGGER jobs_cancel_running
            AFTER UPDATE OF status ON jobs
            FOR EACH ROW
            WHEN (OLD.status = 'running' AND NEW.status = 'canceled')
            EXECUTE FUNCTION notify_cancel();

        CREATE FUNCTION notify_plugin() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_plugins', NEW.name);
            RETURN NULL;
        END $$;

        CREATE TRIGGER plugins_admitted
            AFTER INSERT OR UPDATE ON plugins
            FOR EACH ROW
            EXECUTE FUNCTION notify_plugin();
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER jobs_cancel_running ON jobs; DROP FUNCTION notify_cancel();"
        "DROP TRIGGER plugins_admitted ON plugins; DROP FUNCTION notify_plugin();"
    )
