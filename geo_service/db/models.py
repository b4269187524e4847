"""Tables of the system of record (SQLAlchemy Core + GeoAlchemy2).

Geometry is stored in EPSG:4326 with explicit SRIDs; metric figures (areas, lengths) are
computed at write time on the spheroid and stored beside the geometry. The migrations in
`migrations/versions` create exactly these tables; keep both telling the same story.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

SRID = 4326

metadata = MetaData()


def _geom(kind: str, name: str = "geom", *, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    # spatial_index=False: the GiST indexes are declared explicitly below, so the migration
    # and the model name them the same way.
    return Column(name, Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable)


def _updated_at() -> Column:  # type: ignore[type-arg]
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


communities = Table(
    "communities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("area_m2", Float, nullable=False),
    _geom("MULTIPOLYGON"),
    _updated_at(),
    Index("communities_geom_gist", "geom", postgresql_using="gist"),
)

grids = Table(
    "grids",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column(
        "community_code",
        Text,
        ForeignKey("communities.code", onupdate="CASCADE", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("area_m2", Float, nullable=False),
    _geom("MULTIPOLYGON"),
    _updated_at(),
    Index("grids_geom_gist", "geom", postgresql_using="gist"),
    Index("grids_community_code", "community_code"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("phone", Text),
    Column(
        "grid_code",
        Text,
        ForeignKey("grids.code", onupdate="CASCADE", ondelete="RESTRICT"),
        nullable=False,
    ),
    _updated_at(),
    Index("workers_grid_code", "grid_code"),
)

buildings = Table(
    "buildings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("address", Text, nullable=False),
    Column("name", Text),
    Column("households", Integer, nullable=False),
    _geom("POINT"),
    _geom("MULTIPOLYGON", "footprint", nullable=True),
    _updated_at(),
    CheckConstraint("households >= 0", name="buildings_households_nonnegative"),
    Index("buildings_geom_gist", "geom", postgresql_using="gist"),
)

centers = Table(
    "centers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", Text),
    _geom("POINT"),
    _updated_at(),
    Index("centers_geom_gist", "geom", postgresql_using="gist"),
)

street_edges = Table(
    "street_edges",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text),
    Column("length_m", Float, nullable=False),
    Column("walkable", Boolean, nullable=False, server_default="true"),
    _geom("LINESTRING"),
    _updated_at(),
    Index("street_edges_geom_gist", "geom", postgresql_using="gist"),
)

# One row per data kind; `version` increases with every import that changed something.
# Derived results (coverage, tiles) compare versions to know when they are stale.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Audit trail of imports: what came in, from where, with what outcome.
import_runs = Table(
    "import_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("deleted", Integer, nullable=False),
    Column("repaired", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

TABLES_BY_KIND = {
    "communities": communities,
    "grids": grids,
    "workers": workers,
    "buildings": buildings,
    "centers": centers,
    "roads": street_edges,
}
