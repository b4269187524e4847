"""Re-division proposals: each proposal (parameters, status and progress, the data versions
and today's grid versions it was made from, the figures of the proposal beside today's
grids) and the grids it would make.

Revision ID: 0008_division
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008_division"
down_revision = "0002"
branch_labels = None
depends_on = None

STATUSES = ("running", "done", "failed")  # frozen copy of models.DIVISION_STATUSES


def upgrade() -> None:
    op.create_table(
        "division_proposals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("params", JSONB, nullable=False),
        sa.Column("versions", JSONB, nullable=False, server_default="{}"),
        sa.Column("communities_total", sa.Integer, nullable=False),
        sa.Column("communities_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("figures", JSONB, nullable=False, server_default="{}"),
        sa.Column("notes", JSONB, nullable=False, server_default="[]"),
        sa.Column("error", sa.Text),
        sa.Column("seconds", sa.Float),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
            name="division_proposals_status",
        ),
    )
    op.create_table(
        "division_proposal_grids",
        sa.Column(
            "proposal_id",
            sa.Integer,
            sa.ForeignKey("division_proposals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("community_code", sa.Text, nullable=False),
        sa.Column("households", sa.Integer, nullable=False),
        sa.Column("buildings", sa.Integer, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("polsby_popper", sa.Float, nullable=False),
        sa.Column("takes", JSONB, nullable=False, server_default="{}"),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index(
        "division_proposal_grids_geom_gist",
        "division_proposal_grids",
        ["geom"],
        postgresql_using="gist",
    )


def downgrade() -> None:
    op.drop_table("division_proposal_grids")
    op.drop_table("division_proposals")
