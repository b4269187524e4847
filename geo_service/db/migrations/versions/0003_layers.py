"""Map layers: a GiST index on the shape a building is drawn with (its footprint, or its point
when it has none), so vector tiles and bbox queries of the buildings layer use an index.

Revision ID: 0003_layers
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003_layers"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The expression must stay exactly the one layers/buildings.toml selects as its geometry:
    # PostgreSQL uses an expression index only for the same expression.
    op.execute(
        "CREATE INDEX buildings_shape_gist ON buildings USING gist ((coalesce(footprint, geom)))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX buildings_shape_gist")
