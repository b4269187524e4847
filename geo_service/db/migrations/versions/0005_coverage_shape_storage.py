"""Coverage: the drawn shapes are stored uncompressed.

Isochrones, merged tiers and gaps are polygons of up to ~40k vertices (0.6 MB): TOAST's
default pglz tries to compress every such value on every compute and gives up (coordinates
do not compress), 4-5x the time of storing them as they are (the demo city: ~65 ms of
PostgreSQL time per copy of its shapes, against ~15 ms). EXTERNAL keeps large values out of
line, uncompressed; map tiles read them without a decompression attempt too.

Revision ID: 0005_coverage_shape_storage
Revises: 0004_coverage_indexes
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005_coverage_shape_storage"
down_revision = "0004_coverage_indexes"
branch_labels = None
depends_on = None

_TABLES = ("coverage_isochrones", "coverage_tiers", "coverage_gaps")


def upgrade() -> None:
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN geom SET STORAGE EXTERNAL")


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN geom SET STORAGE MAIN")
