"""Forward geocoding on the `city` register (≈120k buildings): ours against a plain pg_trgm
similarity query over the full addresses (GiST trigram index, nearest by `<->`), on the
same data and the same queries: latency p50/p99 and accuracy side by side.

Ours and the peer are asked each query in turn (who goes first alternating).

The queries are the test set of tests/geocode_cases.py drawn from the city's own register:
each sampled address rewritten the ways people write it, plus addresses that do not exist.
The demo register's figures (the test set the goals are stated on) come first.

Then what residents write besides addresses (issue 18), each kind with its own figures:

- road numbers in digits (合肥9路, 合肥９路 for 合肥九路): the test set's `road_digits*` rows;
- the second register (tests/register_forms.py: 号楼/幢/座, units, lanes, rural groups,
  estates without a road, door-only buildings, an estate on several roads), per form, over
  the demo communities and grids in a database of its own;
- landmarks: each estate of the demo register with each place word (东方小区门口, …东门,
  …附近): right when the top candidate is that estate's point (a `landmark` of that estate,
  at the centroid of its buildings on one road, worked out here from the demo shapefile);
  among namesakes any counts, but none may be confident;
- intersections: each pair of named demo streets that meet (found here with shapely, apart
  from the service) in four phrasings: right when the top candidate is within 60 m of
  where they meet; pairs that never meet must give no confident answer;
- names shared by several places (an estate on several roads, an estate's or a community's
  building number, two shops of one name): no confident answer;
- named places: imported places (pois), the demo's centres and communities by name.

The peer cannot answer a landmark, an intersection or a place: it gets the same queries and
its top building counts as right by a rule as close to ours as a building allows (a building
of the estate; a building within 60 m). Latency on the city register is also given over a
mixed set (the address test set plus intersections, landmarks, streets that never meet and
community offices).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import geopandas as gpd
import shapely
from pyproj import Geod
from sqlalchemy import Connection, Engine, text

from geo_service.buildings.address import PLACE_WORDS, parse
from geo_service.buildings.service import geocode_on, refresh_address_index, refresh_crossings
from geo_service.db.engine import reading
from geo_service.ingest import import_file
from geo_service.settings import Settings
from tests import register_forms
from tests.benchmarks.common import ROOT, Result, city_dir, scratch_engine, settings
from tests.geocode_cases import Case, Figures, Register, cases, measure

DEMO = ROOT / "shapefiles" / "demo"
SURE = 0.8  # a candidate this confident is acted on without a person looking
NEAR_M = 60.0  # an intersection (or, for the peer, a place) found within this distance
ESTATE_POINT_M = 5.0  # a landmark's point is its estate's (centroid of its buildings)
PHRASINGS = ("{a}与{b}交叉口", "{a}和{b}路口", "{a}/{b}交汇处", "{a}{b}十字路口")
# A handful of named places, at points of demo grids (by index in code order); two namesakes.
POIS = (
    ("P1", "向阳小学", "school", 3),
    ("P2", "五松菜市场", "marketplace", 11),
    ("P3", "人民医院", "hospital", 19),
    ("P4", "天井湖公园", "park", 27),
    ("P5", "铜官山体育馆", "sports_centre", 35),
    ("P6", "石城派出所", "police", 43),
    ("P7", "新华书店", "books", 51),
    ("P8", "新华书店", "books", 59),
)
SHARED_POI = "新华书店"
DIGIT_VARIANTS = ("road_digits", "road_full_width_digits")  # of tests/geocode_cases.py
PEER_NAME = "plain pg_trgm `<->` on full address"

_PEER = text(
    "SELECT code, address, ST_X(geom) AS lon, ST_Y(geom) AS lat, similarity(address, :q) AS s "
    "FROM buildings ORDER BY address <-> :q LIMIT 1"
)
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True, slots=True)
class Top:
    """The top answer of a geocoder (ours: its first candidate; the peer: its building)."""

    match_type: str
    code: str | None
    place_code: str | None
    address: str
    lon: float
    lat: float
    confidence: float


Ask = Callable[[Connection, str], Top | None]
Judge = Callable[[Top], bool]
Judged = list[tuple[bool | None, float]]  # (right, or None: names nothing for sure; confidence)


@dataclass(frozen=True, slots=True)
class Probe:
    """A query of a kind other than a building's address, and how to judge its answer.
    `right` is None when the text names nothing for sure (answered well: nothing confident);
    `peer_right` judges the peer's building."""

    text: str
    kinds: tuple[str, ...]
    right: Judge | None
    peer_right: Judge | None


