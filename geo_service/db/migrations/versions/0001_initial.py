"""Initial schema: communities, grids, workers, buildings, centres, street edges.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _geom(kind: str, name: str = "geom", nullable: bool = False) -> sa.Column:
    return sa.Column(name, Geometry(kind, srid=4326, spatial_index=False), nullable=nullable)


def _updated_at() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "communities",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        _geom("MULTIPOLYGON"),
        _updated_at(),
    )
    op.create_table(
        "grids",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column(
            "community_code",
            sa.Text,
            sa.ForeignKey("communities.code", onupdate="CASCADE", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("area_m2", sa.Float, nullable=False),
        _geom("MULTIPOLYGON"),
        _updated_at(),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("phone", sa.Text),
        sa.Column(
            "grid_code",
            sa.Text,
            sa.ForeignKey("grids.code", onupdate="CASCADE", ondelete="RESTRICT"),
            nullable=False,
        ),
        _updated_at(),
    )
    op.create_table(
        "buildings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("households", sa.Integer, nullable=False),
        _geom("POINT"),
        _geom("MULTIPOLYGON", "footprint", nullable=True),
        _updated_at(),
        sa.CheckConstraint("households >= 0", name="buildings_households_nonnegative"),
    )
    op.create_table(
        "centers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text),
        _geom("POINT"),
        _updated_at(),
    )
    op.create_table(
        "street_edges",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text),
        sa.Column("length_m", sa.Float, nullable=False),
        sa.Column("walkable", sa.Boolean, nullable=False, server_default="true"),
        _geom("LINESTRING"),
        _updated_at(),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "import_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("inserted", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("unchanged", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
        sa.Column("repaired", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.Column(
            "finished_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    for table in ("communities", "grids", "buildings", "centers", "street_edges"):
        op.create_index(f"{table}_geom_gist", table, ["geom"], postgresql_using="gist")
    op.create_index("grids_community_code", "grids", ["community_code"])
    # Re-imports compare geometry with a tolerance: a file reprojected to Gauss-Krüger and
    # back differs from the original in the last digits, and that is not a change.
    op.execute(
        """
        CREATE FUNCTION geo_same(a geometry, b geometry, tol float8) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN a IS NULL OR b IS NULL THEN a IS NULL AND b IS NULL
                 ELSE ST_OrderingEquals(a, b)
                      OR (ST_NPoints(a) = ST_NPoints(b) AND ST_HausdorffDistance(a, b) <= tol)
                 END
        $$
        """
    )
    op.create_index("workers_grid_code", "workers", ["grid_code"])


def downgrade() -> None:
    op.execute("DROP FUNCTION geo_same(geometry, geometry, float8)")
    for table in (
        "import_runs",
        "dataset_versions",
        "street_edges",
        "centers",
        "buildings",
        "workers",
        "grids",
        "communities",
    ):
        op.drop_table(table)
