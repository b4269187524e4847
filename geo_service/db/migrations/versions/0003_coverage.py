"""The 15-minute life circle: walking topology, per-building walks, isochrones, gaps.

Revision ID: 0003_coverage
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0003_coverage"
down_revision = "0002"
branch_labels = None
depends_on = None


def _geom(kind: str) -> sa.Column:
    return sa.Column("geom", Geometry(kind, srid=4326, spatial_index=False), nullable=False)


def upgrade() -> None:
    op.create_table(
        "coverage_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "computed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("roads_version", sa.BigInteger, nullable=False),
        sa.Column("buildings_version", sa.BigInteger, nullable=False),
        sa.Column("centers_version", sa.BigInteger, nullable=False),
        sa.Column("metric_srid", sa.Integer, nullable=False),
        sa.Column("walk_speed_kmh", sa.Float, nullable=False),
        sa.Column("tiers_min", ARRAY(sa.Integer), nullable=False),
        sa.Column("max_access_m", sa.Float, nullable=False),
        sa.Column("nodes", sa.Integer, nullable=False),
        sa.Column("edges", sa.Integer, nullable=False),
        sa.Column("components", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("timings", JSONB, nullable=False, server_default="{}"),
    )
    op.create_table(
        "coverage_nodes",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("component", sa.Integer, nullable=False),
        _geom("POINT"),
    )
    op.create_table(
        "coverage_edges",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("source", sa.BigInteger, nullable=False),
        sa.Column("target", sa.BigInteger, nullable=False),
        sa.Column("street_edge_id", sa.BigInteger, nullable=False),
        sa.Column("length_m", sa.Float, nullable=False),
        sa.Column("component", sa.Integer, nullable=False),
        _geom("LINESTRING"),
    )
    op.create_table(
        "coverage_centers",
        sa.Column("center_code", sa.Text, primary_key=True),
        sa.Column("edge_id", sa.BigInteger),
        sa.Column("edge_frac", sa.Float),
        sa.Column("access_m", sa.Float),
    )
    op.create_table(
        "coverage_buildings",
        sa.Column("building_id", sa.Integer, primary_key=True),
        sa.Column("building_code", sa.Text, nullable=False, unique=True),
        sa.Column("grid_code", sa.Text),
        sa.Column("community_code", sa.Text),
        sa.Column("households", sa.Integer, nullable=False),
        sa.Column("center_code", sa.Text),
        sa.Column("walk_m", sa.Float),
        sa.Column("minutes", sa.Float),
        sa.Column("tier_min", sa.Integer),
        sa.Column("access_m", sa.Float),
        sa.Column("edge_id", sa.BigInteger),
        sa.Column("edge_frac", sa.Float),
    )
    op.create_table(
        "coverage_isochrones",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("center_code", sa.Text, nullable=False),
        sa.Column("tier_min", sa.Integer, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        _geom("MULTIPOLYGON"),
        sa.UniqueConstraint("center_code", "tier_min", name="coverage_isochrones_center_tier"),
    )
    op.create_table(
        "coverage_tiers",
        sa.Column("tier_min", sa.Integer, primary_key=True),
        sa.Column("area_m2", sa.Float, nullable=False),
        _geom("MULTIPOLYGON"),
    )
    op.create_table(
        "coverage_gaps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("buildings", sa.Integer, nullable=False),
        sa.Column("households", sa.Integer, nullable=False),
        _geom("POLYGON"),
    )
    for table in (
        "coverage_nodes",
        "coverage_edges",
        "coverage_isochrones",
        "coverage_tiers",
        "coverage_gaps",
    ):
        op.create_index(f"{table}_geom_gist", table, ["geom"], postgresql_using="gist")
    for column in ("grid_code", "community_code", "center_code", "tier_min"):
        op.create_index(f"coverage_buildings_{column}", "coverage_buildings", [column])


def downgrade() -> None:
    for table in (
        "coverage_gaps",
        "coverage_tiers",
        "coverage_isochrones",
        "coverage_buildings",
        "coverage_centers",
        "coverage_edges",
        "coverage_nodes",
        "coverage_runs",
    ):
        op.drop_table(table)
