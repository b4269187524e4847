"""Field visits under load (issue 19): 500 simulated phones, each a grid worker with a token
for their own grid, record 20 visits each of a city-wide campaign (the `city`: 119,871
buildings) on a real uvicorn over loopback, and a third of the visits are sent twice with the
same Idempotency-Key, as a phone does after a dropped connection: half after the phone hung
up before the answer came (so the resend may race the first), half after an answer the phone
lost.

Two schedules, each its own round of the campaign:
- **bursts**: each phone sends its visits in bursts of 1-6, one after another on one
  connection (a queue flushed when the network is back); the bursts of all phones start at
  random moments over SPREAD_S seconds. This is the goal's load: p99 under 300 ms.
- **all at once**: every phone flushes all its bursts at the same moment, with no pause: the
  server's capacity (the latency is then the queue, by Little's law).

The peer is the same server's `/livez` (a handler that touches nothing) sent by the same
phones on the same schedule: the same number of requests, bursts, pauses, hang-ups and
resends. It measures what the HTTP stack, the client and the shared machine cost without
the visit's work.

Afterwards the database must hold every planned visit exactly once under its key, with the
id every answer gave, and the campaign's progress (per grid and the city's, each round) must
equal what the plan implies (visits, revisits, no one home, flagged, buildings and households
done); any difference stops the benchmark. The progress of the city-wide campaign is then
read by grid and by worker, against the issue's goal of 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import uvloop
from sqlalchemy import Engine, text

from geo_service.auth.service import add_user
from geo_service.fieldwork.campaigns import create_campaign
from geo_service.settings import Settings
from tests.benchmarks.common import (
    Result,
    city_dir,
    import_city,
    scratch_engine,
    served,
    settings,
)

PHONES = 500
VISITS = 20  # per phone and round
RESENT = 1 / 3  # of the visits
BURST = (1, 6)  # visits per burst, at random
SPREAD_S = 60.0  # the bursts schedule: every burst starts within this many seconds
SERVER_WORKERS = 2  # server processes: one per core
FAR_SHARE = 0.05  # visits recorded ~570 m from their building (flagged)
FAR_DEG = 0.006
OUTCOMES = (("visited", 0.7), ("no_one_home", 0.15), ("refused", 0.05), ("follow_up", 0.1))
PROGRESS_READS = 15  # progress reads per grouping, median taken
TIMEOUT_S = 60  # a request unanswered this long is a failure


# -- the plan ------------------------------------------------------------------------------------
@dataclass
class Visit:
    """One planned visit: its key, what it says, and how the phone loses it (None: it does
    not; "before": hangs up before the answer; "after": loses the answer it read)."""

    key: str
    building: str
    outcome: str
    met: int
    lon: float
    lat: float
    far: bool
    drop: str | None
    body: bytes = b""  # made when first sent (its `at`), resent as it was


@dataclass
class Phone:
    """A grid worker's phone: its token and its visits in bursts, each starting at a moment
    (seconds after the schedule starts)."""

    name: str
    token: str
    grid: str
    bursts: list[list[Visit]]
    starts: list[float]


@dataclass
class Tally:
    """What the phones saw: latencies of answered requests (ms), answers by key, failures."""

    latencies: list[float] = field(default_factory=list)
    ids: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    replayed: int = 0
    hung_up: int = 0
    failures: list[str] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0

    @property
    def answered(self) -> int:
        """Requests answered (hang-ups are not)."""
        return len(self.latencies)

    def rate(self) -> float:
        """Answered requests per second, first request to last answer."""
        return self.answered / (self.ended - self.began)

    def percentile(self, q: float) -> float:
        """A latency percentile in ms."""
        return float(np.percentile(self.latencies, q))


def plan(
    rng: random.Random,
    round_: int,
    workers: list[tuple[str, str, str]],
    buildings: dict[str, list[tuple[str, float, float]]],
    spread_s: float,
) -> list[Phone]:
    """Each phone's visits of a round, in bursts, with a third of them to be resent."""
    phones = []
    outcomes, weights = zip(*OUTCOMES, strict=True)
    for name, token, grid in workers:
        visits = []
        for n in range(VISITS):
            code, lon, lat = rng.choice(buildings[grid])  # some twice: revisits
            outcome = rng.choices(outcomes, weights)[0]
            far = rng.random() < FAR_SHARE
            jitter = (rng.uniform(-1e-4, 1e-4), rng.uniform(-1e-4, 1e-4))  # ~10 m
            visits.append(
                Visit(
                    key=f"r{round_}-{name}-{n}",
                    building=code,
                    outcome=outcome,
                    met=0 if outcome == "no_one_home" else rng.randint(1, 12),
                    lon=lon + jitter[0] + (FAR_DEG if far else 0.0),
                    lat=lat + jitter[1],
                    far=far,
                    drop=None,
                )
            )
        bursts = []
        while visits:
            size = rng.randint(*BURST)
            bursts.append(visits[:size])
            visits = visits[size:]
        starts = (
            sorted(rng.uniform(0, spread_s) for _ in bursts) if spread_s else [0.0] * len(bursts)
        )
        phones.append(Phone(name, token, grid, bursts, starts))
    every = [v for p in phones for b in p.bursts for v in b]
    for i, v in enumerate(rng.sample(every, round(len(every) * RESENT))):
        v.drop = "before" if i % 2 == 0 else "after"
    return phones