@dataclass(frozen=True, slots=True)
class Tally:
    """Top-1 over the probes that name something; confident wrong (and confident at all)
    answers over all of them."""

    queries: int
    real: int
    top1: float
    confident_wrong: float
    confident: int


def _tally(judged: Judged) -> Tally:
    real = [ok for ok, _ in judged if ok is not None]
    wrong = sum(1 for ok, conf in judged if conf >= SURE and not ok)
    return Tally(
        queries=len(judged),
        real=len(real),
        top1=sum(real) / len(real) if real else 0.0,
        confident_wrong=wrong / len(judged) if judged else 0.0,
        confident=sum(1 for _, conf in judged if conf >= SURE),
    )


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(_GEOD.inv(a[0], a[1], b[0], b[1])[2])


def _near(points: list[tuple[float, float]], limit: float) -> Judge:
    return lambda t: min(metres((t.lon, t.lat), p) for p in points) < limit


@cache
def _estate_of(address: str) -> str | None:
    return parse(address).estate


# -- loading ---------------------------------------------------------------------------------


def _load(engine: Engine, s: Settings, folder: Path, kinds: Iterable[str]) -> float:
    for kind in kinds:
        import_file(engine, s, kind, folder / f"{kind}.shp")
    started = time.perf_counter()
    refresh_address_index(engine)
    return time.perf_counter() - started


def _peer_index(engine: Engine) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX peer_trgm ON buildings USING gist (address gist_trgm_ops)"))
    return time.perf_counter() - started


def _pois(folder: Path) -> tuple[Path, dict[str, tuple[float, float]]]:
    """The handful of named places as a pois file, and where each is."""
    grids = gpd.read_file(DEMO / "grids.shp").sort_values("code")
    at = [grids.geometry.iloc[i].representative_point() for *_, i in POIS]
    frame = gpd.GeoDataFrame(
        {"code": [p[0] for p in POIS], "name": [p[1] for p in POIS], "kind": [p[2] for p in POIS]},
        geometry=at,
        crs="EPSG:4326",
    )
    path = folder / "pois.gpkg"
    frame.to_file(path)
    return path, {p[0]: (pt.x, pt.y) for p, pt in zip(POIS, at, strict=True)}


# -- asking ------------------------------------------------------------------------------------


def _ours(s: Settings) -> Ask:
    def ask(conn: Connection, q: str) -> Top | None:
        found = geocode_on(conn, s, q, 1)["candidates"]
        if not found:
            return None
        c = found[0]
        return Top(c["match_type"], c["building_code"], c.get("place_code"), c["address"],
                   c["lon"], c["lat"], c["confidence"])  # fmt: skip

    return ask


def _peer(conn: Connection, q: str) -> Top | None:
    row = conn.execute(_PEER, {"q": q}).first()
    if row is None:
        return None
    return Top("peer", row.code, None, row.address, row.lon, row.lat, float(row.s))


Asked = tuple[list[Top | None], list[float]]
CaseRows = tuple[list[tuple[Case, str | None, float]], list[float]]


def _ask_both(conn: Connection, texts: list[str], ours: Ask, peer: Ask) -> tuple[Asked, Asked]:
    """Each query asked of ours and of the peer in turn (who goes first alternating), so
    that both meet the same machine: (answers, times) of each."""
    mine: Asked = ([], [])
    theirs: Asked = ([], [])
    for i, q in enumerate(texts):
        pair = ((ours, mine), (peer, theirs))
        for ask, (answers, times) in pair if i % 2 == 0 else pair[::-1]:
            started = time.perf_counter()
            answers.append(ask(conn, q))
            times.append(time.perf_counter() - started)
    return mine, theirs


