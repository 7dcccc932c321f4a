"""Inbox sessions and pending OpenID Connect sign-ins in the care records database, so every API host of a
deployment shares them (they were a SQLite file in each API host's state folder). Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, role TEXT NOT NULL, display TEXT, csrf TEXT NOT NULL,
        created_at TEXT NOT NULL, seen_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oidc_pending (
        state TEXT PRIMARY KEY, verifier TEXT NOT NULL, nonce TEXT NOT NULL, next TEXT NOT NULL,
        created_at TEXT NOT NULL, browser TEXT)""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE oidc_pending")
    op.execute("DROP TABLE sessions")
