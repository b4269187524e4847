"""Workflow actions safe to resend: a grid worker's phone sends `start` or `report` again after
a dropped connection, with the Idempotency-Key it chose when the action was queued. The key
(per caller, like a report's), and a digest of what was asked, sit on the first event the
action recorded: a resend finds it there and answers without applying the action twice.

Revision ID: 0005_incident_action_keys
Revises: 0004_incident_key_owner
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_incident_action_keys"
down_revision = "0004_incident_key_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incident_events", sa.Column("idempotency_owner", sa.Text))
    op.add_column("incident_events", sa.Column("idempotency_key", sa.Text))
    op.add_column("incident_events", sa.Column("request_hash", sa.Text))
    # Events without a key (NULL) never conflict: NULLs are distinct in a unique constraint.
    op.create_unique_constraint(
        "incident_events_idempotency_owner_key",
        "incident_events",
        ["idempotency_owner", "idempotency_key"],
    )


def downgrade() -> None:
    op.drop_constraint("incident_events_idempotency_owner_key", "incident_events", type_="unique")
    op.drop_column("incident_events", "request_hash")
    op.drop_column("incident_events", "idempotency_key")
    op.drop_column("incident_events", "idempotency_owner")
