"""Coverage: fewer indexes for every compute to rebuild.

- coverage_buildings.tier_min: a column of four values (the tiers, and NULL for uncovered)
  selects a tenth to most of the table, where PostgreSQL reads the table anyway (65 ms per
  compute for 120k buildings);
- the spatial indexes of coverage_nodes and coverage_edges: the service never looks them up
  by place, and a pgRouting user's nearest-node query reads 50k nodes in ~10 ms without one
  (0.38 s of PostgreSQL time per compute on the demo city). Whoever searches them by place
  often can add one: a compute drops and rebuilds whatever indexes the tables have.

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
    for table in ("coverage_nodes", "coverage_edges"):
        op.drop_index(f"{table}_geom_gist", table_name=table)


def downgrade() -> None:
    op.create_index("coverage_buildings_tier_min", "coverage_buildings", ["tier_min"])
    for table in ("coverage_nodes", "coverage_edges"):
        op.create_index(f"{table}_geom_gist", table, ["geom"], postgresql_using="gist")
