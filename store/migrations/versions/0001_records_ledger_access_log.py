"""The care records store, the decision ledger, the access log and the watermarks.

On SQLite every statement is IF NOT EXISTS: a records file made before migrations existed is brought under
them unchanged. Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE = (
    """CREATE TABLE IF NOT EXISTS resources (
        resource_type TEXT NOT NULL, id TEXT NOT NULL, member_id TEXT, date_start TEXT, date_end TEXT,
        idempotency_key TEXT UNIQUE, content TEXT NOT NULL, content_sha256 TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (resource_type, id))""",
    "CREATE INDEX IF NOT EXISTS ix_resources_member ON resources (member_id, resource_type, date_start)",
    "CREATE INDEX IF NOT EXISTS ix_resources_type_end ON resources (resource_type, date_end)",
    """CREATE TABLE IF NOT EXISTS decision_ledger (
        seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_no_update BEFORE UPDATE ON decision_ledger
       BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_no_delete BEFORE DELETE ON decision_ledger
       BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS access_log (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
        workflow_id TEXT, approval_id TEXT, outcome TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS access_log_user ON access_log (user_id, at)",
    """CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
       BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
       BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS watermarks (
        name TEXT PRIMARY KEY, value TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))""",
)

_POSTGRES = (
    """CREATE TABLE resources (
        resource_type TEXT NOT NULL, id TEXT NOT NULL, member_id TEXT, date_start TEXT, date_end TEXT,
        idempotency_key TEXT UNIQUE, content TEXT NOT NULL, content_sha256 TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (resource_type, id))""",
    "CREATE INDEX ix_resources_member ON resources (member_id, resource_type, date_start)",
    "CREATE INDEX ix_resources_type_end ON resources (resource_type, date_end)",
    """CREATE TABLE decision_ledger (
        seq BIGINT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""",
    """CREATE FUNCTION careloom_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
    """CREATE TRIGGER decision_ledger_append_only BEFORE UPDATE OR DELETE ON decision_ledger
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
    """CREATE TRIGGER decision_ledger_no_truncate BEFORE TRUNCATE ON decision_ledger
       FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()""",
    """CREATE TABLE access_log (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at TEXT NOT NULL, user_id TEXT NOT NULL,
        role TEXT NOT NULL, action TEXT NOT NULL, workflow_id TEXT, approval_id TEXT, outcome TEXT NOT NULL)""",
    "CREATE INDEX access_log_user ON access_log (user_id, at)",
    """CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
    """CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
       FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()""",
    "CREATE TABLE watermarks (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
)


def upgrade() -> None:
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger and the access log are kept for six years: careloom never drops them")