def visit_body(v: Visit, campaign: int, round_: int) -> bytes:
    """The JSON a phone sends: recorded a little before it is sent (queued offline)."""
    at = datetime.now(UTC) - timedelta(seconds=random.uniform(0, 600))
    body = {
        "campaign": campaign,
        "round": round_,
        "building": v.building,
        "households_reached": v.met,
        "outcome": v.outcome,
        "at": at.isoformat(timespec="seconds"),
        "lon": round(v.lon, 7),
        "lat": round(v.lat, 7),
    }
    if v.outcome == "follow_up":
        body["note"] = "需跟进: 独居老人家中漏水"
    return json.dumps(body, ensure_ascii=False).encode()


# -- the phones ----------------------------------------------------------------------------------
class Connection:
    """One HTTP/1.1 keep-alive connection, opened when first used."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> None:
        """Write a request (connecting first when needed)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """Read one answer: status, headers (lower-case names), body."""
        assert self.reader is not None
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def close(self) -> None:
        """Hang up."""
        if self.writer is not None:
            self.writer.close()
            with suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def request(path: str, token: str, key: str | None, body: bytes | None) -> bytes:
    """The bytes of a request: a POST of a visit, or the peer's GET."""
    head = [
        f"{'POST' if body is not None else 'GET'} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
    ]
    if key is not None:
        head.append(f"Idempotency-Key: {key}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def exchange(conn: Connection, data: bytes, tally: Tally) -> tuple[int, dict, bytes]:
    """Send a request and read its answer, timing both."""
    started = time.perf_counter()
    await conn.send(data)
    answer = await conn.answer()
    tally.latencies.append((time.perf_counter() - started) * 1000)
    return answer


async def phone_visits(
    phone: Phone, port: int, campaign: int, round_: int, peer: bool, t0: float, tally: Tally
) -> None:
    """One phone's bursts, each on a connection of its own; each lost visit resent at once
    on a new connection, as the phone page's queue does."""
    for burst, start in zip(phone.bursts, phone.starts, strict=True):
        await asyncio.sleep(max(0.0, t0 + start - time.perf_counter()))
        conn = Connection(port)
        try:
            for v in burst:
                if peer:
                    data = request("/livez", phone.token, v.key, None)
                else:
                    v.body = v.body or visit_body(v, campaign, round_)
                    data = request("/api/v1/visits", phone.token, v.key, v.body)
                if v.drop == "before":
                    await conn.send(data)
                    await conn.close()  # the stairwell: no answer
                    tally.hung_up += 1
                elif v.drop == "after":
                    first = await exchange(conn, data, tally)
                    _check(phone, v, first, tally, peer, replay=False)
                    await conn.close()  # the answer was lost on the phone
                answer = await exchange(conn, data, tally)
                _check(phone, v, answer, tally, peer, replay=v.drop == "after")
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            tally.failures.append(f"{phone.name}: {type(exc).__name__}: {exc}")
        finally:
            await conn.close()


def _check(
    phone: Phone, v: Visit, answer: tuple[int, dict, bytes], tally: Tally, peer: bool, replay: bool
) -> None:
    status, headers, body = answer
    want = 200 if peer else 201
    if status != want:
        tally.failures.append(f"{phone.name} {v.key}: {status} {body[:300]!r}")
        return
    if peer:
        return
    tally.ids[(phone.name, v.key)].add(json.loads(body)["id"])
    if headers.get("idempotent-replayed") == "true":
        tally.replayed += 1
    elif replay:
        tally.failures.append(f"{phone.name} {v.key}: a resend of an answered visit not replayed")


async def _all_phones(
    phones: list[Phone], port: int, campaign: int, round_: int, peer: bool
) -> Tally:
    tally = Tally()
    t0 = time.perf_counter() + 0.5  # every phone task made before the first burst
    jobs = [phone_visits(p, port, campaign, round_, peer, t0, tally) for p in phones]
    tally.began = t0
    await asyncio.wait_for(asyncio.gather(*jobs), TIMEOUT_S + SPREAD_S * 3)
    tally.ended = time.perf_counter()
    return tally


def load(phones: list[Phone], port: int, campaign: int, round_: int, peer: bool) -> Tally:
    """Run every phone's schedule at once (one event loop, uvloop as the server has)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tally = runner.run(_all_phones(phones, port, campaign, round_, peer))
    if tally.failures:
        shown = "\n".join(tally.failures[:10])
        raise RuntimeError(f"{len(tally.failures)} failed requests, e.g.:\n{shown}")
    return tally


# -- the checks ----------------------------------------------------------------------------------
def check_stored(engine: Engine, campaign: int, round_: int, phones: list[Phone], tally: Tally):
    """Every planned visit held exactly once, as planned, under the id every answer gave."""
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT idempotency_owner, idempotency_key, id, building_code, outcome, "
                "households_reached, flagged FROM campaign_visits "
                "WHERE campaign_id = :c AND round = :r"
            ),
            {"c": campaign, "r": round_},
        ).all()
    held: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for owner, key, *rest in stored:
        held[(owner, key)].append(rest)
    planned = {(p.name, v.key): v for p in phones for b in p.bursts for v in b}
    problems = [f"{k}: held {len(rows)} times" for k, rows in held.items() if len(rows) != 1]
    problems += [f"{k}: stored, never planned" for k in held.keys() - planned.keys()]
    problems += [f"{k}: planned, not held (lost)" for k in planned.keys() - held.keys()]
    for k, v in planned.items():
        if len(held.get(k, ())) != 1:
            continue
        [[id_, building, outcome, met, flagged]] = held[k]
        if (building, outcome, met, flagged) != (v.building, v.outcome, v.met, v.far):
            problems.append(f"{k}: held {(building, outcome, met, flagged)}, planned {v}")
        if tally.ids[k] != {id_}:
            problems.append(f"{k}: answered ids {sorted(tally.ids[k])}, held {id_}")
    if problems:
        raise RuntimeError(f"{len(problems)} visits wrong, e.g.:\n" + "\n".join(problems[:10]))
    return len(stored)


def expected_progress(phones: list[Phone], households: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per grid, the progress the plan implies: visits, revisits, no one home, flagged,
    buildings reached and households met (the most one visit met, at most what it has)."""
    per_grid: dict[str, dict[str, int]] = {}
    for p in phones:
        visits = [v for b in p.bursts for v in b]
        met: dict[str, int] = {}
        for v in visits:
            if v.outcome != "no_one_home":
                met[v.building] = max(met.get(v.building, 0), min(v.met, households[v.building]))
        per_grid[p.grid] = {
            "visits": len(visits),
            "revisits": len(visits) - len({v.building for v in visits}),
            "no_one_home": sum(v.outcome == "no_one_home" for v in visits),
            "flagged": sum(v.far for v in visits),
            "buildings_done": len(met),
            "households_done": sum(met.values()),
        }
    return per_grid


def check_progress(answer: dict[str, Any], expected: dict[str, dict[str, int]]) -> None:
    """The progress the API answers (by grid, and the city's) is what the plan implies."""
    problems = []
    items = {i["code"]: i for i in answer["items"]}
    for grid, figures in expected.items():
        got = {k: items[grid][k] for k in figures}
        if got != figures:
            problems.append(f"grid {grid}: {got}, expected {figures}")
    others = [g for g, i in items.items() if g not in expected and i["visits"]]
    problems += [f"grid {g}: visits no phone made" for g in others]
    city = {k: answer["city"][k] for k in next(iter(expected.values()))}
    summed = {k: sum(f[k] for f in expected.values()) for k in city}
    if city != summed:
        problems.append(f"city: {city}, expected {summed}")
    if problems:
        raise RuntimeError("progress wrong:\n" + "\n".join(problems[:10]))


# -- the run -------------------------------------------------------------------------------------
def run() -> list[Result]:
    """Serve the city, run both schedules for visits and the peer, check, report."""
    s = settings()
    engine = scratch_engine(s, "geo_bench_visits")
    import_city(engine, s, ("communities", "grids", "workers", "buildings"), city_dir())
    campaign = _campaign(engine, s)
    rng = random.Random(19)
    workers, buildings, households = _phones(engine, s, campaign["id"], rng)
    reader = add_user(engine, s, "bench-visits", "dispatcher", expires_days=1).token
    schedules = ((f"in bursts over {SPREAD_S:.0f} s", 1, SPREAD_S), ("all at once", 2, 0.0))
    tallies: dict[str, tuple[Tally, Tally, int]] = {}
    progress: dict[str, list[float]] = {}
    # one log line per request would be measured too
    with served(engine, GEO_WORKERS=str(SERVER_WORKERS), GEO_LOG_LEVEL="WARNING") as port:
        # warm-up: connections, plans and token caches, on the peer (it stores nothing)
        load(plan(rng, 1, workers, buildings, 2.0), port, campaign["id"], 1, peer=True)
        for label, round_, spread in schedules:
            phones = plan(rng, round_, workers, buildings, spread)
            peer = load(phones, port, campaign["id"], round_, peer=True)
            ours = load(phones, port, campaign["id"], round_, peer=False)
            held = check_stored(engine, campaign["id"], round_, phones, ours)
            path = f"/api/v1/campaigns/{campaign['id']}/progress?round={round_}"
            check_progress(_get(port, reader, path), expected_progress(phones, households))
            tallies[label] = (ours, peer, held)
        for by in ("grid", "worker"):
            path = f"/api/v1/campaigns/{campaign['id']}/progress?by={by}"
            progress[by] = [_timed_get(port, reader, path) for _ in range(PROGRESS_READS)]
    engine.dispose()
    return _results(tallies, progress, campaign)


def _campaign(engine: Engine, s: Settings) -> dict[str, Any]:
    """A city-wide campaign in two rounds: every community's buildings."""
    with engine.connect() as conn:
        communities = list(conn.execute(text("SELECT code FROM communities")).scalars())
    body = {
        "name": "全市入户排查 (benchmark)",
        "kind": "screening",
        "scope": {"communities": communities},
        "target": "households",
        "rounds": 2,
        "starts": "2020-01-01",
        "due": "2099-12-31",
    }
    return create_campaign(engine, s, body, created_by="bench")


def _phones(
    engine: Engine, s: Settings, campaign: int, rng: random.Random
) -> tuple[list[tuple[str, str, str]], dict[str, list[tuple[str, float, float]]], dict[str, int]]:
    """PHONES grids of the campaign with at least 10 buildings, a worker token for each,
    their buildings (code, lon, lat), and every building's households."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT cb.grid_code, cb.building_code, ST_X(b.geom), ST_Y(b.geom), "
                "cb.households FROM campaign_buildings cb JOIN buildings b "
                "ON b.code = cb.building_code WHERE cb.campaign_id = :c"
            ),
            {"c": campaign},
        ).all()
    buildings: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    households = {}
    for grid, code, lon, lat, n in found:
        buildings[grid].append((code, lon, lat))
        households[code] = n
    grids = rng.sample(sorted(g for g, b in buildings.items() if len(b) >= 10), PHONES)
    workers = []
    for i, grid in enumerate(grids):
        name = f"phone-{i:03d}"
        token = add_user(engine, s, name, "worker", [grid], expires_days=1).token
        workers.append((name, token, grid))
    return workers, buildings, households


def _get(port: int, token: str, path: str) -> dict[str, Any]:
    import urllib.request

    sent = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(sent, timeout=TIMEOUT_S) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _timed_get(port: int, token: str, path: str) -> float:
    started = time.perf_counter()
    _get(port, token, path)
    return (time.perf_counter() - started) * 1000


def _results(
    tallies: dict[str, tuple[Tally, Tally, int]],
    progress: dict[str, list[float]],
    campaign: dict[str, Any],
) -> list[Result]:
    rows = []
    for label, (ours, peer, held) in tallies.items():
        what = (
            f"{PHONES} phones × {VISITS} visits {label}, a third resent: {ours.answered:,} answers"
        )
        rows.append(
            Result(
                f"POST /api/v1/visits throughput, {what}",
                ours.rate(),
                "/livez, same phones and schedule",
                peer.rate(),
                "req/s",
                higher_is_better=True,
            )
        )
        for q in (50, 99) if label == "all at once" else (50, 95, 99):
            rows.append(
                Result(
                    f"POST /api/v1/visits latency p{q}, {label}",
                    ours.percentile(q),
                    f"/livez p{q}",
                    peer.percentile(q),
                    "ms",
                    digits=1,
                )
            )
        planned = PHONES * VISITS
        rows.append(
            Result(
                f"visits held exactly once, {label}: {held:,} of {planned:,} planned, "
                f"{ours.hung_up:,} hung up before the answer, {ours.replayed:,} resends "
                "replayed; progress per grid and city equal to the plan's",
                100.0 * held / planned,
                f"/livez: {peer.answered:,} answers, each 200",
                100.0,
                "%",
                higher_is_better=True,
                digits=1,
            )
        )
    for by, times in progress.items():
        rows.append(
            Result(
                f"GET progress?by={by} of the city-wide campaign ({campaign['buildings']:,} "
                f"buildings, 2 rounds, {2 * PHONES * VISITS:,} visits), median of "
                f"{PROGRESS_READS}",
                statistics.median(times),
                "goal: under 200 ms",
                200.0,
                "ms",
                digits=1,
            )
        )
    return rows
