"""Idempotency-Keys are the caller's own: a key is unique per caller (the token's user, '' for
none), not across the service, so one caller's key can neither replay nor reveal another's
incident.

Revision ID: 0004_incident_key_owner
Revises: 0003_incident_recorder
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_incident_key_owner"
down_revision = "0003_incident_recorder"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column("idempotency_owner", sa.Text, nullable=False, server_default=""),
    )
    op.drop_constraint("incidents_idempotency_key_key", "incidents", type_="unique")
    op.create_unique_constraint(
        "incidents_idempotency_owner_key", "incidents", ["idempotency_owner", "idempotency_key"]
    )


def downgrade() -> None:
    op.drop_constraint("incidents_idempotency_owner_key", "incidents", type_="unique")
    op.create_unique_constraint("incidents_idempotency_key_key", "incidents", ["idempotency_key"])
    op.drop_column("incidents", "idempotency_owner")
