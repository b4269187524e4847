"""Building lookups for grid workers and dispatchers: forward and reverse geocoding, the
buildings of a grid or near a point, one building with its grid and workers; and the address
index forward geocoding reads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from typing import Any

from rapidfuzz.fuzz import ratio
from sqlalchemy import Connection, Engine

from geo_service.buildings import store
from geo_service.buildings.address import ParsedAddress, index_row, index_rows, normalize, parse
from geo_service.buildings.geocode import NAME_ALIKE, Entry, Match, Query, rank
from geo_service.coords import parse_point
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids.locate import locate_points
from geo_service.settings import Settings


def reverse(
    engine: Engine,
    settings: Settings,
    lon: Any,
    lat: Any,
    crs: str | None,
    radius_m: float,
    limit: int,
) -> dict[str, Any]:
    """Where a point is (the locate rules) and the buildings nearest to it."""
    input_crs = parse_input_crs(crs)
    with reading(engine) as conn:
        [where] = locate_points(conn, [lon], [lat], input_crs, settings.grids.locate_tolerance_m)
        if where.status == "invalid":
            raise InvalidInput(where.message or "invalid coordinates")
        assert where.lon is not None and where.lat is not None
        buildings = store.nearest(conn, where.lon, where.lat, radius_m, limit)
    return {"location": where.to_dict(), "buildings": [_rounded(b) for b in buildings]}


def search(
    engine: Engine,
    settings: Settings,
    q: str | None,
    grid: str | None,
    near: str | None,
    crs: str | None,
    radius_m: float,
    limit: int,
    offset: int,
    *,
    writer: Engine | None = None,
) -> dict[str, Any]:
    """A page of buildings: of a grid and/or near a point (`near` = "lon,lat"), optionally
    matching a text `q` (金山花园3栋, 3栋, 锦绣); `q` alone searches the whole city
    (`_search_city`). A text that matches no building says so in `message`. `writer`: as
    for `geocode`."""
    if grid is None and near is None and not q:
        raise InvalidInput("give q=TEXT, grid=CODE and/or near=lon,lat")
    if q is not None:
        q = q.strip()
        if not q or len(q) > settings.geocode.max_chars:
            raise InvalidInput(f"q must be 1 to {settings.geocode.max_chars} characters")
        if grid is None and near is None:
            return _search_city(engine, settings, q, limit, offset, writer)
        refresh_indexes(engine, writer)
    with reading(engine) as conn:
        if grid is not None and not store.grid_exists(conn, grid):
            raise NotFound(f"unknown grid code {grid!r}")
        if near is None:
            assert grid is not None
            rows = _matching(
                lambda words, n, skip: store.in_grid(conn, grid, n, skip, words), q, limit, offset
            )
        else:
            x, y = _point(near, crs)
            rows = _matching(
                lambda words, n, skip: store.near(conn, x, y, radius_m, grid, n, skip, words),
                q,
                limit,
                offset,
            )
    return _page(rows, limit, offset, q)


Rows = list[dict[str, Any]]


def _matching(
    fetch: Callable[[Mapping[str, str | None], int, int], Rows],
    q: str | None,
    limit: int,
    offset: int,
) -> Rows:
    """A page of a search by the parts the text gives (`_words`); when those match nothing,
    by the whole text as a substring of the address or name: 梅园 names no estate, but
    梅园七路18号 holds it. `fetch(words, limit, offset)` runs the search."""
    if q is None:
        return fetch(store.NO_TEXT, limit, offset)
    words = _words(q)
    rows = fetch(words, limit, offset)
    if rows or words["t_needle"] is not None or (offset and fetch(words, 1, 0)):
        return rows
    return fetch({**store.NO_TEXT, "t_needle": normalize(q) or q}, limit, offset)


def _words(q: str) -> dict[str, str | None]:
    """The text filter of a search within a grid or radius: the parts the text gives, or the
    whole normalised text as a substring when it names no part."""
    p = parse(q)
    parts = {"t_road": p.road, "t_door": p.door, "t_building": p.building, "t_estate": p.estate}
    if any(parts.values()):
        return {**parts, "t_needle": None}
    return {**parts, "t_needle": normalize(q) or q}


_SEARCH_CITY_MAX = 50


def _search_city(
    engine: Engine, settings: Settings, q: str, limit: int, offset: int, writer: Engine | None
) -> dict[str, Any]:
    """A city-wide text search: the buildings the geocoder names, best first; when it names
    none (an estate, a road, a community or a building number alone: 锦绣名邸, 皖江街,
    石城社区, 3栋), every building the text's parts match, as within a grid (`_matching`),
    ranked by store.in_city. A text that matches nothing says so in `message`."""
    answer = geocode(engine, settings, q, _SEARCH_CITY_MAX, writer=writer)
    found = [c for c in answer["candidates"] if c["building_code"]]
    if found:
        items = [
            {
                "code": c["building_code"],
                "address": c["address"],
                "name": c["name"],
                "households": c["households"],
                "lon": c["lon"],
                "lat": c["lat"],
                "grid_code": c["grid_code"],
                "grid_name": c["grid_name"],
                "community_code": c["community_code"],
                "distance_m": None,
                "match_type": c["match_type"],
                "confidence": c["confidence"],
            }
            for c in found[offset : offset + limit]
        ]
        return {"total": len(found), "limit": limit, "offset": offset, "items": items}
    key = normalize(q) or q
    with reading(engine) as conn:
        rows = _matching(
            lambda words, n, skip: store.in_city(conn, n, skip, words, key), q, limit, offset
        )
    return _page(rows, limit, offset, q)


def _page(rows: Rows, limit: int, offset: int, q: str | None) -> dict[str, Any]:
    """The answer of a search from its rows (each carrying the `total`)."""
    total = int(rows[0]["total"]) if rows else 0
    for row in rows:
        row.pop("total", None)
    page: dict[str, Any] = {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_rounded(r) for r in rows],
    }
    if q is not None and total == 0:
        page["message"] = f"no building matches {q!r}"
    return page


def building(engine: Engine, code: str) -> dict[str, Any]:
    """One building: address, households, footprint, grid, community and the grid's workers,
    and its walk to the nearest centre (`coverage`, null until coverage is computed)."""
    from geo_service.coverage.store import building_coverage

    with reading(engine) as conn:
        row = store.one(conn, code)
        if row is not None:
            row["coverage"] = building_coverage(conn, code)
    if row is None:
        raise NotFound(f"unknown building code {code!r}")
    row["workers"] = row["workers"] or []
    return row


def _point(near: str, crs: str | None) -> tuple[float, float]:
    parts = near.split(",")
    if len(parts) != 2:
        raise InvalidInput(f"near={near!r} is not lon,lat")
    return parse_point(parts[0], parts[1], parse_input_crs(crs))


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("distance_m") is not None:
        row["distance_m"] = round(row["distance_m"], 2)
    return row


# ---------------------------------------------------------------- forward geocoding


def geocode(
    engine: Engine, settings: Settings, q: str, limit: int, *, writer: Engine | None = None
) -> dict[str, Any]:
    """Ranked candidates for an address text: building, grid, community, confidence.
    `writer`: the primary, when `engine` reads from a standby (`refresh_indexes`)."""
    refresh_indexes(engine, writer)
    with reading(engine) as conn:
        return geocode_on(conn, settings, q, limit)


def refresh_indexes(engine: Engine, writer: Engine | None = None) -> None:
    """The address index and the streets' crossings brought up to date before a search reads
    them from `engine`. When `engine` is a read-only standby, `writer` (the primary) refreshes
    them if the standby finds them stale (the standby shows it once it has replayed it)."""
    if writer is None or writer is engine:
        refresh_address_index(engine)
        refresh_crossings(engine)
        return
    with reading(engine) as conn:
        stale = store.address_index_stale(conn)[0] or store.crossings_stale(conn)[0]
    if stale:
        refresh_address_index(writer)
        refresh_crossings(writer)


def geocode_on(conn: Connection, settings: Settings, q: str, limit: int) -> dict[str, Any]:
    """`geocode` on an open connection (incident intake geocodes inside its transaction);
    the caller has refreshed the address index."""
    text_ = q.strip()
    if not text_:
        raise InvalidInput("q is empty: give an address such as 长江西路18号金山花园3栋")
    if len(text_) > settings.geocode.max_chars:
        raise InvalidInput(
            f"q is {len(text_)} characters long; at most {settings.geocode.max_chars} accepted"
        )
    parsed = parse(text_)
    answer: dict[str, Any] = {"query": q, "parsed": _parts_dict(parsed), "candidates": []}
    if parsed.road and parsed.cross:
        cross = parsed.cross
        said = normalize(text_)
        for word in "和与同跟及":  # 人民一路和平九路…: 和 may begin the second street's name
            if f"{parsed.road}{word}{cross}" in said and not store.crossings(
                conn, parsed.road, cross
            ):
                if store.crossings(conn, parsed.road, word + cross):
                    cross = word + cross
                break
        return _intersection(conn, answer, parsed.road, cross, limit)
    probe = Query(parsed, known_road=False, known_estate=False)
    if not probe.locatable() and parsed.rest and not parsed.building:
        # a name without an estate word (书香门第附近): an estate or community of the register?
        _, estate = store.known_names(conn, None, parsed.rest)
        if estate:
            parsed = replace(parsed, estate=parsed.rest, rest="")
            answer["parsed"] = _parts_dict(parsed)
            probe = Query(parsed, known_road=False, known_estate=False)
    place = _place_name(parsed)
    if place and (not probe.locatable() or _unknown_estate(conn, parsed)):
        found = _places(conn, place, limit)
        if found:
            answer["candidates"] = found
            return answer
    if not probe.locatable():
        answer["message"] = (
            "no road, estate or community (nor a named place) recognised in the query"
        )
        return answer
    known_road, known_estate = store.known_names(conn, parsed.road, parsed.estate)
    query = Query(parsed, known_road=known_road, known_estate=known_estate)
    parts = {
        "key": query.key,
        "road": parsed.road,
        "door": parsed.door,
        "estate": parsed.estate,
        "building": parsed.building,
        # A name the register knows is never taken for a typo (geocode.py), so its
        # look-alikes need not be searched: the costliest lookups are skipped.
        "fuzzy_road": None if known_road else parsed.road,
        "fuzzy_estate": None if known_estate else parsed.estate,
    }
    entries = [Entry(**row) for row in store.candidates(conn, parts)]
    matches = rank(query, entries, limit)
    if not matches and place:  # 石城社区门口: a community, not an estate of the register
        found = _places(conn, place, limit)
        if found:
            answer["candidates"] = found
            return answer
    if not matches:
        answer["message"] = "no building or door in the register matches the query"
        return answer
    more = store.details(conn, [m.entry.code for m in matches if m.entry.code])
    answer["candidates"] = [
        _candidate(conn, m, more.get(m.entry.code or ""), parsed.place) for m in matches
    ]
    return answer


def _intersection(
    conn: Connection, answer: dict[str, Any], road: str, cross: str, limit: int
) -> dict[str, Any]:
    """Where two streets meet, from the street network: one candidate per meeting point
    (their confidence shared), none when they never meet."""
    answer["parsed"]["cross"] = cross
    points = store.crossings(conn, road, cross)
    if not points:
        known = store.streets_known(conn, [road, cross])
        missing = [r for r in (road, cross) if r not in known]
        answer["message"] = (
            f"no street named {missing[0]} in the street network"
            if missing
            else f"{road} and {cross} do not meet"
        )
        return answer
    confidence = INTERSECTION_CONFIDENCE / len(points)
    answer["candidates"] = [
        {
            "match_type": "intersection",
            "confidence": round(confidence, 3),
            "matched": ["road", "cross"],
            "building_code": None,
            "address": f"{road}与{cross}交叉口",
            "lon": round(lon, 7),
            "lat": round(lat, 7),
            **_place(conn, lon, lat),
        }
        for lon, lat in points[:limit]
    ]
    return answer


# Words residents add to a community's or a place's name (石城社区居委会 is 石城社区).
_PLACE_SUFFIXES = ("居民委员会", "居委会", "社区服务中心", "服务中心", "服务站", "办公室")
PLACE_CONFIDENCE = 0.9  # a place named exactly; a look-alike's is its similarity times this


def _place_name(parsed: ParsedAddress) -> str | None:
    """The name a query gives when it names a place rather than an address: all it holds
    besides the administrative area and a place word (向阳邻里中心, 石城社区居委会)."""
    if parsed.road or parsed.door or parsed.building:
        return None
    name = (parsed.estate or "") + parsed.rest
    for suffix in _PLACE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            name = name[: -len(suffix)]
            break
    return name if len(name) >= 2 else None


def _unknown_estate(conn: Connection, parsed: ParsedAddress) -> bool:
    """True when the query's estate is no estate or community of the register."""
    return bool(parsed.estate) and not store.known_names(conn, None, parsed.estate)[1]


