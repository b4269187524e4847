"""All SQL of the buildings domain: nearest buildings, buildings of a grid, near a point or
of the whole city matching a text, one building with its grid. Distances are on the
spheroid; lookups use the GiST index, and text matched in part the trigram indexes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Connection, TextClause, text

from geo_service.buildings.address import INDEX_FIELDS, PARSER_VERSION

_POINT = "ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
# The grid of a building follows the locate rules' deterministic choice: the smallest code
# among the grids covering it.
_GRID_OF = """
    LEFT JOIN LATERAL (
        SELECT g.code, g.name, g.community_code FROM grids g
        WHERE ST_Covers(g.geom, b.geom) ORDER BY g.code LIMIT 1
    ) g ON true
"""
# Within a metric radius: a degree box never smaller than the radius lets the GiST index
# work, then the spheroid decides.
_WITHIN = (
    f"ST_DWithin(b.geom, {_POINT}, :radius / (110000.0 * cos(radians(least(abs(:y), 89))))) "
    f"AND ST_DWithin(b.geom::geography, {_POINT}::geography, :radius)"
)
# Optional text filter of a building search (q=): the parts the query gives must agree; an
# estate may be given in part (金山 for 金山花园) or as the community's name; a query with no
# parts matches as a substring of the building's key or name. NULL parameters filter nothing.
_TEXT = """
    LEFT JOIN building_addresses a ON a.code = b.code
    WHERE (CAST(:t_road AS text) IS NULL OR a.road = CAST(:t_road AS text))
      AND (CAST(:t_door AS text) IS NULL OR a.door = CAST(:t_door AS text))
      AND (CAST(:t_building AS text) IS NULL OR a.building = CAST(:t_building AS text))
      AND (CAST(:t_estate AS text) IS NULL OR strpos(a.estate, CAST(:t_estate AS text)) > 0
           OR g.community_code IN (SELECT code FROM communities
                                   WHERE name = CAST(:t_estate AS text)))
      AND (CAST(:t_needle AS text) IS NULL OR strpos(a.key, CAST(:t_needle AS text)) > 0
           OR strpos(coalesce(b.name, ''), CAST(:t_needle AS text)) > 0)
"""
NO_TEXT: Final[Mapping[str, str | None]] = {
    "t_road": None,
    "t_door": None,
    "t_building": None,
    "t_estate": None,
    "t_needle": None,
}
_COLUMNS = """
    b.code, b.address, b.name, b.households, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat,
    g.code AS grid_code, g.name AS grid_name, g.community_code
"""

_NEAREST = text(
    f"""
    SELECT {_COLUMNS}, ST_Distance(b.geom::geography, {_POINT}::geography) AS distance_m
    FROM (
        SELECT * FROM buildings b
        WHERE {_WITHIN}
        ORDER BY b.geom <-> {_POINT} LIMIT :limit
    ) b
    {_GRID_OF}
    ORDER BY distance_m, b.code
    """
)

_IN_GRID = text(
    f"""
    SELECT {_COLUMNS}, NULL::float8 AS distance_m, count(*) OVER () AS total
    FROM grids gr JOIN buildings b ON ST_Covers(gr.geom, b.geom)
    {_GRID_OF}
    {_TEXT}
      AND gr.code = :grid
    ORDER BY b.code
    LIMIT :limit OFFSET :offset
    """
)

# The whole city (q= alone, when the geocoder names no building): the buildings the text's
# parts match, as _TEXT decides (a community: a building in any of its grids), written so
# that each way of matching is its own indexed branch (an estate or the whole text in part:
# the trigram indexes of migration 0004_building_search; a community: its grids, then the
# buildings' GiST index; a road: (road, door)); only the parts the text gives are tested, so
# the planner sees the real conditions. Ranked: the part named exactly first (瑞景雅居
# before 瑞景雅居二期), then the address most like the text, then by road, door, estate and
# building number in number order. The grid of a building is looked up for the page only.
# On the `city` register (119,871 buildings): 10-250 ms, against up to 2.4 s when the grid
# of every building was looked up to filter by community.
_CITY_ADDRESS = {
    "t_road": "a.road = :t_road",
    "t_door": "a.door = :t_door",
    "t_building": "a.building = :t_building",
}
_CITY_RANK = """
    ORDER BY coalesce(a.estate = CAST(:t_estate AS text)
                      OR a.road = CAST(:t_road AS text), false) DESC,
             similarity(a.key, :key) DESC, a.road, length(a.door), a.door, a.estate,
             length(a.building), a.building, a.code
