"""Settings per concern, each read once from its GEO_ environment variables (or `.env`) when
the app or CLI builds `Settings()`, and passed down: nothing below the app reads the
environment.

Every number from the domain notes is a setting with its default here, never a constant in
code. Each group keeps the variable names documented in the README: `GEO_COVERAGE_TIERS_MIN`
is `settings.coverage.tiers_min`, `GEO_AUTH_REQUIRED` is `settings.auth.required`, and the
groups whose variables share no prefix (server, grids, layers) keep the names whole
(`GEO_LOCATE_TOLERANCE_M` is `settings.grids.locate_tolerance_m`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True
    )


class DatabaseSettings(BaseSettings):
    """Where the data lives: a PostgreSQL URL, or (none given) the embedded cluster."""

    model_config = _group("GEO_")

    url: str | None = Field(
        default=None,
        validation_alias="GEO_DATABASE_URL",
        description="postgresql://… of the database; empty: the embedded cluster in data_dir",
    )
    data_dir: Path = Field(
        default_factory=lambda: find_data_dir(Path.cwd()),
        description="The embedded cluster and the service's files (rejected rows); default: "
        "the nearest .geo-service folder at or above the working folder, else the user's "
        "data folder",
    )
    embedded_port: int = 54329
    pool_size: int = Field(16, description="Pooled connections; at least `threads`")
    read_urls: Annotated[list[str], NoDecode] = Field(
        default=[],
        validation_alias="GEO_DATABASE_READ_URLS",
        description="postgresql://… of hot standbys of the primary (streaming replication), "
        "comma-separated or a JSON list: the read-only doors read there (db/replicas.py)",
    )
    read_max_lag_s: float = Field(
        30.0,
        gt=0,
        validation_alias="GEO_DATABASE_READ_MAX_LAG_S",
        description="A standby replaying further behind the primary than this is skipped",
    )
    read_retry_s: float = Field(
        10.0,
        gt=0,
        validation_alias="GEO_DATABASE_READ_RETRY_S",
        description="A standby that stopped answering is skipped this long, then tried again",
    )

    @field_validator("read_urls", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        """Standby URLs as a JSON list or comma-separated; each must be a PostgreSQL URL."""
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        if not isinstance(value, list):
            return value
        urls = [str(url).strip() for url in value if str(url).strip()]
        for url in urls:
            shown = re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)  # never the password
            if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
                raise ValueError(f"GEO_DATABASE_READ_URLS: {shown!r} is no postgresql:// URL")
            try:
                make_url(url)
            except (ArgumentError, ValueError):
                raise ValueError(f"GEO_DATABASE_READ_URLS: {shown!r} does not parse") from None
        return urls

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """A data folder given relative to the working folder, made absolute once."""
        return value.expanduser().absolute()

    @property
    def embedded(self) -> bool:
        """True when the service manages its own local PostGIS cluster."""
        return not self.url


class ServerSettings(BaseSettings):
    """The HTTP server: where it listens, how much it accepts, how it logs."""

    model_config = _group("GEO_")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, description="Server processes of `geo-service serve`")
    threads: int = Field(8, description="Request handler threads per server process")
    max_body_bytes: int = Field(5 << 20, description="Largest request body accepted")
    max_query_bytes: int = Field(8192, description="Longest query string accepted (else 414)")
    backlog: int = Field(2048, description="Listen backlog of `serve` (connections waiting)")
    keep_alive_s: int = Field(30, description="Idle keep-alive timeout of `serve`, seconds")
    log_json: bool = Field(True, description="Server logs as JSON lines (false: plain text)")
    log_level: str = Field("INFO", description="Level of the service's logs")
    public_rate_per_minute: int = Field(
        30, gt=0, description="Requests a minute one client address may make of public doors"
    )


class GridSettings(BaseSettings):
    """Grids and communities: the codes a deployment accepts, imports, locate and QA."""

    model_config = _group("GEO_")

    # Shapes of codes the deployment accepts (DB11/T 2157: 15-digit grids, 12-digit communities).
    grid_code_pattern: str = r"^\d{15}$"
    community_code_pattern: str = r"^\d{12}$"
    import_tolerance_deg: float = Field(
        1e-7, description="Geometries closer than this (degrees, ~1 cm) count as unchanged"
    )
    locate_tolerance_m: float = Field(
        50.0, description="A point in no grid but this close to one is assigned to it (nearest)"
    )
    locate_max_points: int = Field(10_000, description="Largest POST /api/v1/locate batch")
    qa_min_area_m2: float = Field(1.0, description="Overlaps and gaps smaller than this are noise")
    worker_public_fields: list[Literal["code", "name", "phone"]] = Field(
        default=["name"],
        description="What notice boards (网格信息公示) show of a worker; phones only if listed",
    )
    grid_target_households: int = Field(
        300, gt=0, description="The city's standard of households per grid worker (workload)"
    )
    visit_max_distance_m: float = Field(
        200.0,
        gt=0,
        description="A field visit recorded farther than this from its building "
        "is stored but flagged (GEO_VISIT_MAX_DISTANCE_M)",
    )
    visit_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="How far ahead of the server's clock a visit's `at` may be (a phone's "
        "clock runs fast); beyond it the visit is refused (GEO_VISIT_CLOCK_SKEW_S)",
    )


class GeocodeSettings(BaseSettings):
    """Addresses to places."""

    model_config = _group("GEO_GEOCODE_")

    max_chars: int = Field(200, description="Longest address text geocoding accepts")
    dispatch_confidence: float = Field(
        0.8, description="Address-only incidents are located at or above this confidence"
    )


class AuthSettings(BaseSettings):
    """Roles and tokens."""

    model_config = _group("GEO_AUTH_")

    required: bool = Field(
        True,
        description="false: a request without a token acts as admin (trusted networks only)",
    )
    anonymous: bool = Field(
        True, description="Callers without a token may read public layers and Open311"
    )
    token_days: float = Field(365, description="Default lifetime of a token; 0: never ends")
    cache_s: float = Field(
        5.0, description="Seconds a checked token is trusted before it is looked up again"
    )


class IncidentSettings(BaseSettings):
    """Incidents: intake, dispatch and follow-up (分流督办), and the working calendar their
    deadlines count in (the clock starts at dispatch)."""

    model_config = _group("GEO_INCIDENT_")

    categories_file: Path | None = Field(
        default=None,
        description="TOML table of categories and time limits; default: the packaged one",
    )
    near_boundary_m: float = Field(
        default=20.0, description="Another grid this close to a report flags it near_boundary"
    )
    duplicate_radius_m: float = Field(
        default=50.0, description="Same category this close to an open incident: possible duplicate"
    )
    duplicate_window_h: float = Field(
        default=24.0, description="...and received within this many hours before it"
    )
    description_max_chars: int = Field(default=4000, description="Open311's limit")
    page_max: int = Field(default=1000, description="Largest page of GET /api/v1/incidents")
    timezone: str = Field(default="Asia/Shanghai", description="Of working hours and output")
    work_periods: list[str] = Field(
        default=["08:30-12:00", "14:00-17:30"], description="Working periods of a working day"
    )
    work_weekdays: list[int] = Field(
        default=[1, 2, 3, 4, 5], description="ISO weekdays that are working days (1 = Monday)"
    )
    holidays: list[date] = Field(default=[], description="Public holidays (no working time)")
    makeup_days: list[date] = Field(
        default=[], description="Weekend days worked in exchange for a holiday bridge (调休)"
    )


class Open311Settings(BaseSettings):
    """The Open311 GeoReport v2 door."""

    model_config = _group("GEO_OPEN311_")

    language: Literal["zh", "en"] = Field(
        default="zh", description="Language of service names and notices"
    )
    window_days: int = Field(default=90, description="GET requests: default and largest window")
    max_requests: int = Field(default=1000, description="GET requests: most requests answered")
    public_decimals: int = Field(
        default=3,
        ge=0,
        le=6,
        description="Decimals of lat/long Open311 shows callers who may not read incidents "
        "(3: about 100 m; 2: about 1 km)",
    )


class LayerSettings(BaseSettings):
    """Map layers: OGC API Features and vector tiles."""

    model_config = _group("GEO_")

    layers_dir: Path | None = Field(
        default=None, description="Folder of layer TOML files; default: the packaged layers/"
    )
    features_default_limit: int = Field(default=10, description="Page size of items by default")
    features_max_limit: int = Field(default=10_000, description="Largest `limit` of items")
    tile_cache_mb: int = Field(default=256, description="Server-side tile cache per process, MB")
    tile_max_age_s: int = Field(
        default=0, description="Cache-Control max-age of tiles; 0: clients revalidate (ETag)"
    )
    public_hexbin_max_res: int = Field(
        default=9,
        ge=0,
        le=15,
        description="Finest H3 resolution of hexbins for callers without a token (9: cells of "
        "about 0.1 km², so no hexagon points at a door)",
    )


class MapSettings(BaseSettings):
    """The web map (web_map/, served at /map)."""

    model_config = _group("GEO_MAP_")

    basemap: Literal["osm", "tianditu", "amap", "none"] = Field(
        default="osm",
        description="Basemap of the web map; amap is GCJ-02 (the overlays are shifted to it)",
    )
    tianditu_key: str | None = Field(
        default=None, description="Tianditu token (tk): needed by the tianditu basemap"
    )
    refresh_s: int = Field(
        default=30, ge=5, description="Dispatcher map: seconds between incident refreshes"
    )


class CoverageSettings(BaseSettings):
    """Coverage: the 15-minute life circle (walking distances on the street network)."""

    model_config = _group("GEO_COVERAGE_")

    walk_speed_kmh: float = Field(
        default=4.0, gt=0, description="Walking speed (R5 3.6, osmnx 4.5, Valhalla 5.1 km/h)"
    )
    tiers_min: list[int] = Field(
        default=[5, 10, 15], description="Life-circle tiers in minutes of walking"
    )
    max_access_m: float = Field(
        default=300.0, gt=0, description="Farthest a building or centre may be from a street"
    )
    node_tolerance_m: float = Field(
        default=0.05, gt=0, description="Street end points closer than this are one node"
    )
    split_crossings: bool = Field(
        default=False,
        description="Join streets that cross without a shared vertex (off: bridges, tunnels)",
    )
    isochrone_buffer_m: float = Field(
        default=25.0, gt=0, description="Isochrones: buffer around the reached street segments"
    )
    whatif_max_centers: int = Field(
        default=100, description="Most centres one what-if may add or remove"
    )
    suggest_max_k: int = Field(default=20, description="Most sites one suggest may ask")
    suggest_max_candidates: int = Field(
        default=1500, description="Candidate sites considered by suggest (street nodes or given)"
    )
    suggest_time_limit_s: float = Field(
        default=10.0,
        gt=0,
        description="Time limit of one suggest's search (bound, then HiGHS); past it the best "
        'site set found is kept and the answer says "stopped": "time_limit"',
    )
    suggest_gap: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="Suggest keeps the sites found before its exact stage (greedy, interchange, "
        "Lagrangian) when they are proven within this fraction of the best possible households; "
        "the exact stage then looks for the optimum for 0.5 s at most",
    )


class DivisionSettings(BaseSettings):
    """Re-division proposals: the household range of a grid, the stability weight, the
    regionalisation's effort and tolerances (geo_service/division)."""

    model_config = _group("GEO_DIVISION_")

    target_households: int = Field(300, gt=0, description="Households a proposed grid aims at")
    min_households: int = Field(200, gt=0, description="Fewest households of a proposed grid")
    max_households: int = Field(400, gt=0, description="Most households of a proposed grid")
    stability: float = Field(
        1.0,
        ge=0,
        description="Weight of keeping blocks of one of today's grids together (0: balance "
        "and compactness alone)",
    )
    method: Literal["maxp", "tree"] = Field(
        "maxp", description="maxp (spopt max-p regions) or tree (gerrychain spanning trees)"
    )
    construction_iterations: int = Field(
        2, ge=1, description="max-p: random constructions tried per community (the best kept)"
    )
    processes: int = Field(
        2, ge=1, description="Communities divided at once (worker processes) for a city"
    )
    street_tolerance_m: float = Field(
        2.0, gt=0, description="A grid boundary this close to a street follows it"
    )
    min_shared_m: float = Field(
        1.0, gt=0, description="Blocks sharing less boundary than this do not touch"
    )
    m2_per_household: float = Field(
        100.0,
        gt=0,
        le=100_000,
        description="Floor area (footprint x levels, m²) counted as one household where the "
        "data has no households (OpenStreetMap homes without building:flats)",
    )
    default_levels: int = Field(
        1, ge=1, le=200, description="Levels of a home whose data does not say (no building:levels)"
    )


