"""Map layers: the grids' Web Mercator shapes simplified once for each tolerance of their tiles
(layers/grids.toml `simplify` 20, 5 and 1 m; `tile_simplified` names these columns), so that a
tile draws them instead of simplifying every row of every tile: a z12 grids tile (961 grids)
5.3 -> 3.3 ms of the backend's CPU, the same bytes.

Generated columns, as geom_3857 (migration 0004_layers_web_mercator): PostgreSQL computes them
on every insert and update (imports, edits, re-divisions), so no writer can forget them. Each
is the same expression a tile used, ST_Simplify(ST_Transform(geom, 3857), tolerance, true),
hence the same shapes. Any geometry type: ST_Simplify keeps the type it is given, and a
stricter column type would turn a surprise into a failed edit.

Revision ID: 0005_layers_tile_shapes
Revises: 0004_layers_web_mercator
Create Date: 2026-12-03
"""

from alembic import op

revision = "0005_layers_tile_shapes"
down_revision = "0004_layers_web_mercator"
branch_labels = None
depends_on = None

# (column, tolerance in Web Mercator metres): as layers/grids.toml `tile_simplified`.
SHAPES = (("geom_3857_s20", 20), ("geom_3857_s5", 5), ("geom_3857_s1", 1))


def upgrade() -> None:
    for column, tolerance in SHAPES:
        op.execute(
            f"ALTER TABLE grids ADD COLUMN {column} geometry(Geometry, 3857) GENERATED ALWAYS "
            f"AS (ST_Simplify(ST_Transform(geom, 3857), {tolerance}, true)) STORED"
        )


def downgrade() -> None:
    for column, _ in SHAPES:
        op.execute(f"ALTER TABLE grids DROP COLUMN {column}")