"""
_CITY_PAGE = f"""
    , ranked AS (
        SELECT a.code, count(*) OVER () AS total, row_number() OVER ({_CITY_RANK}) AS place
        FROM matched m JOIN building_addresses a ON a.code = m.code
        {_CITY_RANK}
        LIMIT :limit OFFSET :offset
    )
    SELECT {_COLUMNS}, NULL::float8 AS distance_m, r.total
    FROM ranked r JOIN buildings b ON b.code = r.code
    {_GRID_OF}
    ORDER BY r.place
"""


def _like(value: str) -> str:
    """A LIKE pattern matching `value` anywhere (its % _ and \\ taken literally)."""
    return "%" + re.sub(r"([%_\\])", r"\\\1", value) + "%"


def _city_statement(
    words: Mapping[str, str | None], key: str, limit: int, offset: int
) -> tuple[TextClause, dict[str, Any]]:
    """The city search for the parts `words` gives (see _CITY_PAGE), and its parameters."""
    given = [_CITY_ADDRESS[k] for k in _CITY_ADDRESS if words.get(k) is not None]
    needle, estate = words.get("t_needle"), words.get("t_estate")
    if needle is not None:
        branches = [
            "SELECT a.code FROM building_addresses a WHERE a.key LIKE :needle",
            "SELECT b.code FROM buildings b WHERE b.name LIKE :needle",
        ]
    else:
        where = [*given, *(["a.estate LIKE :estate"] if estate is not None else [])]
        branches = [
            "SELECT a.code FROM building_addresses a WHERE " + " AND ".join(where or ["false"])
        ]
        if estate is not None:  # or the community of that name
            branches.append(
                "SELECT a.code FROM communities c "
                "JOIN grids gr ON gr.community_code = c.code "
                "JOIN buildings b ON ST_Covers(gr.geom, b.geom) "
                "JOIN building_addresses a ON a.code = b.code "
                "WHERE " + " AND ".join(["c.name = :t_estate", *given])
            )
    params = {
        **NO_TEXT,
        **words,
        "key": key,
        "needle": None if needle is None else _like(needle),
        "estate": None if estate is None else _like(estate),
        "limit": limit,
        "offset": offset,
    }
    return text("WITH matched AS (" + " UNION ".join(branches) + ")" + _CITY_PAGE), params


_NEAR = text(
    f"""
    SELECT {_COLUMNS}, ST_Distance(b.geom::geography, {_POINT}::geography) AS distance_m,
           count(*) OVER () AS total
    FROM buildings b
    {_GRID_OF}
    {_TEXT}
      AND {_WITHIN}
      AND (CAST(:grid AS text) IS NULL OR g.code = :grid)
    ORDER BY distance_m, b.code
    LIMIT :limit OFFSET :offset
    """
)

_ONE = text(
    f"""
    SELECT {_COLUMNS}, ST_AsGeoJSON(b.footprint, 7)::json AS footprint, c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name, 'phone', w.phone)
                            ORDER BY w.code)
            FROM grid_workers w WHERE w.grid_code = g.code) AS workers
    FROM buildings b
    {_GRID_OF}
    LEFT JOIN communities c ON c.code = g.community_code
    WHERE b.code = :code
    """
)

_GRID_EXISTS = text("SELECT EXISTS (SELECT 1 FROM grids WHERE code = :grid)")


def nearest(
    conn: Connection, x: float, y: float, radius_m: float, limit: int
) -> list[dict[str, Any]]:
    """The `limit` buildings nearest to a WGS-84 point, within `radius_m`."""
    rows = conn.execute(_NEAREST, {"x": x, "y": y, "radius": radius_m, "limit": limit})
    return [dict(r._mapping) for r in rows]


def in_grid(
    conn: Connection, grid: str, limit: int, offset: int, words: Mapping[str, str | None] = NO_TEXT
) -> list[dict[str, Any]]:
    """A page of the buildings of a grid, by code (each row carries the `total`); `words`
    filters by text (t_road, t_door, t_building, t_estate, t_needle)."""
    params = {"grid": grid, "limit": limit, "offset": offset, **words}
    rows = conn.execute(_IN_GRID, params)
    return [dict(r._mapping) for r in rows]


def in_city(
    conn: Connection, limit: int, offset: int, words: Mapping[str, str | None], key: str
) -> list[dict[str, Any]]:
    """A page of the city's buildings matching `words` (each row carries the `total`), best
    first: `key` is the normalised text, for ranking."""
    statement, params = _city_statement(words, key, limit, offset)
    return [dict(r._mapping) for r in conn.execute(statement, params)]


def near(
    conn: Connection,
    x: float,
    y: float,
    radius_m: float,
    grid: str | None,
    limit: int,
    offset: int,
    words: Mapping[str, str | None] = NO_TEXT,
) -> list[dict[str, Any]]:
    """A page of the buildings within `radius_m` of a point (optionally of one grid, and
    matching `words`), nearest first (each row carries the `total`)."""
    params = {
        "x": x, "y": y, "radius": radius_m, "grid": grid, "limit": limit, "offset": offset,
        **words,
    }  # fmt: skip
    return [dict(r._mapping) for r in conn.execute(_NEAR, params)]


def one(conn: Connection, code: str) -> dict[str, Any] | None:
    """One building with its footprint, grid, community and the grid's workers."""
    row = conn.execute(_ONE, {"code": code}).first()
    return None if row is None else dict(row._mapping)