def _places(conn: Connection, name: str, limit: int) -> list[dict[str, Any]]:
    """Named places (imported places, centres, communities) called `name` or like it: each a
    candidate (match_type place), namesakes sharing the confidence."""
    found = store.places_named(conn, name)
    exact = [f for f in found if f["key"] == name]
    alike = [(f, ratio(name, f["key"]) / 100.0) for f in found]
    chosen = [(f, 1.0) for f in exact] or sorted(
        [(f, r) for f, r in alike if r >= NAME_ALIKE], key=lambda fr: -fr[1]
    )
    out = []
    for f, similar in chosen[:limit]:
        # a look-alike is never sure: at most PLACE_CONFIDENCE * 0.85 (< 0.8)
        sure = PLACE_CONFIDENCE if exact else PLACE_CONFIDENCE * 0.85 * similar
        out.append(
            {
                "match_type": "place",
                "confidence": round(sure / (len(exact) if exact else 1), 3),
                "matched": ["name"],
                "building_code": None,
                "address": f["name"],
                "place_kind": f["kind"],
                "place_code": f["code"],
                "lon": round(f["lon"], 7),
                "lat": round(f["lat"], 7),
                **_place(conn, f["lon"], f["lat"]),
            }
        )
    return out


# One meeting point of two named streets: as sure as a door; several share it.
INTERSECTION_CONFIDENCE = 0.95


