"""Grids stored with shared boundaries: a PostGIS Topology (`grid_topo`) of the grid layer.

Each grid carries a TopoGeometry (`grids.topo`) made of the topology's faces; a boundary
between two grids is one edge of the topology, with one grid's faces on its left and the
other's on its right. `grids.geom` stays as the grid's polygon for every reader (locate,
tiles, OGC items), written from the topology whenever a grid changes (grids/topology_store).

Existing grids are loaded into the topology here (about 8 ms a grid).

Revision ID: 0005_grid_topology
Revises: 0004_worker_assignments
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005_grid_topology"
down_revision = "0004_worker_assignments"
branch_labels = None
depends_on = None

TOPOLOGY = "grid_topo"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis_topology")
    # precision 0: the topology keeps coordinates as given (grids are stored in EPSG:4326)
    op.execute(f"SELECT topology.CreateTopology('{TOPOLOGY}', 4326, 0)")
    op.execute(
        f"SELECT topology.AddTopoGeometryColumn('{TOPOLOGY}', 'public', 'grids', 'topo', 'POLYGON')"
    )
    op.execute(
        f"UPDATE grids SET topo = topology.toTopoGeom(geom, '{TOPOLOGY}', "
        "(SELECT layer_id FROM topology.layer WHERE schema_name = 'public' "
        "AND table_name = 'grids' AND feature_column = 'topo'), 1e-7)"
    )
    # emptying the grids empties their topology (the universe face stays)
    op.execute(
        f"""
        CREATE FUNCTION grids_truncate_topology() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          TRUNCATE {TOPOLOGY}.relation, {TOPOLOGY}.edge_data, {TOPOLOGY}.node;
          DELETE FROM {TOPOLOGY}.face WHERE face_id <> 0;
          RETURN NULL;
        END $$;
        CREATE TRIGGER grids_truncate_topology AFTER TRUNCATE ON grids
          FOR EACH STATEMENT EXECUTE FUNCTION grids_truncate_topology();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER grids_truncate_topology ON grids")
    op.execute("DROP FUNCTION grids_truncate_topology()")
    op.execute("SELECT topology.DropTopoGeometryColumn('public', 'grids', 'topo')")
    op.execute(f"SELECT topology.DropTopology('{TOPOLOGY}')")
