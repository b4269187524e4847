"""Named places a city imports (schools, markets, clinics, parks: `geo-service import pois`,
and OpenStreetMap amenities from `import osm`), for geocoding what residents name: a place's
name, or a look-alike of it, gives that place.

Revision ID: 0006_places
Revises: 0005_street_crossings
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0006_places"
down_revision = "0005_street_crossings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "places",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("places_geom_gist", "places", ["geom"], postgresql_using="gist")
    op.create_index(
        "places_name_trgm",
        "places",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_table("places")