def _place(conn: Connection, lon: float, lat: float) -> dict[str, Any]:
    """The grid, community and workers of a point (nulls outside every grid)."""
    found = store.grid_at(conn, lon, lat)
    return {
        "grid_code": found.get("grid_code"),
        "grid_name": found.get("grid_name"),
        "community_code": found.get("community_code"),
        "community_name": found.get("community_name"),
        "workers": found.get("workers") or [],
    }


def _candidate(
    conn: Connection, m: Match, row: dict[str, Any] | None, place: str | None
) -> dict[str, Any]:
    e = m.entry
    kind = "landmark" if place and m.match_type == "partial" else m.match_type
    out: dict[str, Any] = {
        "match_type": kind,
        "confidence": round(m.confidence, 3),
        "matched": list(m.agreed),
        "building_code": e.code,
        "address": row["address"] if row else e.key,
        "lon": round(e.lon, 7),
        "lat": round(e.lat, 7),
    }
    if row:
        out |= {
            "name": row["name"],
            "households": row["households"],
            "grid_code": row["grid_code"],
            "grid_name": row["grid_name"],
            "community_code": row["community_code"],
            "community_name": row["community_name"],
            "workers": row["workers"] or [],
        }
    else:  # a door's or an estate's point: its buildings, and the grid it lies in
        out["buildings"] = e.count
        out |= _place(conn, e.lon, e.lat)
    if place:
        out["place"] = place  # 门口, 东门, 附近 ... of the place found
    return out


