"""The approvals projection (issue 25): one row per open approval item, written by the ledger activity in the
same transaction as the ledger entries that open, move or close it, so the inbox lists, filters, sorts and pages
with one indexed query instead of visibility scans and per-run queries. ``item`` is the PendingApproval as the
run holds it (JSON); the other columns are what the inbox filters and sorts on. Rebuilt from the open runs by
``careloom approvals projection rebuild``. Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS approval_items (
        workflow_id TEXT NOT NULL, approval_id TEXT NOT NULL, run_id TEXT NOT NULL, program TEXT NOT NULL,
        queue TEXT NOT NULL, required_role TEXT NOT NULL, role_rank INTEGER NOT NULL, priority TEXT NOT NULL,
        due TEXT NOT NULL, member_pseudonym TEXT NOT NULL, tool TEXT NOT NULL, requested_at TEXT NOT NULL,
        item TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (workflow_id, approval_id))""",
    "CREATE INDEX IF NOT EXISTS ix_approval_items_due ON approval_items (due, workflow_id, approval_id)",
    "CREATE INDEX IF NOT EXISTS ix_approval_items_queue_due ON approval_items (queue, due)",
    "CREATE INDEX IF NOT EXISTS ix_approval_items_role_due ON approval_items (role_rank, due)",
    "CREATE INDEX IF NOT EXISTS ix_approval_items_member ON approval_items (member_pseudonym)",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS approval_items")
