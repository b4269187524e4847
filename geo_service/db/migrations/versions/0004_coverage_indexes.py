"""Coverage: no index on coverage_buildings.tier_min. A column of four values (the tiers and
NULL for uncovered) selects a tenth to most of the table, where PostgreSQL reads the table
anyway; the index only cost every compute its rebuild (65 ms for 120k buildings).

Revision ID: 0004_coverage_indexes
Revises: 0003_coverage
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004_coverage_indexes"
down_revision = "0003_coverage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("coverage_buildings_tier_min", table_name="coverage_buildings")


def downgrade() -> None:
    op.create_index("coverage_buildings_tier_min", "coverage_buildings", ["tier_min"])