def _cases_both(
    conn: Connection, queries: list[Case], ours: Ask, peer: Ask
) -> tuple[CaseRows, CaseRows]:
    """The test set's cases asked of both in turn: (rows, times) of each."""
    both = _ask_both(conn, [c.text for c in queries], ours, peer)
    return tuple(  # type: ignore[return-value]
        (
            [
                (c, t.code if t else None, t.confidence if t else 0.0)
                for c, t in zip(queries, answers, strict=True)
            ],
            times,
        )
        for answers, times in both
    )


def _judge(probes: list[Probe], answers: list[Top | None], peer: bool) -> dict[str, Judged]:
    """(right or None, confidence) of each probe's answer, per kind."""
    out: dict[str, Judged] = defaultdict(list)
    for p, t in zip(probes, answers, strict=True):
        rule = p.peer_right if peer else p.right
        ok = None if rule is None else t is not None and rule(t)
        for kind in p.kinds:
            out[kind].append((ok, t.confidence if t else 0.0))
    return out


def _pct(times: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(times, n=100)[int(q) - 1]


# -- the probes of each kind, from the demo city's files (apart from the service) ----------------


def _demo_register() -> tuple[Register, gpd.GeoDataFrame]:
    frame = gpd.read_file(DEMO / "buildings.shp")
    return Register.of(zip(frame["code"], frame["address"], strict=True)), frame


def landmark_probes(reg: Register, frame: gpd.GeoDataFrame) -> list[Probe]:
    """Each estate with each place word; right: a landmark of that estate at its point."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_place: dict[tuple[str | None, str], list[shapely.Point]] = defaultdict(list)
    for code, geom in zip(frame["code"], frame.geometry, strict=True):
        p = reg.parts[code]
        if p.estate:  # a footprint's place: its centroid, or a point inside when that is out
            inside = geom.centroid
            by_place[(p.road, p.estate)].append(
                inside if geom.contains_properly(inside) else geom.point_on_surface()
            )
    for (_, estate), geoms in by_place.items():
        centre = shapely.MultiPoint(geoms).centroid
        points[estate].append((centre.x, centre.y))
    out = []
    for estate in sorted(points):
        several = len(points[estate]) > 1
        at = _near(points[estate], ESTATE_POINT_M)

        def ours(t: Top, estate: str = estate, several: bool = several, at: Judge = at) -> bool:
            return (
                t.match_type == "landmark"
                and _estate_of(t.address) == estate
                and at(t)
                and not (several and t.confidence >= SURE)
            )

        def peer(t: Top, estate: str = estate, several: bool = several) -> bool:
            return _estate_of(t.address) == estate and not (several and t.confidence >= SURE)

        kinds = ("landmark", "shared") if several else ("landmark",)
        out += [Probe(estate + word, kinds, ours, peer) for word in PLACE_WORDS]
    return out


def street_pairs() -> tuple[
    dict[tuple[str, str], list[tuple[float, float]]], list[tuple[str, str]]
]:
    """Where each pair of named demo streets meets (shapely), and the pairs that never do."""
    roads = gpd.read_file(DEMO / "roads.shp").dropna(subset=["name"])
    names = sorted(roads["name"].unique())
    shape = {n: shapely.union_all(roads[roads["name"] == n].geometry.to_numpy()) for n in names}
    meet: dict[tuple[str, str], list[tuple[float, float]]] = {}
    never: list[tuple[str, str]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            parts = shapely.get_parts(shape[a].intersection(shape[b]))
            points = [(p.x, p.y) for p in parts if p.geom_type == "Point"]
            if points:
                meet[(a, b)] = points
            elif not any(not p.is_empty for p in parts):
                never.append((a, b))
    return meet, never


def intersection_probes() -> list[Probe]:
    meet, never = street_pairs()
    out = []
    for i, ((a, b), points) in enumerate(sorted(meet.items())):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        near = _near(points, NEAR_M)
        out += [
            Probe(f.format(a=first, b=second), ("intersection",), near, near) for f in PHRASINGS
        ]
    for i, (a, b) in enumerate(never):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        out += [Probe(f.format(a=first, b=second), ("never_meet",), None, None) for f in PHRASINGS]
    return out


def shared_probes(reg: Register, communities: list[str]) -> list[Probe]:
    """Names several places share: no answer may be confident (landmarks of namesake estates
    are among the landmark probes, counted here too)."""
    roads_of: dict[str, set[str | None]] = defaultdict(set)
    for p in reg.parts.values():
        if p.estate:
            roads_of[p.estate].add(p.road)
    shared = sorted(e for e, roads in roads_of.items() if len(roads) > 1)
    pairs = sorted((e, b) for (e, b), n in reg.estate_building.items() if n > 1 and e and b)
    texts = [*shared]
    texts += [f"{e}{b}栋" for e, b in pairs[:: max(1, len(pairs) // 300)]]
    texts += [f"{c}{n}栋" for c in communities for n in (1, 2, 3)]
    texts += [SHARED_POI, f"{SHARED_POI}门口", f"铜官区{SHARED_POI}"]
    return [Probe(t, ("shared",), None, None) for t in texts]


def place_probes(
    pois: dict[str, tuple[float, float]],
    centers: gpd.GeoDataFrame,
    communities: gpd.GeoDataFrame,
) -> list[Probe]:
    """Named places by name (and with a place word): right when the top candidate is that
    place; the peer's building, when within 60 m of it."""
    named: list[tuple[str, str, tuple[float, float], tuple[str, ...]]] = []
    for code, name, _, _ in POIS:
        if name != SHARED_POI:
            named.append((code, name, pois[code], ("", "铜官区", "门口", "旁边")))
    for code, name, geom in zip(centers["code"], centers["name"], centers.geometry, strict=True):
        named.append((code, name, (geom.x, geom.y), ("", "门口", "附近")))
    for code, name, geom in zip(
        communities["code"], communities["name"], communities.geometry, strict=True
    ):
        at = geom.point_on_surface()
        named.append((code, name, (at.x, at.y), ("", "居委会", "门口")))
    out = []
    for code, name, at, words in named:
        near = _near([at], NEAR_M)

        def ours(t: Top, code: str = code) -> bool:
            return t.match_type == "place" and t.place_code == code

        for w in words:
            q = w + name if w == "铜官区" else name + w
            out.append(Probe(q, ("place",), ours, near))
    return out


# -- runs ----------------------------------------------------------------------------------------


def _demo(s: Settings) -> tuple[list[Result], list[Result], dict[str, tuple[Tally, Tally]]]:
    """The demo city: the address test set (as before), road numbers in digits, and the
    kinds of issue 18 (landmarks, intersections, never meeting, shared names, places)."""
    engine = scratch_engine(s, "geo_bench_geocode")
    ours = _ours(s)
    with tempfile.TemporaryDirectory() as tmp:
        poi_file, poi_points = _pois(Path(tmp))
        _load(engine, s, DEMO, ("communities", "grids", "buildings", "roads", "centers"))
        import_file(engine, s, "pois", poi_file)
    refresh_crossings(engine)
    _peer_index(engine)
    reg, frame = _demo_register()
    communities = gpd.read_file(DEMO / "communities.shp")
    probes = [
        *landmark_probes(reg, frame),
        *intersection_probes(),
        *shared_probes(reg, list(communities["name"])),
        *place_probes(poi_points, gpd.read_file(DEMO / "centers.shp"), communities),
    ]
    with reading(engine) as conn:
        queries = cases(reg, sample=600)
        for q in queries[:50]:  # warm both: plans, caches
            ours(conn, q.text), _peer(conn, q.text)
        (mine, _), (theirs, _) = _cases_both(conn, queries, ours, _peer)
        texts = [p.text for p in probes]
        (my_answers, my_times), (their_answers, _) = _ask_both(conn, texts, ours, _peer)
    engine.dispose()
    m, t = measure(mine), measure(theirs)
    what = f"demo register ({len(reg.parts):,} buildings, {m.queries:,} queries)"
    base = [
        Result(f"geocode top-1 accuracy, {what}", 100 * m.top1, PEER_NAME, 100 * t.top1, "%",
               higher_is_better=True, digits=1),
        Result(f"geocode confident (≥ 0.8) wrong answers, {what}", 100 * m.confident_wrong,
               PEER_NAME, 100 * t.confident_wrong, "%", digits=2),
    ]  # fmt: skip
    worst = sorted(m.by_variant.items(), key=lambda kv: kv[1])[:3]
    print(f"demo: weakest variants (ours): {worst}", flush=True)

    def digits(rows: list[tuple[Case, str | None, float]]) -> Figures:
        return measure([r for r in rows if r[0].variant in DIGIT_VARIANTS])

    dm, dt = digits(mine), digits(theirs)
    what = f"road numbers in digits (合肥9路, 合肥９路), demo register ({dm.queries:,} queries)"
    kinds = [
        Result(f"geocode top-1 accuracy, {what}", 100 * dm.top1, PEER_NAME, 100 * dt.top1, "%",
               higher_is_better=True, digits=1),
        Result(f"geocode confident (≥ 0.8) wrong answers, {what}", 100 * dm.confident_wrong,
               PEER_NAME, 100 * dt.confident_wrong, "%", digits=2),
    ]  # fmt: skip
    my_kinds = _judge(probes, my_answers, peer=False)
    their_kinds = _judge(probes, their_answers, peer=True)
    _explain(probes, my_answers)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for p, took in zip(probes, my_times, strict=True):
        by_kind[p.kinds[0]].append(took)
    p50 = {k: round(1000 * statistics.median(v), 2) for k, v in by_kind.items()}
    print(f"demo: p50 per kind (ms): {p50}", flush=True)
    tallies = {k: (_tally(my_kinds[k]), _tally(their_kinds[k])) for k in my_kinds}
    return base, kinds, tallies


def _explain(probes: list[Probe], answers: list[Top | None]) -> None:
    """Print a few wrong answers of each kind (for whoever reads the run's output)."""
    shown: dict[str, int] = defaultdict(int)
    for p, t in zip(probes, answers, strict=True):
        kind = p.kinds[0]
        wrong = (t is not None and t.confidence >= SURE) if p.right is None else (
            t is None or not p.right(t)
        )  # fmt: skip
        if wrong and shown[kind] < 5:
            shown[kind] += 1
            got = None if t is None else (t.match_type, t.address, round(t.confidence, 3))
            print(f"  {kind}: {p.text} -> {got}", flush=True)


def _forms(s: Settings) -> tuple[dict[str, tuple[Figures, Figures]], Judged, Judged]:
    """The second register, in a database of its own: figures per form (ours, peer), and the
    shared estate's answers for the shared-names tally (ours, peer)."""
    engine = scratch_engine(s, "geo_bench_geocode")
    for kind in ("communities", "grids"):
        import_file(engine, s, kind, DEMO / f"{kind}.shp")
    buildings = register_forms.register()
    with tempfile.TemporaryDirectory() as tmp:
        import_file(engine, s, "buildings", register_forms.write(buildings, Path(tmp)))
    refresh_address_index(engine)
    _peer_index(engine)
    queries = register_forms.queries(buildings)
    with reading(engine) as conn:
        (mine, _), (theirs, _) = _cases_both(conn, queries, _ours(s), _peer)
    engine.dispose()
    per: dict[str, tuple[Figures, Figures]] = {}
    for form in (*register_forms.FORMS, "shared"):
        of = [r for r in mine if r[0].variant.split(":")[0] == form]
        peer_of = [r for r in theirs if r[0].variant.split(":")[0] == form]
        per[form] = (measure(of), measure(peer_of))
    shared: Judged = [(None, conf) for c, _, conf in mine if c.variant == "shared:estate_only"]
    peer_shared: Judged = [
        (None, conf) for c, _, conf in theirs if c.variant == "shared:estate_only"
    ]
    return per, shared, peer_shared


def _city(s: Settings) -> tuple[list[Result], list[Result]]:
    """The city register: the address test set (accuracy, latency, index build, as before),
    and latency over a mixed set with intersections, landmarks and places."""
    engine = scratch_engine(s, "geo_bench_geocode")
    folder = city_dir()
    ours_index = _load(engine, s, folder, ("communities", "grids", "buildings"))
    import_file(engine, s, "roads", folder / "roads.shp")
    started = time.perf_counter()
    crossings = refresh_crossings(engine) or 0
    crossing_build = time.perf_counter() - started
    peer_index = _peer_index(engine)
    ours = _ours(s)
    rng = random.Random(18)
    with reading(engine) as conn:
        reg = Register.of(conn.execute(text("SELECT code, address FROM buildings")).all())
        pairs = [tuple(r) for r in conn.execute(
            text("SELECT road_a, road_b FROM street_crossings ORDER BY road_a, road_b, geom")
        )]  # fmt: skip
        community_names = list(conn.execute(text("SELECT name FROM communities")).scalars())
        edges = conn.execute(text("SELECT count(*) FROM street_edges")).scalar_one()
        queries = cases(reg, sample=150)
        meeting = sorted(set(pairs))
        streets = sorted({n for pair in meeting for n in pair})
        met = set(meeting)
        apart: list[tuple[str, str]] = []
        while len(apart) < 100:
            a, b = sorted(rng.sample(streets, 2))
            if (a, b) not in met:
                apart.append((a, b))
        estates = sorted(reg.estates)
        extra = {
            "intersection": [
                PHRASINGS[i % 4].format(a=a, b=b)
                for i, (a, b) in enumerate(rng.sample(meeting, min(300, len(meeting))))
            ],
            "landmark": [
                e + rng.choice(PLACE_WORDS) for e in rng.sample(estates, min(300, len(estates)))
            ],
            "never_meet": [PHRASINGS[i % 4].format(a=a, b=b) for i, (a, b) in enumerate(apart)],
            "place": [f"{c}居委会" for c in community_names],
        }
        warm = [q.text for q in queries[:50]] + [t for v in extra.values() for t in v[:10]]
        for q in warm:  # warm both: plans, caches
            ours(conn, q), _peer(conn, q)
        (mine, my_times), (theirs, their_times) = _cases_both(conn, queries, ours, _peer)
        asked = {k: _ask_both(conn, v, ours, _peer) for k, v in extra.items()}
        my_kind = {k: a[0] for k, a in asked.items()}
        their_kind_times = {k: a[1][1] for k, a in asked.items()}
    my_kind_times = {k: times for k, (_, times) in my_kind.items()}
    my_place = my_kind["place"][0]
    engine.dispose()
    places_found = sum(1 for t in my_place if t is not None and t.match_type == "place")
    print(f"city: {crossings:,} crossings of {edges:,} street edges in {crossing_build:.1f} s; "
          f"community offices found {places_found}/{len(my_place)}", flush=True)  # fmt: skip
    m, t = measure(mine), measure(theirs)
    n = len(reg.parts)
    what = f"city register ({n:,} buildings, {m.queries:,} queries)"
    base = [
        Result(f"geocode top-1 accuracy, {what}", 100 * m.top1, PEER_NAME, 100 * t.top1, "%",
               higher_is_better=True, digits=1),
        Result(f"geocode confident (≥ 0.8) wrong answers, {what}", 100 * m.confident_wrong,
               PEER_NAME, 100 * t.confident_wrong, "%", digits=2),
        Result(f"geocode latency p50, {what}", _pct(my_times, 50), PEER_NAME,
               _pct(their_times, 50), "ms", digits=2),
        Result(f"geocode latency p99, {what}", _pct(my_times, 99), PEER_NAME,
               _pct(their_times, 99), "ms", digits=2),
        Result(f"address index build, {n:,} addresses", ours_index,
               "pg_trgm GiST index on full address", peer_index),
    ]  # fmt: skip
    worst = sorted(m.by_variant.items(), key=lambda kv: kv[1])[:3]
    print(f"city: weakest variants (ours): {worst}", flush=True)
    mixed = my_times + [x for v in my_kind_times.values() for x in v]
    peer_mixed = their_times + [x for v in their_kind_times.values() for x in v]
    sizes = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in extra.items())
    what = f"city register, mixed ({len(queries):,} addresses, {sizes})"
    latency = [
        Result(f"geocode latency p50, {what}", _pct(mixed, 50), PEER_NAME, _pct(peer_mixed, 50),
               "ms", digits=2),
        Result(f"geocode latency p99, {what}", _pct(mixed, 99), PEER_NAME, _pct(peer_mixed, 99),
               "ms", digits=2),
    ]  # fmt: skip
    for kind, label in (("intersection", "intersections"), ("landmark", "landmarks")):
        mine_k, theirs_k = my_kind_times[kind], their_kind_times[kind]
        latency.append(
            Result(f"geocode latency p50, {label} only, city register ({len(mine_k)} queries)",
                   _pct(mine_k, 50), PEER_NAME, _pct(theirs_k, 50), "ms", digits=2)
        )  # fmt: skip
    return base, latency