def grid_exists(conn: Connection, grid: str) -> bool:
    """True when a grid has this code."""
    return bool(conn.execute(_GRID_EXISTS, {"grid": grid}).scalar_one())


# ---------------------------------------------------------------- the address index

_OUTDATED = text(
    "DELETE FROM building_addresses a USING buildings b "
    "WHERE a.code = b.code AND a.address IS DISTINCT FROM b.address"
)
_UNINDEXED = text(
    "SELECT b.code, b.address FROM buildings b "
    "WHERE NOT EXISTS (SELECT 1 FROM building_addresses a WHERE a.code = b.code)"
)
_NAMES = (
    "DELETE FROM address_names",
    "INSERT INTO address_names (kind, name) "
    "SELECT DISTINCT 'road', road FROM building_addresses WHERE road IS NOT NULL "
    "UNION SELECT DISTINCT 'estate', estate FROM building_addresses WHERE estate IS NOT NULL",
)
_ADDRESS_COLUMNS = ("code", "address", *INDEX_FIELDS)
# COPY's text format: backslash, tab and line breaks escaped; NULL is \N.
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


_INDEX_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('building_addresses'))")
# The address index records the buildings version it was built from, and the version of the
# parser that built it, as rows of dataset_versions; it is stale when either differs.
_INDEX_VERSIONS = text(
    """
    SELECT coalesce((SELECT version FROM dataset_versions WHERE kind = 'buildings'), 0),
           (SELECT version FROM dataset_versions WHERE kind = 'address_index'),
           (SELECT version FROM dataset_versions WHERE kind = 'address_parser')
    """
)
_SET_INDEX_VERSION = text(
    "INSERT INTO dataset_versions (kind, version) VALUES ('address_index', :v), "
    "('address_parser', :p) "
    "ON CONFLICT (kind) DO UPDATE SET version = EXCLUDED.version, updated_at = now()"
)


def address_index_stale(conn: Connection) -> tuple[bool, int, bool]:
    """(stale?, the buildings version the index must match, parsed by another parser?)."""
    buildings, index, parser = conn.execute(_INDEX_VERSIONS).one()
    reparse = parser != PARSER_VERSION
    return index != buildings or reparse, int(buildings), reparse


def lock_address_index(conn: Connection) -> None:
    """One refresh at a time (held to the end of the transaction)."""
    conn.execute(_INDEX_LOCK)


def set_address_index_version(conn: Connection, version: int) -> None:
    """Record that the index now matches this buildings version, parsed by this parser."""
    conn.execute(_SET_INDEX_VERSION, {"v": version, "p": PARSER_VERSION})


def forget_addresses(conn: Connection) -> None:
    """Empty the address index (another parser made it: every address is parsed again)."""
    conn.execute(text("DELETE FROM building_addresses"))


def unindexed_addresses(conn: Connection) -> list[tuple[str, str]]:
    """(code, address) of the buildings the address index lacks; rows of buildings whose
    address changed are dropped from the index first, so they are among them."""
    conn.execute(_OUTDATED)
    return [(r.code, r.address) for r in conn.execute(_UNINDEXED)]


