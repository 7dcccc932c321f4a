"""One visibility poller per deployment (issue 25): ``poller_leases`` names which worker process holds the lease
to count runs from Temporal visibility (until ``expires_at``), and ``run_counts`` keeps what it counted, which
every worker's metrics endpoint reads. A production Temporal frontend allows 10 visibility requests a second per
namespace: counting once per deployment, not once per worker process, keeps the gauges from using it up.
Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS poller_leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS run_counts (
        program TEXT NOT NULL, status TEXT NOT NULL, count INTEGER NOT NULL, counted_at TEXT NOT NULL,
        PRIMARY KEY (program, status))""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS run_counts")
    op.execute("DROP TABLE IF EXISTS poller_leases")
