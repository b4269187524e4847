"""Where named streets meet, for geocoding intersections (解放九路与胜利八路交叉口): one point
per meeting (the crossing points of two streets' edges within 40 m of each other merged),
under the names as the address parser writes them. Derived from `street_edges` when it
changes, as the address index is from the buildings.

Revision ID: 0005_street_crossings
Revises: 0004_building_search
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0005_street_crossings"
down_revision = "0004_building_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "street_crossings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("road_a", sa.Text, nullable=False),  # road_a < road_b
        sa.Column("road_b", sa.Text, nullable=False),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index("street_crossings_roads", "street_crossings", ["road_a", "road_b"])


def downgrade() -> None:
    op.drop_table("street_crossings")