def write_addresses(conn: Connection, rows: list[tuple[str | None, ...]]) -> None:
    """Add index rows (in _ADDRESS_COLUMNS order) and refresh the table of names."""
    if rows:
        # The parts are pieces of the address: when no address holds a character COPY would
        # read as syntax (the usual case), nothing needs escaping.
        plain = not _COPY_SPECIAL.search("".join(str(row[1]) for row in rows))
        lines = "".join(
            "\t".join(
                "\\N" if v is None else v if plain else v.translate(_COPY_ESCAPES) for v in row
            )
            + "\n"
            for row in rows
        )
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor().copy(
            f"COPY building_addresses ({', '.join(_ADDRESS_COLUMNS)}) FROM STDIN"
        ) as copy:
            copy.write(lines.encode())
    for statement in _NAMES:
        conn.execute(text(statement))
    if len(rows) > 1000:
        conn.execute(text("ANALYZE building_addresses"))
        conn.execute(text("ANALYZE address_names"))


# Candidates for one parsed query: every branch is an index lookup with its own limit, so a
# query costs a handful of index probes however large the register. NULL parameters (a part
# the query does not give) match nothing.
_CANDIDATES = text(
    """
    WITH hits AS (
        (SELECT a.code, NULL::text AS community FROM building_addresses a
         WHERE a.key = CAST(:key AS text) LIMIT 20)
        UNION ALL
        (SELECT a.code, NULL FROM building_addresses a
         WHERE a.road = CAST(:road AS text) AND a.door = CAST(:door AS text)
           AND a.building = CAST(:building AS text) LIMIT 20)
        UNION ALL
        (SELECT a.code, NULL FROM building_addresses a
         WHERE a.estate = CAST(:estate AS text) AND a.building = CAST(:building AS text)
         LIMIT 50)
        UNION ALL
        (SELECT a.code, NULL FROM building_addresses a
         WHERE a.road = CAST(:road AS text) AND a.building = CAST(:building AS text) LIMIT 50)
        UNION ALL
        (SELECT a.code, NULL FROM address_names n
         JOIN building_addresses a ON a.estate = n.name
         WHERE n.kind = 'estate' AND n.name % CAST(:fuzzy_estate AS text)
           AND a.building = CAST(:building AS text)
         ORDER BY similarity(n.name, CAST(:fuzzy_estate AS text)) DESC LIMIT 20)
        UNION ALL
        (SELECT a.code, NULL FROM address_names n
         JOIN building_addresses a ON a.road = n.name
         WHERE n.kind = 'road' AND n.name % CAST(:fuzzy_road AS text)
           AND a.door = CAST(:door AS text) AND a.building = CAST(:building AS text)
         ORDER BY similarity(n.name, CAST(:fuzzy_road AS text)) DESC LIMIT 20)
        UNION ALL
        (SELECT a.code, c.name FROM communities c
         JOIN buildings b ON ST_Covers(c.geom, b.geom)
         JOIN building_addresses a ON a.code = b.code
         WHERE c.name = CAST(:estate AS text) AND a.building = CAST(:building AS text)
         LIMIT 50)
    )
    SELECT DISTINCT ON (a.code) a.code, a.key, a.road, a.door, a.estate, a.building,
           h.community, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat, 1 AS count
    FROM hits h JOIN building_addresses a ON a.code = h.code JOIN buildings b ON b.code = a.code
    ORDER BY a.code, h.community NULLS LAST
    """
)

# Points standing for more than one building: a door number on a road, and an estate (per
# road it lies on), each the centroid of its buildings.
_PARTIALS = text(
    """
    SELECT NULL::text AS code, a.road || a.door || '号' AS key, a.road, a.door,
           NULL::text AS estate, NULL::text AS building, NULL::text AS community,
           ST_X(ST_Centroid(ST_Collect(b.geom))) AS lon,
           ST_Y(ST_Centroid(ST_Collect(b.geom))) AS lat, count(*) AS count,
           CASE WHEN count(*) = 1 THEN min(a.code) END AS only_code,
           CASE WHEN count(*) = 1 THEN min(a.key) END AS only_key
    FROM building_addresses a JOIN buildings b ON b.code = a.code
    WHERE a.road = CAST(:road AS text) AND a.door = CAST(:door AS text)
    GROUP BY a.road, a.door
    UNION ALL
    SELECT NULL, coalesce(a.road, '') || a.estate, a.road, NULL, a.estate, NULL, NULL,
           ST_X(ST_Centroid(ST_Collect(b.geom))), ST_Y(ST_Centroid(ST_Collect(b.geom))),
           count(*), NULL, NULL
    FROM building_addresses a JOIN buildings b ON b.code = a.code
    WHERE a.estate = CAST(:estate AS text)
      AND (CAST(:road AS text) IS NULL OR a.road = CAST(:road AS text))
    GROUP BY a.estate, a.road
    """
)

