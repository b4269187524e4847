"""Grid edits of kind `redivide`: a re-division proposal applied as one edit (the grids of its
communities replaced by the proposal's, with lineage).

Revision ID: 0006_grid_edit_redivide
Revises: 0005_grid_topology
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006_grid_edit_redivide"
down_revision = "0005_grid_topology"
branch_labels = None
depends_on = None

# frozen copies of models.GRID_EDIT_KINDS before and after
BEFORE = ("split", "merge", "redraw", "create", "retire", "rename", "recode", "import")
AFTER = (*BEFORE, "redivide")


def _check(kinds: tuple[str, ...]) -> None:
    op.drop_constraint("grid_edits_kind", "grid_edits", type_="check")
    op.create_check_constraint(
        "grid_edits_kind", "grid_edits", "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"
    )


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    _check(BEFORE)  # refused while redivide edits are kept: their history is not dropped
