"""PAS pend-notification subscriptions and their deliveries (issue 23).

``pas_subscriptions`` holds one row per FHIR Subscription (R4 topic-based backport, rest-hook) a provider system
created on careloom's PAS topic: its owner, endpoint, payload content, status and the Subscription as stored.
Only ``status`` changes (``active`` to ``off`` when deleted). ``pas_notifications`` records every delivery
attempt (outcome, HTTP status, error) and is append-only, like the access log. Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS pas_subscriptions (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint TEXT NOT NULL, topic TEXT NOT NULL,
        content TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, resource TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_pas_subscriptions_owner ON pas_subscriptions (owner, status)",
    """CREATE TABLE IF NOT EXISTS pas_notifications (
        subscription_id TEXT NOT NULL, claim_response TEXT NOT NULL, event_number INTEGER NOT NULL,
        attempt INTEGER NOT NULL, outcome TEXT NOT NULL, http_status INTEGER, error TEXT, at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_pas_notifications_subscription ON pas_notifications (subscription_id, at)",
)

_SQLITE = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS pas_notifications_no_{verb} BEFORE {verb.upper()} ON pas_notifications
       BEGIN SELECT RAISE(ABORT, 'pas_notifications is append-only'); END""" for verb in ("update", "delete"))

_POSTGRES = (
    """CREATE TRIGGER pas_notifications_append_only BEFORE UPDATE OR DELETE ON pas_notifications
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
    """CREATE TRIGGER pas_notifications_no_truncate BEFORE TRUNCATE ON pas_notifications
       FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()""",
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in (*_TABLES, *(_POSTGRES if postgres else _SQLITE)):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("notification deliveries are records of what the plan sent: careloom never drops them")
