"""Ranking forward-geocoding candidates: pure, no database.

The database proposes candidates from the address index (exact key, road + door, estate +
building, trigram look-alikes, a community's buildings); this module decides how well each
agrees with the parsed query and how sure we may be.

Rules (each one tested):

- A query must name a road or an estate (or community); otherwise there is nothing to
  locate and the answer is empty, never a random building.
- Numbers (door, building) agree only when equal. Names (road, estate) agree when equal, and
  look alike when their similarity (rapidfuzz ratio) is at least NAME_ALIKE and the query's
  name is not itself a name in the register: 长江东路 is a different road from 长江西路, not
  a typo of it, when both exist.
- A building whose number differs from the query's is never proposed; the query may still
  be answered by a `partial` point (the door, or the estate) with a modest confidence.
- score = weighted share of the query's parts that agree (a look-alike name counts its
  similarity). Confidence = score, times a completeness factor (fewer parts given, less
  sure), capped at DISAGREE_CAP when any given part disagrees, and divided among candidates
  that tie: three buildings equally likely get a third each.
- A door that holds exactly one building answers with that building (exact when the
  query is its whole register address, as for a building whose address is only a road and
  door number), not with the door's point.
- Match types: `exact` (the query's key is the building's key), `structured` (every given
  part agrees, some not given), `fuzzy` (a look-alike name or a disagreeing part), `partial`
  (no building: the door's or the estate's point).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from rapidfuzz.fuzz import ratio

from geo_service.buildings.address import ParsedAddress, match_key

MatchType = Literal["exact", "structured", "fuzzy", "partial"]

WEIGHTS: Final = {"road": 1.0, "door": 1.0, "estate": 1.5, "building": 1.5}
TOTAL_WEIGHT: Final = sum(WEIGHTS.values())
NAME_ALIKE: Final = 0.6  # a name this similar (0..1) to the register's counts as a typo of it
DISAGREE_CAP: Final = 0.7  # confidence ceiling when any given part disagrees
TIE_MARGIN: Final = 0.05  # candidates within this score of the best share its confidence
PARTIAL_DOOR: Final = 0.9  # a door point, when the query names no building
PARTIAL_ESTATE: Final = 0.8  # an estate's point, when the query names no building
PARTIAL_MISSING: Final = 0.5  # a door or estate point, when the named building is not there


@dataclass(frozen=True, slots=True)
class Query:
    """What the ranking needs from a parsed query."""

    parsed: ParsedAddress
    known_road: bool  # the query's road name is a road of the register
    known_estate: bool  # the query's estate name is an estate (or community) of the register

    @property
    def key(self) -> str:
        """The building-level key of the query (unit and room left out)."""
        p = self.parsed
        return match_key(
            ParsedAddress(road=p.road, door=p.door, estate=p.estate, building=p.building)
        )

    def locatable(self) -> bool:
        """True when the query names something that can be found: a road or an estate."""
        return bool(self.parsed.road or self.parsed.estate)


@dataclass(frozen=True, slots=True)
class Entry:
    """A candidate from the register: one building, or a door's or an estate's point."""

    code: str | None  # None for a partial point
    key: str
    road: str | None
    door: str | None
    estate: str | None
    building: str | None
    lon: float
    lat: float
    community: str | None = None  # the community's name, when the entry was found through it
    count: int = 1  # buildings behind a partial point
    only_code: str | None = None  # a door's point: its one building, when it has only one
    only_key: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A ranked candidate."""

    entry: Entry
    match_type: MatchType
    confidence: float
    score: float
    agreed: tuple[str, ...]  # the query's parts this candidate agrees with


def rank(query: Query, entries: list[Entry], limit: int) -> list[Match]:
    """The best `limit` candidates for the query, most confident first."""
    if not query.locatable():
        return []
    buildings = [m for e in entries if e.code is not None if (m := _building(query, e))]
    _share_ties(buildings)
    found = {m.entry.building for m in buildings if m.confidence >= DISAGREE_CAP}
    partials = [m for e in entries if e.code is None if (m := _partial(query, e, bool(found)))]
    doors = [m for m in partials if m.entry.door is not None]
    estates = [m for m in partials if m.entry.door is None]
    _share_ties(doors)
    _share_ties(estates)
    partials = doors + estates
    best: dict[str | None, Match] = {}
    for m in buildings:
        if m.entry.code not in best or m.confidence > best[m.entry.code].confidence:
            best[m.entry.code] = m
    ranked = sorted(
        [*best.values(), *partials],
        key=lambda m: (-m.confidence, m.entry.code is None, m.entry.code or "", m.entry.key),
    )
    return ranked[:limit]


