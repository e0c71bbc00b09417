"""Executors keep a heartbeat on their job, so a job whose worker died unseen is noticed.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs ADD COLUMN heartbeat_at timestamptz;
        CREATE INDEX jobs_running_heartbeat ON jobs (heartbeat_at) WHERE status = 'running';
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX jobs_running_heartbeat; ALTER TABLE jobs DROP COLUMN heartbeat_at")
