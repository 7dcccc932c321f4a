"""Prior-authorization submissions as immutable, versioned records, and who submitted each (issue 20).

A request is one row per (Claim id, version): the content digest of what was stored, the stored resources
(ids scoped to the submission), when it was received and by whom. ``prior_auth_submitters`` lists everyone who
submitted it (the first and any identical resubmitter): none of them may decide it. Both tables are
append-only, like the access log. Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS prior_auth_submissions (
        claim_id TEXT NOT NULL, version INTEGER NOT NULL, member_id TEXT NOT NULL, workflow_id TEXT,
        content_sha256 TEXT NOT NULL, resources TEXT NOT NULL, received_at TEXT NOT NULL,
        submitted_at TEXT NOT NULL, submitted_by TEXT NOT NULL, PRIMARY KEY (claim_id, version))""",
    "CREATE INDEX IF NOT EXISTS ix_pa_submissions_workflow ON prior_auth_submissions (workflow_id)",
    """CREATE TABLE IF NOT EXISTS prior_auth_submitters (
        claim_id TEXT NOT NULL, version INTEGER NOT NULL, user_id TEXT NOT NULL, workflow_id TEXT,
        first_at TEXT NOT NULL, PRIMARY KEY (claim_id, version, user_id))""",
    "CREATE INDEX IF NOT EXISTS ix_pa_submitters_workflow ON prior_auth_submitters (workflow_id, user_id)",
)

_SQLITE = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}
       BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
    for table in ("prior_auth_submissions", "prior_auth_submitters") for verb in ("update", "delete"))

_POSTGRES = tuple(
    statement for table in ("prior_auth_submissions", "prior_auth_submitters") for statement in (
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
           FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
           FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()"""))


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in (*_TABLES, *(_POSTGRES if postgres else _SQLITE)):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("submitted requests are records of what the plan received: careloom never drops them")
