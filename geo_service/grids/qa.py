"""Grid QA: do the grids tile their communities, and does every building have a grid?"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine

from geo_service.grids import store
from geo_service.settings import Settings


@dataclass
class Overlap:
    """Two grids whose interiors overlap."""

    grid_a: str
    grid_b: str
    area_m2: float
    lon: float
    lat: float


@dataclass
class Gap:
    """Part of a community covered by no grid."""

    area_m2: float
    lon: float
    lat: float


@dataclass
class Outside:
    """A grid reaching outside its community."""

    grid: str
    area_m2: float


@dataclass
class CommunityQA:
    """Findings for one community."""

    code: str
    name: str
    grids: int
    overlaps: list[Overlap] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    outside: list[Outside] = field(default_factory=list)
    buildings_outside: int = 0
    # listed, not counted against `ok`: a worker who leaves cannot be kept
    grids_without_worker: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the grids tile the community and its buildings all have a grid."""
        return not (self.overlaps or self.gaps or self.outside or self.buildings_outside)


@dataclass
class QAReport:
    """Findings for the whole city."""

    communities: list[CommunityQA]
    buildings_outside: int
    buildings_outside_sample: list[dict[str, str]]

    @property
    def ok(self) -> bool:
        """True when the grids tile their communities and every building has a grid."""
        return self.buildings_outside == 0 and all(c.ok for c in self.communities)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "buildings_outside": self.buildings_outside,
            "buildings_outside_sample": self.buildings_outside_sample,
            "communities": [{**asdict(c), "ok": c.ok} for c in self.communities],
        }


def grid_qa(engine: Engine, settings: Settings, *, sample: int = 100) -> QAReport:
    """Run every check in one read-only snapshot."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        by_code = {
            c["code"]: CommunityQA(c["code"], c["name"], c["grids"])
            for c in store.communities(conn)
        }
        for o in store.overlaps(conn):
            if o["area_m2"] >= settings.grids.qa_min_area_m2:
                by_code[o.pop("community_code")].overlaps.append(Overlap(**o))
        for g in store.gaps(conn, settings.grids.qa_min_area_m2):
            by_code[g.pop("community_code")].gaps.append(Gap(**g))
        for o in store.grids_outside(conn, settings.grids.qa_min_area_m2):
            by_code[o.pop("community_code")].outside.append(Outside(**o))
        lost = store.buildings_outside(conn)
        for community, grid in store.grids_without_worker(conn):
            by_code[community].grids_without_worker.append(grid)
    per_community: dict[str, int] = defaultdict(int)
    for b in lost:
        if b["community_code"]:
            per_community[b["community_code"]] += 1
    for code, count in per_community.items():
        by_code[code].buildings_outside = count
    return QAReport(
        list(by_code.values()),
        len(lost),
        [{"code": b["code"], "address": b["address"]} for b in lost[:sample]],
    )