_KNOWN_NAMES = text(
    """
    SELECT EXISTS (SELECT 1 FROM address_names
                   WHERE kind = 'road' AND name = CAST(:road AS text)) AS road,
           EXISTS (SELECT 1 FROM address_names
                   WHERE kind = 'estate' AND name = CAST(:estate AS text))
           OR EXISTS (SELECT 1 FROM communities WHERE name = CAST(:estate AS text)) AS estate
    """
)

_DETAILS = text(
    f"""
    SELECT {_COLUMNS}, c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name) ORDER BY w.code)
            FROM grid_workers w WHERE w.grid_code = g.code) AS workers
    FROM buildings b
    {_GRID_OF}
    LEFT JOIN communities c ON c.code = g.community_code
    WHERE b.code = ANY(:codes)
    """
)


def known_names(conn: Connection, road: str | None, estate: str | None) -> tuple[bool, bool]:
    """Whether the road and the estate (or community) name occur in the register."""
    row = conn.execute(_KNOWN_NAMES, {"road": road, "estate": estate}).one()
    return bool(row.road), bool(row.estate)


def candidates(conn: Connection, parts: dict[str, str | None]) -> list[dict[str, Any]]:
    """Buildings and partial points that may answer a parsed query (parts: key, road, door,
    estate, building; fuzzy_road and fuzzy_estate: the names to match as look-alikes, None
    when the name is a real one of the register and needs no look-alike search)."""
    rows = [dict(r._mapping) for r in conn.execute(_CANDIDATES, parts)]
    if (parts["road"] and parts["door"]) or parts["estate"]:
        rows += [dict(r._mapping) for r in conn.execute(_PARTIALS, parts)]
    return rows


def details(conn: Connection, codes: list[str]) -> dict[str, dict[str, Any]]:
    """Address, grid, community and workers of these buildings, by code."""
    return {r.code: dict(r._mapping) for r in conn.execute(_DETAILS, {"codes": codes})}


# -- where named streets meet (intersections) ---------------------------------------------
_CROSSINGS_VERSIONS = text(
    """
    SELECT coalesce((SELECT version FROM dataset_versions WHERE kind = 'roads'), 0),
           (SELECT version FROM dataset_versions WHERE kind = 'street_crossings'),
           (SELECT version FROM dataset_versions WHERE kind = 'address_parser')
    """
)
# Edges of two differently named streets that touch or cross, their meeting points merged
# within 40 m per pair of names (a dual carriageway crossing another meets it several times).
_MEETINGS = text(
    """
    WITH hits AS (
        SELECT a.name AS a, b.name AS b,
               (ST_Dump(ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 1))).geom AS p
        FROM street_edges a JOIN street_edges b
          ON a.name < b.name AND a.geom && b.geom AND ST_Intersects(a.geom, b.geom)
        WHERE a.name IS NOT NULL AND b.name IS NOT NULL
    ), clustered AS (
        SELECT a, b, p, ST_ClusterDBSCAN(p, 0.0004, 1) OVER (PARTITION BY a, b) AS k FROM hits
    )
    SELECT a, b, ST_X(ST_Centroid(ST_Collect(p))) AS lon, ST_Y(ST_Centroid(ST_Collect(p))) AS lat
    FROM clustered GROUP BY a, b, k
    """
)


def crossings_stale(conn: Connection) -> tuple[bool, int]:
    """(stale?, the roads version the crossings must match)."""
    roads, crossings, parser = conn.execute(_CROSSINGS_VERSIONS).one()
    return crossings != roads or parser != PARSER_VERSION, int(roads)


def street_meetings(conn: Connection) -> list[tuple[str, str, float, float]]:
    """(name, name, lon, lat) of each place two named streets meet, names as stored."""
    return [tuple(r) for r in conn.execute(_MEETINGS)]  # type: ignore[misc]