class Settings(BaseModel):
    """Everything configurable, one group per concern; `Settings()` reads the environment."""

    model_config = ConfigDict(frozen=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    grids: GridSettings = Field(default_factory=GridSettings)
    geocode: GeocodeSettings = Field(default_factory=GeocodeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    open311: Open311Settings = Field(default_factory=Open311Settings)
    layers: LayerSettings = Field(default_factory=LayerSettings)
    map: MapSettings = Field(default_factory=MapSettings)
    coverage: CoverageSettings = Field(default_factory=CoverageSettings)
    division: DivisionSettings = Field(default_factory=DivisionSettings)

    def updated(self, **groups: Mapping[str, Any]) -> Settings:
        """A copy with some values changed, by group and name, checked like the environment's:
        `settings.updated(auth={"required": False}, coverage={"walk_speed_kmh": 3.0})`."""
        changed = {}
        for group, values in groups.items():
            current = getattr(self, group)
            unknown = set(values) - set(type(current).model_fields)
            if unknown:
                raise ValueError(f"settings.{group} has no {', '.join(sorted(unknown))}")
            changed[group] = type(current).model_validate({**current.model_dump(), **values})
        return self.model_copy(update=changed)


PROJECT_FOLDER = ".geo-service"


def find_data_dir(start: Path) -> Path:
    """Where the service keeps its data when GEO_DATA_DIR does not say.

    The nearest `.geo-service` folder at or above `start` (a project folder, as git finds
    `.git`): a command run anywhere inside a project uses that project's database. Else the
    user's own data folder (platformdirs: ~/.local/share/geo-service on Linux), so a command
    run from any other folder finds the same database rather than creating an empty one there.
    """
    start = start.absolute()
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FOLDER
        if candidate.is_dir():
            return candidate
    from platformdirs import user_data_path

    return user_data_path("geo-service", appauthor=False)


def get_settings() -> Settings:
    """Build settings from the environment (called by the CLI and the app factory only)."""
    return Settings()
