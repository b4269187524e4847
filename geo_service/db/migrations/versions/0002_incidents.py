"""Incidents and their events: intake, dispatch to grids, follow-up (分流督办).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the model's values: a migration must not change when the code does.
REF_SQL = "'E' || lpad(id::text, greatest(6, length(id::text)), '0')"
STATUSES = (
    "needs_location",
    "received",
    "filed",
    "dispatched",
    "in_progress",
    "reported",
    "closed",
    "cancelled",
)


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("ref", sa.Text, sa.Computed(REF_SQL, persisted=True), nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("reporter_name", sa.Text),
        sa.Column("reporter_phone", sa.Text),
        sa.Column("reporter_email", sa.Text),
        sa.Column("address_text", sa.Text),
        sa.Column("media_url", sa.Text),
        sa.Column("input_lon", sa.Float),
        sa.Column("input_lat", sa.Float),
        sa.Column("input_crs", sa.Text),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=True),
        sa.Column("grid_code", sa.Text),
        sa.Column("community_code", sa.Text),
        sa.Column("locate_status", sa.Text),
        sa.Column("distance_m", sa.Float),
        sa.Column("candidates", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("needs_location", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("near_boundary", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("near_grids", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("possible_duplicate_of", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        _ts("received_at", nullable=False),
        _ts("filed_at"),
        _ts("dispatched_at"),
        _ts("due_at"),
        _ts("closed_at"),
        _ts("updated_at", nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default="api"),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text),
        sa.UniqueConstraint("ref", name="incidents_ref_key"),
        # A plain unique constraint (NULLs never clash) so that INSERT ... ON CONFLICT
        # (idempotency_key) can make a retried POST race-safe.
        sa.UniqueConstraint("idempotency_key", name="incidents_idempotency_key_key"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
            name="incidents_status_known",
        ),
    )
    op.create_index("incidents_geom_gist", "incidents", ["geom"], postgresql_using="gist")
    for column in ("status", "grid_code", "community_code", "received_at", "due_at"):
        op.create_index(f"incidents_{column}", "incidents", [column])
    op.create_table(
        "incident_events",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "incident_id",
            sa.BigInteger,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("grid_code", sa.Text),
        _ts("at", nullable=False),
    )
    op.create_index("incident_events_incident", "incident_events", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_table("incidents")
