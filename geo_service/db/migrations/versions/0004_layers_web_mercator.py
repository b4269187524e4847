"""Map layers: the grids' shapes stored in Web Mercator (EPSG:3857) beside their WGS-84
geometry, so vector tiles draw them without transforming every row of every tile
(layers/*.toml `tile_geometry`; a z12 grids tile 15.1 -> 11.0 ms in PostGIS). Tiles still find
their rows through the WGS-84 index: a second GiST index gave the same tile times.

Buildings have no such column: it made a 120k-building import 5-10% slower (0.90x geopandas'
to_postgis instead of ~1x), and their tiles beat tipg's without it.

Generated columns: PostgreSQL computes them on every insert and update (imports, COPY, edits),
so they can never disagree with the geometry they come from.

Revision ID: 0004_layers_web_mercator
Revises: 0003_layers
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004_layers_web_mercator"
down_revision = "0003_layers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE grids ADD COLUMN geom_3857 geometry(MultiPolygon, 3857) "
        "GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE grids DROP COLUMN geom_3857")
