"""Tables of the system of record (SQLAlchemy Core + GeoAlchemy2).

Geometry is stored in EPSG:4326 with explicit SRIDs; metric figures (areas, lengths) are
computed at write time on the spheroid and stored beside the geometry, and so are the grids'
Web Mercator shapes vector tiles draw. The migrations in `migrations/versions` create exactly
these tables; keep both telling the same story.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType

SRID = 4326
WEB_MERCATOR = 3857  # the tiles' CRS

metadata = MetaData()


def _geom(kind: str, name: str = "geom", *, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    # spatial_index=False: the GiST indexes are declared explicitly below, so the migration
    # and the model name them the same way.
    return Column(name, Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable)


def _updated_at() -> Column:  # type: ignore[type-arg]
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _web_mercator(name: str, kind: str, expression: str) -> Column:  # type: ignore[type-arg]
    # The shape a map layer draws, in Web Mercator, computed by PostgreSQL from the WGS-84
    # geometry on every write: vector tiles draw it without a transform per row (layers/*.toml
    # `tile_geometry`). No index: tiles find their rows through the WGS-84 geometry's.
    return Column(
        name,
        Geometry(kind, srid=WEB_MERCATOR, spatial_index=False),
        Computed(expression, persisted=True),
    )


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


class TopoGeometry(UserDefinedType):  # type: ignore[type-arg]
    """PostGIS Topology's topology.topogeometry (read and written in SQL only)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        """The column's type in DDL."""
        return "topology.topogeometry"


# Reflection names the type too, so that comparing the model with the database knows it.
ischema_names["topogeometry"] = TopoGeometry


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
    _web_mercator("geom_3857", "MULTIPOLYGON", "ST_Transform(geom, 3857)"),
    # geom_3857 simplified once per tolerance of the grids' tiles (0005_layers_tile_shapes).
    *(
        _web_mercator(
            f"geom_3857_s{t}", "GEOMETRY", f"ST_Simplify(ST_Transform(geom, 3857), {t}, true)"
        )
        for t in (20, 5, 1)
    ),
    # The grid's version and when it took effect: set by triggers (migration
    # 0003_living_grids), which also write every version to grid_versions.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("valid_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The grid as faces of the grid_topo topology (migration 0005_grid_topology), written by
    # grids/topology_store.sync after every import and edit.
    Column("topo", TopoGeometry),
    Index("grids_geom_gist", "geom", postgresql_using="gist"),
    Index("grids_community_code", "community_code"),
)

GRID_EDIT_KINDS = (
    "split",
    "merge",
    "redraw",
    "create",
    "retire",
    "rename",
    "recode",
    "import",
    "redivide",
)

# Every grid edit (and every import that changed grids): who, why, when, what it did.
grid_edits = Table(
    "grid_edits",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("summary", JSONB, nullable=False, server_default="{}"),
    CheckConstraint(
        "kind IN (" + ", ".join(f"'{k}'" for k in GRID_EDIT_KINDS) + ")", name="grid_edits_kind"
    ),
    Index("grid_edits_at", "at"),
)

# Every version of every grid, today's included (valid_to NULL): written by triggers on grids.
grid_versions = Table(
    "grid_versions",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("community_code", Text, nullable=False),
    Column("area_m2", Float, nullable=False),
    _geom("MULTIPOLYGON"),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True)),
    Column("edit_id", BigInteger, ForeignKey("grid_edits.id")),  # the edit that made it
    Column("ended_by", BigInteger, ForeignKey("grid_edits.id")),
    UniqueConstraint("code", "version", name="grid_versions_code_version"),
    Index("grid_versions_geom_gist", "geom", postgresql_using="gist"),
    Index("grid_versions_current", "code", unique=True, postgresql_where=text("valid_to IS NULL")),
    Index("grid_versions_edit", "edit_id"),
)

# Which version of which grid gave area to which new version, in which edit (m²).
grid_lineage = Table(
    "grid_lineage",
    metadata,
    Column("edit_id", BigInteger, ForeignKey("grid_edits.id"), primary_key=True),
    Column("from_code", Text, primary_key=True),
    Column("from_version", Integer, nullable=False),
    Column("to_code", Text, primary_key=True),
    Column("to_version", Integer, nullable=False),
    Column("area_m2", Float, nullable=False),
    Index("grid_lineage_from", "from_code"),
    Index("grid_lineage_to", "to_code"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("phone", Text),
    Column(  # the home grid (what a workers import names); NULL once the worker has left
        "grid_code",
        Text,
        ForeignKey("grids.code", onupdate="CASCADE", ondelete="RESTRICT"),
    ),
    Column("left_at", DateTime(timezone=True)),
    _updated_at(),
    Index("workers_grid_code", "grid_code"),
)

# Which grids each worker serves, from when to when (valid_to NULL: today). A trigger keeps
# an open assignment to the home grid; the view `grid_workers` (migration
# 0004_worker_assignments) is the workers of each grid today, what every reader uses.
worker_assignments = Table(
    "worker_assignments",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "worker_code",
        Text,
        ForeignKey("workers.code", onupdate="CASCADE", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("grid_code", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("valid_to", DateTime(timezone=True)),
    Index(
        "worker_assignments_open",
        "worker_code",
        "grid_code",
        unique=True,
        postgresql_where=text("valid_to IS NULL"),
    ),
    Index("worker_assignments_grid", "grid_code", postgresql_where=text("valid_to IS NULL")),
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
# The shape the buildings map layer draws (footprint, else the point): tiles filter on it.
Index(
    "buildings_shape_gist",
    func.coalesce(buildings.c.footprint, buildings.c.geom),
    postgresql_using="gist",
)

# The address index: each building's address parsed into its GB/T 37149 parts
# (geo_service.buildings.address), refreshed whenever a building's address changes.
building_addresses = Table(
    "building_addresses",
    metadata,
    Column(
        "code",
        Text,
        ForeignKey("buildings.code", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("address", Text, nullable=False),  # the text the parts were parsed from
    Column("key", Text, nullable=False),  # address.match_key: road+door+estate+building...
    Column("district", Text),
    Column("road", Text),
    Column("door", Text),
    Column("estate", Text),
    Column("building", Text),
    Column("unit", Text),
    Column("room", Text),
    Index("building_addresses_key", "key"),
    Index("building_addresses_road_door", "road", "door"),
    Index("building_addresses_estate_building", "estate", "building"),
)

# Distinct road and estate names of the address index, for matching a name typed wrong.
address_names = Table(
    "address_names",
    metadata,
    Column("kind", Text, primary_key=True),  # road | estate
    Column("name", Text, primary_key=True),
    Index(
        "address_names_trgm",
        "name",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    ),
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

# Named places a city imports (kind `pois`: schools, markets, clinics, parks ...), which
# residents name instead of an address.
places = Table(
    "places",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", Text),
    _geom("POINT"),
    _updated_at(),
    Index("places_geom_gist", "geom", postgresql_using="gist"),
    Index(
        "places_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}
    ),
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

# Where named streets meet (the geocoder's intersections), derived from street_edges; the
# names as the address parser writes them, road_a < road_b.
street_crossings = Table(
    "street_crossings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("road_a", Text, nullable=False),
    Column("road_b", Text, nullable=False),
    _geom("POINT"),
    Index("street_crossings_roads", "road_a", "road_b"),
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

# -- incidents (intake, dispatch, follow-up) ----------------------------------------------------
# The public reference is derived from the id by the database, so it exists the moment the
# row does and two writers can never hand out the same one.
INCIDENT_REF_SQL = "'E' || lpad(id::text, greatest(6, length(id::text)), '0')"
INCIDENT_STATUSES = (
    "needs_location",
    "received",
    "filed",
    "dispatched",
    "in_progress",
    "reported",
    "closed",
    "cancelled",
)

# grid_code/community_code are the routing at the time (a record of who was asked to act),
# deliberately without foreign keys: re-importing or retiring a grid must not rewrite or
# block the history of incidents.
incidents = Table(
    "incidents",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("ref", Text, Computed(INCIDENT_REF_SQL, persisted=True), nullable=False, unique=True),
    Column("category", Text, nullable=False),
    Column("description", Text),
    Column("reporter_name", Text),  # personal data: optional, never shown by Open311
    Column("reporter_phone", Text),
    Column("reporter_email", Text),
    Column("address_text", Text),
    Column("media_url", Text),
    Column("input_lon", Float),  # as given, in input_crs
    Column("input_lat", Float),
    Column("input_crs", Text),
    _geom("POINT", nullable=True),  # WGS-84; NULL for address-only reports
    Column("grid_code", Text),
    Column("grid_version", Integer),  # of that grid when routed (set by a trigger)
    Column("community_code", Text),
    Column("locate_status", Text),
    Column("distance_m", Float),
    Column("candidates", ARRAY(Text), nullable=False, server_default="{}"),
    # Buildings geocoding proposed for an address-only report (migration 0003_geocode).
    Column("address_candidates", JSONB, nullable=False, server_default="[]"),
    Column("needs_location", Boolean, nullable=False, server_default="false"),
    Column("near_boundary", Boolean, nullable=False, server_default="false"),
    Column("near_grids", ARRAY(Text), nullable=False, server_default="{}"),
    Column("possible_duplicate_of", Text),
    Column("status", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("filed_at", DateTime(timezone=True)),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("due_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False, server_default="api"),
    Column("idempotency_key", Text),
    # whose key it is (the token's user, '' for none): keys are unique per caller
    Column("idempotency_owner", Text, nullable=False, server_default=""),
    Column("request_hash", Text),
    UniqueConstraint(
        "idempotency_owner", "idempotency_key", name="incidents_idempotency_owner_key"
    ),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in INCIDENT_STATUSES) + ")",
        name="incidents_status_known",
    ),
    Index("incidents_geom_gist", "geom", postgresql_using="gist"),
    Index("incidents_status", "status"),
    Index("incidents_grid_code", "grid_code"),
    Index("incidents_community_code", "community_code"),
    Index("incidents_received_at", "received_at"),
    Index("incidents_due_at", "due_at"),
)

incident_events = Table(
    "incident_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "incident_id", BigInteger, ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    ),
    Column("action", Text, nullable=False),
    Column("from_status", Text),  # NULL for the event that created the incident
    Column("to_status", Text, nullable=False),
    Column("actor", Text, nullable=False),  # who did it, as the request says
    Column("recorded_by", Text),  # the authenticated caller who recorded it (token name)
    Column("note", Text),
    Column("grid_code", Text),  # the grid after the event (dispatch and re-routing)
    Column("at", DateTime(timezone=True), nullable=False),
    # A workflow action sent with an Idempotency-Key (a phone resending after a dropped
    # connection): the key, whose it is and a digest of the request, on the action's first event.
    Column("idempotency_owner", Text),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    UniqueConstraint(
        "idempotency_owner", "idempotency_key", name="incident_events_idempotency_owner_key"
    ),
    Index("incident_events_incident", "incident_id", "id"),
)

TABLES_BY_KIND = {
    "communities": communities,
    "grids": grids,
    "workers": workers,
    "buildings": buildings,
    "centers": centers,
    "pois": places,
    "roads": street_edges,
}

# -- coverage (the 15-minute life circle) -------------------------------------------------------
# Derived tables, replaced wholesale by `geo-service coverage compute`; no foreign keys, so a
# re-import of buildings or centres never waits on them (coverage_runs says they are stale).
coverage_runs = Table(
    "coverage_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("roads_version", BigInteger, nullable=False),  # dataset_versions at compute time
    Column("buildings_version", BigInteger, nullable=False),
    Column("centers_version", BigInteger, nullable=False),
    Column("metric_srid", Integer, nullable=False),  # UTM zone the geometry work used
    Column("walk_speed_kmh", Float, nullable=False),
    Column("tiers_min", ARRAY(Integer), nullable=False),
    Column("max_access_m", Float, nullable=False),
    Column("nodes", Integer, nullable=False),
    Column("edges", Integer, nullable=False),
    Column("components", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("timings", JSONB, nullable=False, server_default="{}"),
)

coverage_nodes = Table(
    "coverage_nodes",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("component", Integer, nullable=False),  # 0 = the main (routable) network
    _geom("POINT"),  # no spatial index: see migration 0004_coverage_indexes
)

# Edges split at junctions; (id, source, target, length_m) is a pgRouting edge table too.
coverage_edges = Table(
    "coverage_edges",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("source", BigInteger, nullable=False),
    Column("target", BigInteger, nullable=False),
    Column("street_edge_id", BigInteger, nullable=False),
    Column("length_m", Float, nullable=False),
    Column("component", Integer, nullable=False),
    _geom("LINESTRING"),  # no spatial index: see migration 0004_coverage_indexes
)

coverage_centers = Table(
    "coverage_centers",
    metadata,
    Column("center_code", Text, primary_key=True),
    Column("edge_id", BigInteger),  # NULL: no routable street within the access distance
    Column("edge_frac", Float),
    Column("access_m", Float),
)

coverage_buildings = Table(
    "coverage_buildings",
    metadata,
    Column("building_id", Integer, primary_key=True),
    Column("building_code", Text, nullable=False, unique=True),
    Column("grid_code", Text),
    Column("community_code", Text),
    Column("households", Integer, nullable=False),
    Column("center_code", Text),  # nearest centre on foot; NULL when none is reachable
    Column("walk_m", Float),
    Column("minutes", Float),
    Column("tier_min", Integer),  # smallest tier holding the walk; NULL = uncovered
    Column("access_m", Float),
    Column("edge_id", BigInteger),
    Column("edge_frac", Float),
    Index("coverage_buildings_grid_code", "grid_code"),
    Index("coverage_buildings_community_code", "community_code"),
    Index("coverage_buildings_center_code", "center_code"),
)

coverage_isochrones = Table(
    "coverage_isochrones",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("center_code", Text, nullable=False),
    Column("tier_min", Integer, nullable=False),
    Column("area_m2", Float, nullable=False),
    _geom("MULTIPOLYGON"),
    UniqueConstraint("center_code", "tier_min", name="coverage_isochrones_center_tier"),
    Index("coverage_isochrones_geom_gist", "geom", postgresql_using="gist"),
)

coverage_tiers = Table(
    "coverage_tiers",
    metadata,
    Column("tier_min", Integer, primary_key=True),
    Column("area_m2", Float, nullable=False),
    _geom("MULTIPOLYGON"),
    Index("coverage_tiers_geom_gist", "geom", postgresql_using="gist"),
)

coverage_gaps = Table(
    "coverage_gaps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("area_m2", Float, nullable=False),
    Column("buildings", Integer, nullable=False),
    Column("households", Integer, nullable=False),
    _geom("POLYGON"),
    Index("coverage_gaps_geom_gist", "geom", postgresql_using="gist"),
)

# -- roles and tokens (migration 0003_auth) ------------------------------------------------------
# One row per token; the token itself is shown once and only its SHA-256 is kept.
auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("grids", ARRAY(Text), nullable=False, server_default="{}"),  # worker's scope
    Column("token_hash", Text, nullable=False, unique=True),
    Column("token_prefix", Text, nullable=False),  # first characters, to tell tokens apart
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("auth_tokens_name", "name"),
)

# -- field work: door-to-door campaigns and visits (migration 0007_fieldwork) --------------------
CAMPAIGN_KINDS = ("screening", "routine", "other")
CAMPAIGN_TARGETS = ("buildings", "households")
CAMPAIGN_MAX_ROUNDS = 20
VISIT_OUTCOMES = ("visited", "no_one_home", "refused", "follow_up")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name)


campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("target", Text, nullable=False),  # what progress counts: buildings or households
    Column("rounds", Integer, nullable=False),
    Column("scope_kind", Text, nullable=False),  # communities | grids
    Column("scope_codes", ARRAY(Text), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("buildings", Integer, nullable=False),  # the snapshot's totals
    Column("households", Integer, nullable=False),
    _one_of("kind", CAMPAIGN_KINDS, "campaigns_kind"),
    _one_of("target", CAMPAIGN_TARGETS, "campaigns_target"),
    _one_of("scope_kind", ("communities", "grids"), "campaigns_scope_kind"),
    CheckConstraint(f"rounds BETWEEN 1 AND {CAMPAIGN_MAX_ROUNDS}", name="campaigns_rounds"),
    CheckConstraint("due_at >= starts_at", name="campaigns_due_after_start"),
)

# The buildings a campaign covers, each with its grid (by the locate rule) and community as
# they were when the campaign was created: progress is one GROUP BY over this table and the
# visits, and a later grid edit does not move work between grids mid-campaign. No foreign key
# to buildings: a re-import must not wait on old campaigns.
campaign_buildings = Table(
    "campaign_buildings",
    metadata,
    Column(
        "campaign_id",
        Integer,
        ForeignKey("campaigns.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("building_code", Text, primary_key=True),
    Column("grid_code", Text, nullable=False),
    Column("community_code", Text, nullable=False),
    Column("households", Integer, nullable=False),
    Index("campaign_buildings_grid", "campaign_id", "grid_code"),
)

# The snapshot's totals per grid: what progress divides by, without counting the buildings.
campaign_grids = Table(
    "campaign_grids",
    metadata,
    Column(
        "campaign_id",
        Integer,
        ForeignKey("campaigns.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("grid_code", Text, primary_key=True),
    Column("community_code", Text, nullable=False),
    Column("buildings", Integer, nullable=False),
    Column("households", Integer, nullable=False),
)

# One row per visit as recorded (a resend with the same Idempotency-Key is the same row).
# Visits are never changed or deleted, so each carries what it added to its building's round
# when it was recorded (under the building's lock), and campaign_progress sums those.
campaign_visits = Table(
    "campaign_visits",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "campaign_id",
        Integer,
        ForeignKey("campaigns.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("round", Integer, nullable=False),
    Column("building_code", Text, nullable=False),
    Column("grid_code", Text, nullable=False),  # of the campaign's snapshot
    Column("community_code", Text, nullable=False),
    Column("households_reached", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("note", Text),
    Column("at", DateTime(timezone=True), nullable=False),  # when the worker was there
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("recorded_by", Text, nullable=False),  # the token's user
    Column("input_lon", Float, nullable=False),  # as given, in input_crs
    Column("input_lat", Float, nullable=False),
    Column("input_crs", Text, nullable=False),
    _geom("POINT"),  # WGS-84
    Column("distance_m", Float, nullable=False),  # from the building (its footprint if any)
    Column("flagged", Boolean, nullable=False),
    Column("flag_reason", Text),
    Column("revisit", Boolean, nullable=False),  # the building was visited before that round
    Column("first_reach", Boolean, nullable=False),  # the first to reach someone there then
    Column("households_added", Integer, nullable=False),  # to the most met there that round
    Column("incident_ref", Text),  # the incident a follow_up visit became
    Column("idempotency_key", Text),
    Column("idempotency_owner", Text, nullable=False, server_default=""),
    Column("request_hash", Text),
    UniqueConstraint(
        "idempotency_owner", "idempotency_key", name="campaign_visits_idempotency_owner_key"
    ),
    _one_of("outcome", VISIT_OUTCOMES, "campaign_visits_outcome"),
    CheckConstraint("households_reached >= 0", name="campaign_visits_households_nonnegative"),
    Index("campaign_visits_building", "campaign_id", "round", "building_code"),
)

# What the visits added, per campaign, round and grid: kept by the visit that adds to it, in
# its transaction (the sums of campaign_visits' columns), so a city's progress reads a few
# thousand rows instead of every visit.
campaign_progress = Table(
    "campaign_progress",
    metadata,
    Column(
        "campaign_id",
        Integer,
        ForeignKey("campaigns.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("round", Integer, primary_key=True),
    Column("grid_code", Text, primary_key=True),
    Column("buildings_done", Integer, nullable=False),
    Column("households_done", Integer, nullable=False),
    Column("visits", Integer, nullable=False),
    Column("revisits", Integer, nullable=False),
    Column("no_one_home", Integer, nullable=False),
    Column("flagged", Integer, nullable=False),
)

# Re-division proposals (geo_service/division): one row per proposal, running until every
# community is divided (progress for a whole city), then done or failed; its parameters, the
# data versions and today's grid versions it was made from (so that applying it can refuse a
# proposal older than the grids), and the figures of the proposal and of today's grids.
DIVISION_STATUSES = ("running", "done", "failed")

division_proposals = Table(
    "division_proposals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("status", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("params", JSONB, nullable=False),
    Column("versions", JSONB, nullable=False, server_default="{}"),
    Column("communities_total", Integer, nullable=False),
    Column("communities_done", Integer, nullable=False, server_default="0"),
    Column("figures", JSONB, nullable=False, server_default="{}"),
    Column("notes", JSONB, nullable=False, server_default="[]"),
    Column("error", Text),
    Column("seconds", Float),
    _one_of("status", DIVISION_STATUSES, "division_proposals_status"),
)

# The grids a proposal would make: unions of street blocks, in the grids import schema (code,
# name, community), with households, buildings, compactness and the households each takes
# from today's grids ({grid code: households}).
division_proposal_grids = Table(
    "division_proposal_grids",
    metadata,
    Column(
        "proposal_id",
        Integer,
        ForeignKey("division_proposals.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("community_code", Text, nullable=False),
    Column("households", Integer, nullable=False),
    Column("buildings", Integer, nullable=False),
    Column("area_m2", Float, nullable=False),
    Column("polsby_popper", Float, nullable=False),
    Column("takes", JSONB, nullable=False, server_default="{}"),
    _geom("MULTIPOLYGON"),
    Index("division_proposal_grids_geom_gist", "geom", postgresql_using="gist"),
)