def _name(given: str | None, actual: str | None, known: bool, alias: str | None = None) -> float:
    """Agreement of a name in [0, 1]: 1 equal, the similarity for a look-alike, else 0."""
    if given is None or actual is None:
        return 0.0
    if given == actual or (alias is not None and given == alias):
        return 1.0
    if known:  # a real name of the register, just not this one
        return 0.0
    similarity = ratio(given, actual) / 100.0
    return similarity if similarity >= NAME_ALIKE else 0.0


def _parts(query: Query, e: Entry) -> dict[str, float]:
    """Agreement in [0, 1] of each part the query gives."""
    q = query.parsed
    parts: dict[str, float] = {}
    if q.road:
        parts["road"] = _name(q.road, e.road, query.known_road)
    if q.door:
        parts["door"] = float(q.door == e.door)
    if q.estate:
        parts["estate"] = _name(q.estate, e.estate, query.known_estate, e.community)
    if q.building:
        parts["building"] = float(q.building == e.building)
    return parts


def _score(parts: dict[str, float]) -> tuple[float, float]:
    """(score, completeness) of a candidate's part agreements."""
    given = sum(WEIGHTS[p] for p in parts)
    score = sum(WEIGHTS[p] * v for p, v in parts.items()) / given
    return score, 0.85 + 0.15 * given / TOTAL_WEIGHT


def _building(query: Query, e: Entry) -> Match | None:
    parts = _parts(query, e)
    q = query.parsed
    if q.building is None or parts.get("building") != 1.0:
        return None  # a building is proposed only for the building number asked for
    if not (parts.get("road") or parts.get("estate")):
        return None  # a building number alone locates nothing
    score, completeness = _score(parts)
    agreed = tuple(p for p, v in parts.items() if v == 1.0)
    disagrees = any(v == 0.0 for v in parts.values())
    confidence = score * completeness
    if disagrees:
        confidence = min(confidence, DISAGREE_CAP * score)
        kind: MatchType = "fuzzy"
    elif len(agreed) < len(parts):
        kind = "fuzzy"
    elif e.key == query.key and len(parts) == len(WEIGHTS):
        kind, confidence = "exact", 1.0
    else:
        kind = "structured"
    return Match(e, kind, confidence, score, agreed)


def _partial(query: Query, e: Entry, building_found: bool) -> Match | None:
    """A door's point (road + door agree) or an estate's point (estate agrees)."""
    q = query.parsed
    if e.door is not None:
        if not (q.road and q.door and e.road == q.road and e.door == q.door):
            return None
        agreed: tuple[str, ...] = ("road", "door")
    else:
        if not (q.estate and _name(q.estate, e.estate, query.known_estate, e.community) == 1.0):
            return None
        if q.road and e.road != q.road:
            return None
        agreed = ("road", "estate") if q.road else ("estate",)
    if q.building is None and e.only_code is not None:
        # a door with one building: that building is the answer (铜都大道86号 is the building
        # whose address is only that)
        exact = e.only_key == query.key and not q.estate
        return Match(
            replace(e, code=e.only_code, key=e.only_key or e.key, count=1),
            "exact" if exact else "structured",
            1.0 if exact else PARTIAL_DOOR,
            1.0 if exact else PARTIAL_DOOR,
            agreed,
        )
    if q.building is None:  # the point is all the query asks for
        confidence = PARTIAL_DOOR if e.door is not None else PARTIAL_ESTATE
    else:  # the building asked for is not in the register
        confidence = PARTIAL_MISSING * (0.5 if building_found else 1.0)
    return Match(e, "partial", confidence, confidence, agreed)


def _share_ties(matches: list[Match]) -> None:
    """Divide the confidence of candidates that tie for the best score among them."""
    if len(matches) < 2:
        return
    top = max(m.score for m in matches)
    tied = [i for i, m in enumerate(matches) if m.score >= top - TIE_MARGIN]
    if len(tied) < 2:
        return
    for i in tied:
        m = matches[i]
        matches[i] = Match(m.entry, m.match_type, m.confidence / len(tied), m.score, m.agreed)
