"""A job's move to ``finished`` notifies with its results when they are small.

0011's ``qserver_job_status`` payload ``"<id> <status> <epoch seconds> <owner>"`` gets, for a
job that became ``finished`` and whose results row is already there (the statement that
finished it wrote them: the warm executor's one-statement record_outcomes_sync, the cache's
copy), five more lines::

    <id> finished <epoch seconds> <owner>
    <the results' stored bytes, as store.get_results counts them>
    <results.id>
    <counts as JSON text, or empty for none>
    <quasi_dist as JSON text, or empty>
    <expval as JSON text, or empty>

so that a result wait (api/waiters.py) answers without reading the job again
(``store.JobChange.parse`` reads it). JSON text as ``jsonb::text`` writes it holds no newline.
The results are left out (the listener reads the job, as before) when

- the job is a sweep (metadata ``sweep``): its results are its items;
- they were not written yet: a writer that updates the job before inserting its results
  (finish_job_sync), whose AFTER ROW trigger runs before the insert;
- the whole payload would not stay under PAYLOAD_BYTES (Postgres refuses 8000 bytes or more);
  results stored in more than STORED_BYTES (compressed, TOAST) are not even cast to text.

Other notifications are 0011's, unchanged.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

PAYLOAD_BYTES = 7000  # under Postgres's NOTIFY limit (< 8000 bytes), with margin
STORED_BYTES = 16000  # jsonb's binary form can be larger than its text: a loose bound

_STORED = (
    "coalesce(pg_column_size(r.counts), 0) + coalesce(pg_column_size(r.quasi_dist), 0)"
    " + coalesce(pg_column_size(r.expval), 0)"
)

_BASE = (
    "NEW.id::text || ' ' || CASE NEW.status WHEN 'claimed' THEN 'pending' ELSE NEW.status END"
    " || ' ' || extract(epoch FROM now())::text || ' ' || coalesce(NEW.owner, '')"
)


def upgrade() -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION notify_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            payload text := {_BASE};
            carried text;
        BEGIN
            IF NEW.status = 'finished' AND NOT coalesce(NEW.metadata ? 'sweep', false) THEN
                SELECT E'\\n' || ({_STORED})::text || E'\\n' || r.id::text
                       || E'\\n' || coalesce(r.counts::text, '') || E'\\n' || coalesce(r.quasi_dist::text, '')
                       || E'\\n' || coalesce(r.expval::text, '')
                  INTO carried
                  FROM results r
                 WHERE r.job_id = NEW.id AND {_STORED} <= {STORED_BYTES};
                IF carried IS NOT NULL AND octet_length(payload) + octet_length(carried) < {PAYLOAD_BYTES} THEN
                    payload := payload || carried;
                END IF;
            END IF;
            PERFORM pg_notify('qserver_job_status', payload);
            RETURN NULL;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION notify_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qserver_job_status', {_BASE});
            RETURN NULL;
        END $$;
        """
    )
