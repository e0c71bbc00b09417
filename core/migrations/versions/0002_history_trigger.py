"""History rows written by the database: one per job that reaches a terminal status.

A deferred constraint trigger runs at commit, so it sees the results written in the
same transaction as the status change, whichever code path made the change.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION record_history() RETURNS trigger LANGUAGE plpgsql AS $$
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

        CREATE CONSTRAINT TRIGGER jobs_history
            AFTER UPDATE OF status ON jobs
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW
            WHEN (NEW.status IN ('finished', 'failed', 'canceled') AND OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION record_history();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_history ON jobs; DROP FUNCTION record_history()")
