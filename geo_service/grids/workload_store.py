"""All SQL of workload figures: per grid (households and buildings by the locate rule, area,
workers, incidents) among the grids of today or as they were at a moment; per worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

Row = dict[str, Any]

# The grids of a moment (today's when :at is now), their buildings (the smallest code covering
# each), their workers then, and the incidents routed to them.
_GRIDS = """
WITH g AS NOT MATERIALIZED (
  SELECT code, name, community_code, area_m2, geom FROM grid_versions
  WHERE valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
    AND (CAST(:community AS text) IS NULL OR community_code = :community)
), homes AS (
  SELECT DISTINCT ON (b.id) g.code, b.households
  FROM buildings b JOIN g ON g.geom && b.geom AND ST_Covers(g.geom, b.geom)
  ORDER BY b.id, g.code
), per_grid AS (
  SELECT code, count(*) AS buildings, sum(households) AS households FROM homes GROUP BY code
), staff AS (
  SELECT a.grid_code, count(*) AS workers, array_agg(a.worker_code ORDER BY a.worker_code) AS codes
  FROM worker_assignments a
  WHERE a.valid_from <= :at AND (a.valid_to IS NULL OR a.valid_to > :at)
  GROUP BY a.grid_code
), cases AS (
  SELECT grid_code,
         count(*) FILTER (WHERE status NOT IN ('closed', 'cancelled')) AS open,
         count(*) FILTER (WHERE status NOT IN ('closed', 'cancelled') AND due_at < :at) AS overdue,
         count(*) FILTER (WHERE received_at >= :since AND received_at < :until) AS received,
         count(*) FILTER (WHERE closed_at >= :since AND closed_at < :until) AS closed,
         count(*) FILTER (WHERE closed_at >= :since AND closed_at < :until
                          AND closed_at <= due_at) AS closed_on_time
  FROM incidents WHERE grid_code IS NOT NULL GROUP BY grid_code
)
SELECT g.code, g.name, g.community_code, c.name AS community_name, g.area_m2,
       coalesce(p.buildings, 0)::int AS buildings, coalesce(p.households, 0)::int AS households,
       coalesce(s.workers, 0)::int AS workers, coalesce(s.codes, '{}') AS worker_codes,
       coalesce(k.open, 0)::int AS open_incidents, coalesce(k.overdue, 0)::int AS overdue,
       coalesce(k.received, 0)::int AS received, coalesce(k.closed, 0)::int AS closed,
       coalesce(k.closed_on_time, 0)::int AS closed_on_time
FROM g
LEFT JOIN communities c ON c.code = g.community_code
LEFT JOIN per_grid p ON p.code = g.code
LEFT JOIN staff s ON s.grid_code = g.code
LEFT JOIN cases k ON k.grid_code = g.code
ORDER BY g.community_code, g.code
"""

_NAMES = """
SELECT code, name, phone FROM workers WHERE code = ANY(:codes) ORDER BY code
"""


def per_grid(
    conn: Connection, at: datetime, since: datetime, until: datetime, community: str | None
) -> list[Row]:
    """Figures per grid (of one community, or all) at `at`; incidents received and closed in
    [since, until)."""
    params = {"at": at, "since": since, "until": until, "community": community}
    return [dict(r) for r in conn.execute(text(_GRIDS), params).mappings()]


def workers(conn: Connection, codes: list[str]) -> dict[str, Row]:
    """Names and phones of workers."""
    rows = conn.execute(text(_NAMES), {"codes": codes}).mappings()
    return {r["code"]: dict(r) for r in rows}


def now(conn: Connection) -> datetime:
    """The transaction's moment."""
    return conn.execute(text("SELECT now()")).scalar_one()  # type: ignore[no-any-return]