def run() -> list[Result]:
    """Accuracy on the demo register; latency and accuracy on the city, ours vs pg_trgm; then
    figures per kind of what residents write (issue 18), and latency over a mixed set."""
    s = settings()
    demo_base, digits, tallies = _demo(s)
    forms, shared, peer_shared = _forms(s)
    city_base, latency = _city(s)
    rows = [*demo_base, *city_base, *digits]
    centres, communities = (gpd.read_file(DEMO / f"{k}.shp") for k in ("centers", "communities"))
    for form, (m, t) in forms.items():
        what = f"second register, form {form} ({m.queries:,} queries)"
        rows += [
            Result(f"geocode top-1 accuracy, {what}", 100 * m.top1, PEER_NAME, 100 * t.top1, "%",
                   higher_is_better=True, digits=1),
            Result(f"geocode confident (≥ 0.8) wrong answers, {what}", 100 * m.confident_wrong,
                   PEER_NAME, 100 * t.confident_wrong, "%", digits=2),
        ]  # fmt: skip
    labels = {
        "landmark": (
            f"landmarks (each estate + each of {len(PLACE_WORDS)} place words; the estate's point)",
            "pg_trgm (right: a building of the estate)",
        ),
        "intersection": (
            f"intersections (each pair of demo streets that meet, {len(PHRASINGS)} phrasings; "
            f"within {NEAR_M:.0f} m)",
            "pg_trgm (right: its building within 60 m)",
        ),
        "place": (
            f"named places ({sum(p[1] != SHARED_POI for p in POIS)} imported places, "
            f"{len(centres)} centres, "
            f"{len(communities)} communities; by name, with a place word)",
            "pg_trgm (right: its building within 60 m)",
        ),
    }
    for kind, (label, peer_name) in labels.items():
        m, t = tallies[kind]
        what = f"{label}, demo ({m.queries:,} queries)"
        rows += [
            Result(f"geocode top-1 accuracy, {what}", 100 * m.top1, peer_name, 100 * t.top1, "%",
                   higher_is_better=True, digits=1),
            Result(f"geocode confident (≥ 0.8) wrong answers, {what}", 100 * m.confident_wrong,
                   peer_name, 100 * t.confident_wrong, "%", digits=2),
        ]  # fmt: skip
    never, peer_never = tallies["never_meet"]
    rows.append(
        Result(f"geocode confident (≥ 0.8) answers, demo streets that never meet, 4 phrasings "
               f"({never.queries:,} queries)", never.confident, PEER_NAME,
               peer_never.confident, "answers", digits=0)
    )  # fmt: skip
    mine_shared, peer_tally = tallies["shared"]
    both = _tally([(None, c) for _, c in shared])
    peer_both = _tally([(None, c) for _, c in peer_shared])
    rows.append(
        Result("geocode confident (≥ 0.8) answers, names shared by several places (namesake "
               "estates with a place word or alone, an estate's or community's building number, "
               f"two shops of one name, the second register's 书香门第) "
               f"({mine_shared.queries + both.queries:,} queries)",
               mine_shared.confident + both.confident, PEER_NAME,
               peer_tally.confident + peer_both.confident, "answers", digits=0)
    )  # fmt: skip
    return [*rows, *latency]