def write_crossings(
    conn: Connection, rows: list[tuple[str, str, float, float]], version: int
) -> None:
    """Replace the crossings (names as parsed) and record the roads version they match."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('street_crossings'))"))
    conn.execute(text("DELETE FROM street_crossings"))
    if rows:
        conn.execute(
            text(
                "INSERT INTO street_crossings (road_a, road_b, geom) "
                "SELECT a, b, ST_SetSRID(ST_MakePoint(x, y), 4326) FROM unnest("
                "CAST(:a AS text[]), CAST(:b AS text[]), CAST(:x AS float8[]), "
                "CAST(:y AS float8[])) AS u(a, b, x, y)"
            ),
            {
                "a": [r[0] for r in rows],
                "b": [r[1] for r in rows],
                "x": [r[2] for r in rows],
                "y": [r[3] for r in rows],
            },
        )
    conn.execute(
        text(
            "INSERT INTO dataset_versions (kind, version) VALUES ('street_crossings', :v) "
            "ON CONFLICT (kind) DO UPDATE SET version = :v, updated_at = now()"
        ),
        {"v": version},
    )


def crossings(conn: Connection, a: str, b: str) -> list[tuple[float, float]]:
    """Where two streets (names as parsed) meet."""
    first, second = sorted((a, b))
    rows = conn.execute(
        text(
            "SELECT ST_X(geom), ST_Y(geom) FROM street_crossings "
            "WHERE road_a = :a AND road_b = :b ORDER BY ST_X(geom), ST_Y(geom)"
        ),
        {"a": first, "b": second},
    )
    return [(float(x), float(y)) for x, y in rows]


def streets_known(conn: Connection, names: list[str]) -> set[str]:
    """Those of the names (as parsed) that a street of the crossings or the register has."""
    rows = conn.execute(
        text(
            "SELECT n FROM unnest(CAST(:n AS text[])) AS n WHERE "
            "EXISTS (SELECT 1 FROM street_crossings WHERE road_a = n OR road_b = n) "
            "OR EXISTS (SELECT 1 FROM address_names WHERE kind = 'road' AND name = n)"
        ),
        {"n": names},
    )
    return {r[0] for r in rows}


_PLACE_AT = text(
    """
    SELECT g.code AS grid_code, g.name AS grid_name, g.community_code,
           c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name) ORDER BY w.code)
            FROM grid_workers w WHERE w.grid_code = g.code) AS workers
    FROM grids g LEFT JOIN communities c ON c.code = g.community_code
    WHERE ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))
    ORDER BY g.code LIMIT 1
    """
)


def grid_at(conn: Connection, lon: float, lat: float) -> dict[str, Any]:
    """The grid, community and workers (code and name: no phones) of a point, or {}."""
    row = conn.execute(_PLACE_AT, {"x": lon, "y": lat}).first()
    return dict(row._mapping) if row else {}


# -- named places: imported places (pois), neighbourhood centres, communities ------------
# A name compared the way the address normaliser spells text: NFKC, no spaces or punctuation,
# Latin letters upper-cased (Kampin palvelukeskus -> KAMPINPALVELUKESKUS).
_PLACE_KEY = "upper(regexp_replace(normalize(name, NFKC), '[[:space:][:punct:]]', '', 'g'))"
_PLACES = text(
    f"""
    WITH named AS (
        SELECT 'poi' AS source, code, name, kind, geom FROM places
        UNION ALL SELECT 'center', code, name, coalesce(kind, 'center'), geom FROM centers
        UNION ALL SELECT 'community', code, name, 'community', ST_PointOnSurface(geom)
        FROM communities
    ), keyed AS (
        SELECT *, {_PLACE_KEY} AS key FROM named
    )
    SELECT source, code, name, kind, key, ST_X(geom) AS lon, ST_Y(geom) AS lat
    FROM keyed
    WHERE key = CAST(:q AS text) OR key % CAST(:q AS text)
    ORDER BY key = CAST(:q AS text) DESC, similarity(key, CAST(:q AS text)) DESC, code
    LIMIT 10
    """
)


def places_named(conn: Connection, name: str) -> list[dict[str, Any]]:
    """Places whose name (spelt as the normaliser spells it) is `name` or looks like it
    (pg_trgm similarity), best first."""
    return [dict(r._mapping) for r in conn.execute(_PLACES, {"q": name})]
