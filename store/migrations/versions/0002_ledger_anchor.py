"""The decision ledger's anchor table: the chain head every ANCHOR_EVERY entries, append-only, so removing the
newest entries is detected. Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE = (
    """CREATE TABLE IF NOT EXISTS decision_ledger_anchor (
        seq INTEGER PRIMARY KEY, entry_hash TEXT NOT NULL, anchored_at TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_anchor_no_update BEFORE UPDATE ON decision_ledger_anchor
       BEGIN SELECT RAISE(ABORT, 'decision_ledger_anchor is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_anchor_no_delete BEFORE DELETE ON decision_ledger_anchor
       BEGIN SELECT RAISE(ABORT, 'decision_ledger_anchor is append-only'); END""",
)

_POSTGRES = (
    """CREATE TABLE decision_ledger_anchor (
        seq BIGINT PRIMARY KEY, entry_hash TEXT NOT NULL, anchored_at TEXT NOT NULL)""",
    """CREATE TRIGGER decision_ledger_anchor_append_only BEFORE UPDATE OR DELETE ON decision_ledger_anchor
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
    """CREATE TRIGGER decision_ledger_anchor_no_truncate BEFORE TRUNCATE ON decision_ledger_anchor
       FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()""",
)


def upgrade() -> None:
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger's anchors are kept with the ledger: careloom never drops them")
