"""Incident events: who recorded each one (the authenticated caller: a token's name), beside
the actor the request names (the person who did it, e.g. the grid worker a dispatcher
records for). The actor is what the client says; `recorded_by` is what the service knows.
Events from before this revision have none.

Revision ID: 0003_incident_recorder
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_incident_recorder"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incident_events", sa.Column("recorded_by", sa.Text))


def downgrade() -> None:
    op.drop_column("incident_events", "recorded_by")
