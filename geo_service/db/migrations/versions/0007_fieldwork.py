"""Field work: door-to-door campaigns (screening rounds, routine visits 三登门五必访), the
buildings each covers (a snapshot with each building's grid and community when the campaign
was made) and its totals per grid, and the visits grid workers record, idempotent per caller
and key, each with what it added to its building's round; and those additions summed per
campaign, round and grid (progress reads a few thousand rows for a city).

Revision ID: 0007_fieldwork
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0007_fieldwork"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the model's values: a migration must not change when the code does.
KINDS = ("screening", "routine", "other")
TARGETS = ("buildings", "households")
OUTCOMES = ("visited", "no_one_home", "refused", "follow_up")
MAX_ROUNDS = 20


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(
        f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name
    )


def _ts(name: str, *, now: bool = False) -> sa.Column:
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=default)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("scope_kind", sa.Text, nullable=False),
        sa.Column("scope_codes", ARRAY(sa.Text), nullable=False),
        _ts("starts_at"),
        _ts("due_at"),
        sa.Column("created_by", sa.Text, nullable=False),
        _ts("created_at", now=True),
        sa.Column("buildings", sa.Integer, nullable=False),
        sa.Column("households", sa.Integer, nullable=False),
        _one_of("kind", KINDS, "campaigns_kind"),
        _one_of("target", TARGETS, "campaigns_target"),
        _one_of("scope_kind", ("communities", "grids"), "campaigns_scope_kind"),
        sa.CheckConstraint(f"rounds BETWEEN 1 AND {MAX_ROUNDS}", name="campaigns_rounds"),
        sa.CheckConstraint("due_at >= starts_at", name="campaigns_due_after_start"),
    )
    op.create_table(
        "campaign_buildings",
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("building_code", sa.Text, primary_key=True),
        sa.Column("grid_code", sa.Text, nullable=False),
        sa.Column("community_code", sa.Text, nullable=False),
        sa.Column("households", sa.Integer, nullable=False),
    )
    op.create_index("campaign_buildings_grid", "campaign_buildings", ["campaign_id", "grid_code"])
    op.create_table(
        "campaign_grids",
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("grid_code", sa.Text, primary_key=True),
        sa.Column("community_code", sa.Text, nullable=False),
        sa.Column("buildings", sa.Integer, nullable=False),
        sa.Column("households", sa.Integer, nullable=False),
    )
    op.create_table(
        "campaign_visits",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("building_code", sa.Text, nullable=False),
        sa.Column("grid_code", sa.Text, nullable=False),
        sa.Column("community_code", sa.Text, nullable=False),
        sa.Column("households_reached", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        _ts("at"),
        _ts("recorded_at", now=True),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("input_lon", sa.Float, nullable=False),
        sa.Column("input_lat", sa.Float, nullable=False),
        sa.Column("input_crs", sa.Text, nullable=False),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("distance_m", sa.Float, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("flag_reason", sa.Text),
        sa.Column("revisit", sa.Boolean, nullable=False),
        sa.Column("first_reach", sa.Boolean, nullable=False),
        sa.Column("households_added", sa.Integer, nullable=False),
        sa.Column("incident_ref", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("idempotency_owner", sa.Text, nullable=False, server_default=""),
        sa.Column("request_hash", sa.Text),
        # A plain unique constraint (NULL keys never clash) so that INSERT ... ON CONFLICT
        # makes a resent visit race-safe, as for incidents.
        sa.UniqueConstraint(
            "idempotency_owner", "idempotency_key", name="campaign_visits_idempotency_owner_key"
        ),
        _one_of("outcome", OUTCOMES, "campaign_visits_outcome"),
        sa.CheckConstraint(
            "households_reached >= 0", name="campaign_visits_households_nonnegative"
        ),
    )
    op.create_index(
        "campaign_visits_building",
        "campaign_visits",
        ["campaign_id", "round", "building_code"],
    )

    op.create_table(
        "campaign_progress",
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("grid_code", sa.Text, primary_key=True),
        *(
            sa.Column(name, sa.Integer, nullable=False)
            for name in (
                "buildings_done",
                "households_done",
                "visits",
                "revisits",
                "no_one_home",
                "flagged",
            )
        ),
    )


def downgrade() -> None:
    op.drop_table("campaign_progress")
    op.drop_table("campaign_visits")
    op.drop_table("campaign_grids")
    op.drop_table("campaign_buildings")
    op.drop_table("campaigns")
