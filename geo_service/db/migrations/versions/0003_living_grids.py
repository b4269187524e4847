"""Living grids: every version of every grid kept, with the edit that made it and lineage.

`grids` stays the grids of today (locate, tiles and QA read it as before) and gains a
`version` and the moment it took effect. Triggers on `grids` write `grid_versions`, so every
writer (an edit, an import, a hand-written UPDATE) keeps the past the same way and none can
forget: a changed grid closes its current version (valid_to) and opens the next; a grid
changed twice in one transaction keeps one version (the last). The edit a change belongs to
is read from the transaction-local setting `geo.grid_edit` (NULL when none is set).

Revision ID: 0003_living_grids
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_living_grids"
down_revision = "0002"
branch_labels = None
depends_on = None

EDIT_KINDS = ("split", "merge", "redraw", "create", "retire", "rename", "recode", "import")


# A grid counts as changed when its code, name, community or shape does.
_CHANGED = (
    "(n.code, n.name, n.community_code) IS DISTINCT FROM (o.code, o.name, o.community_code) "
    "OR NOT ST_OrderingEquals(n.geom, o.geom)"
)
_COLUMNS = "code, version, name, community_code, area_m2, geom, valid_from, edit_id"
_VALUES = "n.code, n.version, n.name, n.community_code, n.area_m2, n.geom, n.valid_from, {edit}"
_EDIT = "nullif(current_setting('geo.grid_edit', true), '')::bigint"

_FUNCTIONS = f"""
CREATE FUNCTION grids_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  o grids := OLD;
  n grids := NEW;
BEGIN
  IF {_CHANGED} THEN
    -- a second change in the same transaction is the same version
    NEW.version := CASE WHEN OLD.valid_from = now() THEN OLD.version ELSE OLD.version + 1 END;
    NEW.valid_from := now();
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION grids_first_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- a code used before (retired, then imported again) continues its numbering
  NEW.version := coalesce((SELECT max(version) FROM grid_versions WHERE code = NEW.code), 0) + 1;
  NEW.valid_from := now();
  RETURN NEW;
END $$;

CREATE FUNCTION grids_history_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO grid_versions ({_COLUMNS})
  SELECT {_VALUES.format(edit=_EDIT)} FROM new_rows n;
  RETURN NULL;
END $$;

CREATE FUNCTION grids_history_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  edit bigint := {_EDIT};
BEGIN
  DELETE FROM grid_versions v USING old_rows o JOIN new_rows n ON n.id = o.id
   WHERE ({_CHANGED}) AND v.code = o.code AND v.valid_to IS NULL AND v.valid_from = now();
  UPDATE grid_versions v SET valid_to = now(), ended_by = edit
    FROM old_rows o JOIN new_rows n ON n.id = o.id
   WHERE ({_CHANGED}) AND v.code = o.code AND v.valid_to IS NULL;
  INSERT INTO grid_versions ({_COLUMNS})
  SELECT {_VALUES.format(edit="edit")} FROM old_rows o JOIN new_rows n ON n.id = o.id
   WHERE {_CHANGED};
  RETURN NULL;
END $$;

CREATE FUNCTION grids_history_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  edit bigint := {_EDIT};
BEGIN
  DELETE FROM grid_versions v USING old_rows o
   WHERE v.code = o.code AND v.valid_to IS NULL AND v.valid_from = now();
  UPDATE grid_versions v SET valid_to = now(), ended_by = edit FROM old_rows o
   WHERE v.code = o.code AND v.valid_to IS NULL;
  RETURN NULL;
END $$;

CREATE TRIGGER grids_first_version BEFORE INSERT ON grids
  FOR EACH ROW EXECUTE FUNCTION grids_first_version();
CREATE TRIGGER grids_next_version BEFORE UPDATE ON grids
  FOR EACH ROW EXECUTE FUNCTION grids_next_version();
CREATE TRIGGER grids_history_insert AFTER INSERT ON grids
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION grids_history_insert();
CREATE TRIGGER grids_history_update AFTER UPDATE ON grids
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION grids_history_update();
CREATE TRIGGER grids_history_delete AFTER DELETE ON grids
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION grids_history_delete();

-- the version of its grid an incident was routed to, whoever writes the grid code
CREATE FUNCTION incidents_grid_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.grid_version := (SELECT version FROM grids WHERE code = NEW.grid_code);
  RETURN NEW;
END $$;
CREATE TRIGGER incidents_grid_version BEFORE INSERT OR UPDATE OF grid_code ON incidents
  FOR EACH ROW EXECUTE FUNCTION incidents_grid_version();
"""


def upgrade() -> None:
    op.add_column("grids", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column(
        "grids",
        sa.Column(
            "valid_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.execute("UPDATE grids SET valid_from = updated_at")
    op.create_table(
        "grid_edits",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("summary", JSONB, nullable=False, server_default="{}"),
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in EDIT_KINDS) + ")", name="grid_edits_kind"
        ),
    )
    op.create_index("grid_edits_at", "grid_edits", ["at"])
    op.create_table(
        "grid_versions",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("community_code", sa.Text, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
        sa.Column("edit_id", sa.BigInteger, sa.ForeignKey("grid_edits.id")),
        sa.Column("ended_by", sa.BigInteger, sa.ForeignKey("grid_edits.id")),
        sa.UniqueConstraint("code", "version", name="grid_versions_code_version"),
    )
    op.create_index("grid_versions_geom_gist", "grid_versions", ["geom"], postgresql_using="gist")
    op.create_index(
        "grid_versions_current",
        "grid_versions",
        ["code"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_index("grid_versions_edit", "grid_versions", ["edit_id"])
    op.create_table(
        "grid_lineage",
        sa.Column("edit_id", sa.BigInteger, sa.ForeignKey("grid_edits.id"), primary_key=True),
        sa.Column("from_code", sa.Text, primary_key=True),
        sa.Column("from_version", sa.Integer, nullable=False),
        sa.Column("to_code", sa.Text, primary_key=True),
        sa.Column("to_version", sa.Integer, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),  # of the old grid the new one took
    )
    op.create_index("grid_lineage_from", "grid_lineage", ["from_code"])
    op.create_index("grid_lineage_to", "grid_lineage", ["to_code"])
    op.add_column("incidents", sa.Column("grid_version", sa.Integer))
    op.execute(
        f"INSERT INTO grid_versions ({_COLUMNS}) "
        "SELECT code, version, name, community_code, area_m2, geom, valid_from, NULL FROM grids"
    )
    op.execute(
        "UPDATE incidents i SET grid_version = g.version FROM grids g WHERE g.code = i.grid_code"
    )
    op.execute(_FUNCTIONS)


def downgrade() -> None:
    for trigger, table in (
        ("incidents_grid_version", "incidents"),
        ("grids_history_delete", "grids"),
        ("grids_history_update", "grids"),
        ("grids_history_insert", "grids"),
        ("grids_next_version", "grids"),
        ("grids_first_version", "grids"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
        op.execute(f"DROP FUNCTION {trigger}()")
    op.drop_column("incidents", "grid_version")
    op.drop_table("grid_lineage")
    op.drop_table("grid_versions")
    op.drop_table("grid_edits")
    op.drop_column("grids", "valid_from")
    op.drop_column("grids", "version")
