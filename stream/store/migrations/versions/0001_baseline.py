"""Baseline: the alert store's schema as it was when migrations began.

A fresh database gets every table. A database made before Alembic (by the store's
``create_all``, at any earlier version) keeps its tables and rows and gains what it
lacks: the tables, columns and indexes added since it was made. The table definitions
are a frozen copy of ``stream/store/schema.py`` at this revision: later revisions
change the schema, this one must keep meaning what it meant.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = sa.MetaData()

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("subtype", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("severity_rank", sa.Integer, nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("meter_id", sa.String(64)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("area_id", sa.String(64)),
    # The account manager responsible (from the registry at first sight); None for
    # subjects no manager looks after. Console isolation filters on it.
    sa.Column("manager_id", sa.String(64)),
    # Condition as the pipeline reports it: open until a "closed" message arrives.
    sa.Column("status", sa.String(8), nullable=False),
    # Workflow: new -> acknowledged -> resolved (by people, in the console).
    sa.Column("state", sa.String(16), nullable=False, server_default="new"),
    sa.Column("start_ts", sa.Float, nullable=False),
    sa.Column("detected_ts", sa.Float, nullable=False),
    sa.Column("first_seen_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("messages", sa.Integer, nullable=False, server_default="1"),
    sa.Column("record", sa.Text, nullable=False),  # latest alert message, JSON
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("acknowledged_at", sa.Float),
    sa.Column("resolved_by", sa.String(64)),
    sa.Column("resolved_at", sa.Float),
    sa.Column("outcome", sa.String(32)),
    # The outcome last published to the theft model's topic (stream/notify/outcomes.py)
    # and when: an outcome that differs from the one published is waiting to go out.
    sa.Column("outcome_published", sa.String(32)),
    sa.Column("outcome_published_at", sa.Float),
    sa.Index("ix_alerts_manager_state", "manager_id", "state"),
    sa.Index("ix_alerts_outcome", "outcome"),
    sa.Index("ix_alerts_customer", "customer_id"),
    sa.Index("ix_alerts_detected", "detected_ts"),
)

# One row per distinct alert message (id, status, detected_at): redelivery is a no-op.
alert_messages = sa.Table(
    "alert_messages", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(8), primary_key=True),
    sa.Column("detected_at", sa.String(40), primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("manager_id", sa.String(64)),  # for role=manager: whose customers
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Console sessions carry the generation they were issued in; bumping it (logout,
    # password change, disabling) ends every session of the account at once.
    sa.Column("session_gen", sa.Integer, nullable=False, server_default="0"),
)

notes = sa.Table(
    "notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(40)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Whose the note is, for console isolation: the alert's manager for a note on an
    # alert; for a customer note, the writer's manager id (or the customer's only
    # manager when someone who sees everything wrote it). None: only they see it.
    sa.Column("manager_id", sa.String(64)),
    sa.Index("ix_notes_alert", "alert_id"),
    sa.Index("ix_notes_customer", "customer_id"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(80)),
    sa.Column("detail", sa.Text),
)

# The notifier's outbox. `key` makes a delivery unique (alert id + what + channel +
# recipient), so re-running the routing of a redelivered alert enqueues nothing new.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    sa.Column("alert_id", sa.String(40)),
    sa.Column("kind", sa.String(16), nullable=False),  # alert|digest|escalation|...
    sa.Column("channel", sa.String(16), nullable=False),  # email|webhook|alertmanager
    sa.Column("recipient", sa.String(64), nullable=False),  # manager id or control_room
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Column("last_error", sa.Text),
    # A sender claims a row before sending it (owner/claim id, until when), so two
    # notifier processes, or two passes of one, never send a row at the same time. A
    # claim of a process that died expires; a restarted process releases its own.
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", sa.Float),
    sa.Index("ix_deliveries_due", "state", "due_at"),
)

# -- the notifier's bookkeeping beside the outbox (stream/notify/) ------------------------

# The first notification of an alert to a recipient, and which message it carried
# ("status|detected_at"). Later messages of the alert go into that recipient's digest;
# the first message redelivered does not.
notified = sa.Table(
    "notified", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("recipient", sa.String(64), primary_key=True),
    sa.Column("message_key", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

# Alert messages waiting to go out in a digest: "update" (later messages of an alert a
# recipient was told about) or "daily" (a manager's daily digest). `digest_key` is set,
# in the same transaction that enqueues the digest's deliveries, when the item goes out.
digest_items = sa.Table(
    "digest_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recipient", sa.String(64), nullable=False),
    sa.Column("bucket", sa.String(8), nullable=False),
    sa.Column("alert_id", sa.String(40), nullable=False),
    sa.Column("message_key", sa.String(64), nullable=False),
    sa.Column("severity_rank", sa.Integer, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),
    sa.Column("due_at", sa.Float, nullable=False),
    sa.Column("digest_key", sa.String(255)),
    sa.UniqueConstraint("recipient", "bucket", "alert_id", "message_key",
                        name="uq_digest_items_message"),
    sa.Index("ix_digest_items_open", "digest_key", "due_at"),
)

# Critical alerts watched for acknowledgement: watching -> escalated | settled.
escalations = sa.Table(
    "escalations", metadata,
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("critical_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(10), nullable=False, server_default="watching"),
    sa.Column("changed_at", sa.Float),
    sa.Index("ix_escalations_state", "state", "critical_at"),
)

# Alerts posted to Prometheus Alertmanager, re-posted while active (Alertmanager
# resolves an alert nobody re-posts) and resolved once: the label set last posted.
am_alerts = sa.Table(
    "am_alerts", metadata,
    sa.Column("key", sa.String(120), primary_key=True),  # alert id | alertname
    sa.Column("alert_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # alert | escalation
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("state", sa.String(8), nullable=False, server_default="firing"),
    sa.Column("posted_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Index("ix_am_alerts_state", "state"),
)

# Columns that tables gained after they first shipped (so a database made before
# Alembic may lack them), each as it is added to an existing table: nullable, or NOT
# NULL with a server default that fills the rows already there.
LATER_COLUMNS = {
    "alerts": lambda: [sa.Column("outcome_published", sa.String(32)),
                       sa.Column("outcome_published_at", sa.Float)],
    "users": lambda: [sa.Column("session_gen", sa.Integer, nullable=False,
                                server_default="0")],
    "notes": lambda: [sa.Column("manager_id", sa.String(64))],
    "deliveries": lambda: [sa.Column("lease_owner", sa.String(128)),
                           sa.Column("lease_until", sa.Float)],
}


def upgrade() -> None:
    bind = op.get_bind()
    existed = set(sa.inspect(bind).get_table_names())
    metadata.create_all(bind, checkfirst=True)  # the missing tables, with their indexes
    for name in sorted(existed & LATER_COLUMNS.keys()):
        have = {c["name"] for c in sa.inspect(bind).get_columns(name)}
        for col in LATER_COLUMNS[name]():
            if col.name not in have:
                op.add_column(name, col)
                if (name, col.name) == ("notes", "manager_id"):
                    _backfill_note_scope()
    for table in metadata.sorted_tables:
        if table.name in existed:
            for ix in table.indexes:
                ix.create(bind, checkfirst=True)


def _backfill_note_scope() -> None:
    """Notes written before notes had a manager id: an alert's note is its alert's
    manager's; a customer note is its author's manager's (None for other roles)."""
    op.execute(notes.update().where(notes.c.alert_id.is_not(None)).values(
        manager_id=sa.select(alerts.c.manager_id).where(alerts.c.id == notes.c.alert_id)
        .scalar_subquery()))
    op.execute(notes.update().where(notes.c.alert_id.is_(None)).values(
        manager_id=sa.select(users.c.manager_id).where(users.c.username == notes.c.author)
        .scalar_subquery()))


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
