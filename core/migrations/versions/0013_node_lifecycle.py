"""Nodes that drain, leave and are forgotten; a node that comes back replaces its offline row.

- ``head``: the Ray head (Ray's ``node:__internal_head__`` resource): the dispatcher and the
  runner live there, so it is never drained.
- ``node_key``: who the node is across restarts (a new Ray node id each time): the
  ``qserver-node`` label that `qserver up`, `node start --head` and `node join` give it, a hash of
  the machine, the state dir and the role (ops/nodes.py node_key). When a node with a key joins,
  the dispatcher deletes the offline rows with the same key. NULL for nodes started otherwise.
- ``draining_since``: when `qserver node drain` asked for the node to be drained (NULL: not
  draining). The dispatcher sends it no new job, moves its warm executors away, asks Ray to
  drain it, and stops it once its running jobs have ended.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE nodes
            ADD COLUMN head boolean NOT NULL DEFAULT false,
            ADD COLUMN node_key text,
            ADD COLUMN draining_since timestamptz;
        CREATE INDEX nodes_node_key ON nodes (node_key) WHERE node_key IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX nodes_node_key;
        ALTER TABLE nodes DROP COLUMN draining_since, DROP COLUMN node_key, DROP COLUMN head;
        """
    )