PARSED_FIELDS = ("district", "road", "door", "estate", "building", "unit", "room", "place")


def _parts_dict(p: ParsedAddress) -> dict[str, str | None]:
    return {f: getattr(p, f) for f in PARSED_FIELDS}


# ---------------------------------------------------------------- the address index

POOL_MIN_ROWS = 20_000  # below this, parsing in this process beats starting a pool
_CHUNK = 5_000


def _parsers() -> BaseContext:
    """Where parsing workers come from. A fork of this process when it runs one thread (the
    CLI): the children inherit the warm parser. A fork server holding the parser when other
    threads run (the API server): a child forked while another thread holds a lock, e.g.
    logging's, can hang (measured: 3.4 s instead of 2.7 s for 120k addresses, the children
    warming their own caches). Never a fresh spawn, which would re-run the caller's
    __main__."""
    if threading.active_count() == 1:
        return get_context("fork")
    context = get_context("forkserver")
    context.set_forkserver_preload(["geo_service.buildings.address"])
    return context


class AddressParsing:
    """Parse many register addresses in worker processes, one chunk per task."""

    def __init__(self, addresses: list[str]) -> None:
        self._unique = list(dict.fromkeys(addresses))
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[list[tuple[str | None, ...]]]] = []
        if len(self._unique) >= POOL_MIN_ROWS:
            workers = max(1, min(os.cpu_count() or 1, 4))
            self._pool = ProcessPoolExecutor(workers, mp_context=_parsers())
            self._futures = [
                self._pool.submit(index_rows, self._unique[i : i + _CHUNK])
                for i in range(0, len(self._unique), _CHUNK)
            ]

    def result(self) -> dict[str, tuple[str | None, ...]]:
        """Index row of every address given, by address text."""
        if self._pool is None:
            return {a: index_row(a) for a in self._unique}
        try:
            rows = [row for f in self._futures for row in f.result()]
        finally:
            self.close()
        return dict(zip(self._unique, rows, strict=True))

    def close(self) -> None:
        """Stop the worker processes (pending work is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> AddressParsing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refresh_address_index(engine: Engine, *, force: bool = False) -> int | None:
    """Bring the address index up to date with the register, in its own transaction.

    The index is derived data: an import commits the buildings, then this parses the new or
    changed addresses (in worker processes when there are many). Geocoding calls it first,
    so a stale index is never read. Returns the addresses parsed, None when it was current.
    """
    with reading(engine) as conn:
        stale, _, _ = store.address_index_stale(conn)
    if not (stale or force):
        return None
    with engine.begin() as conn:
        store.lock_address_index(conn)
        stale, version, reparse = store.address_index_stale(conn)  # another may have run
        if not (stale or force):
            return None
        if reparse:  # the parsing rules changed since the index was made
            store.forget_addresses(conn)
        todo = store.unindexed_addresses(conn)
        addresses = [a for _, a in todo]
        if len(set(addresses)) >= POOL_MIN_ROWS:
            with AddressParsing(addresses) as parsing:
                ready = parsing.result()
        else:
            ready = {a: index_row(a) for a in addresses}
        store.write_addresses(conn, [(code, a, *ready[a]) for code, a in todo])
        store.set_address_index_version(conn, version)
    return len(todo)


def refresh_crossings(engine: Engine) -> int | None:
    """Bring the streets' meeting points up to date with the street network (after a roads
    import, or when the parsing rules changed); returns the points stored, None when they
    were current."""
    with reading(engine) as conn:
        stale, _ = store.crossings_stale(conn)
    if not stale:
        return None
    with engine.begin() as conn:
        stale, version = store.crossings_stale(conn)
        if not stale:
            return None
        meetings = store.street_meetings(conn)
        names = {n for a, b, _, _ in meetings for n in (a, b)}
        parsed = {n: parse(n).road or normalize(n) for n in names}
        rows = []
        for a, b, lon, lat in meetings:
            first, second = sorted((parsed[a], parsed[b]))
            if first != second:  # two spellings of one street do not make a crossing
                rows.append((first, second, lon, lat))
        store.write_crossings(conn, rows, version)
    return len(rows)
