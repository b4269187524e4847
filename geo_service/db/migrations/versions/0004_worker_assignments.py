"""Grid workers serve grids through assignments with a from and a to: a worker can serve
several grids and a grid have several workers; leaving ends them all, and the past stays.

`workers.grid_code` stays as the worker's home grid (what a workers import names): a trigger
keeps an open assignment to it, ending the one to the grid it replaces. `grid_workers` is the
view every reader uses: the workers serving each grid today.

Revision ID: 0004_worker_assignments
Revises: 0003_living_grids
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_worker_assignments"
down_revision = "0003_living_grids"
branch_labels = None
depends_on = None

_FUNCTIONS = """
CREATE FUNCTION workers_home_assignment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.grid_code IS NOT NULL
     AND OLD.grid_code IS DISTINCT FROM NEW.grid_code THEN
    UPDATE worker_assignments SET valid_to = now()
     WHERE worker_code = NEW.code AND grid_code = OLD.grid_code AND valid_to IS NULL;
  END IF;
  IF NEW.grid_code IS NOT NULL AND NEW.left_at IS NULL THEN
    INSERT INTO worker_assignments (worker_code, grid_code) VALUES (NEW.code, NEW.grid_code)
    ON CONFLICT (worker_code, grid_code) WHERE valid_to IS NULL DO NOTHING;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER workers_home_assignment AFTER INSERT OR UPDATE OF grid_code ON workers
  FOR EACH ROW EXECUTE FUNCTION workers_home_assignment();

CREATE VIEW grid_workers AS
  SELECT a.grid_code, w.code, w.name, w.phone, a.valid_from
  FROM worker_assignments a JOIN workers w ON w.code = a.worker_code
  WHERE a.valid_to IS NULL;
"""


def upgrade() -> None:
    op.alter_column("workers", "grid_code", nullable=True)
    op.add_column("workers", sa.Column("left_at", sa.DateTime(timezone=True)))
    op.create_table(
        "worker_assignments",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "worker_code",
            sa.Text,
            sa.ForeignKey("workers.code", onupdate="CASCADE", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("grid_code", sa.Text, nullable=False),
        sa.Column(
            "valid_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "worker_assignments_open",
        "worker_assignments",
        ["worker_code", "grid_code"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_index(
        "worker_assignments_grid",
        "worker_assignments",
        ["grid_code"],
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.execute(
        "INSERT INTO worker_assignments (worker_code, grid_code, valid_from) "
        "SELECT code, grid_code, updated_at FROM workers WHERE grid_code IS NOT NULL"
    )
    op.execute(_FUNCTIONS)


def downgrade() -> None:
    op.execute("DROP VIEW grid_workers")
    op.execute("DROP TRIGGER workers_home_assignment ON workers")
    op.execute("DROP FUNCTION workers_home_assignment()")
    op.drop_table("worker_assignments")
    op.drop_column("workers", "left_at")
    op.alter_column("workers", "grid_code", nullable=False)
