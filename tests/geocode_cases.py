"""The geocoding test set: register addresses rewritten the ways residents and dispatchers
really write them, plus addresses that do not exist; and the two figures it measures.

Used by tests/test_geocode.py (a sample, with the goals asserted) and by the geocoding
benchmark (the whole demo register, figures into docs/PERFORMANCE.md).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import opencc

from geo_service.buildings.address import ParsedAddress, _cn_number, parse

DIGITS = "零一二三四五六七八九"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# Characters people type for another of the same sound (园/圆, 苑/院 ...).
HOMOPHONES = {"园": "圆", "苑": "院", "邸": "底", "庭": "廷", "寓": "遇", "雅": "亚", "嘉": "佳"}
FAKE_ROADS = ("红旗路", "飞燕街", "青松大道", "白鹭一路")
FAKE_ESTATES = ("云栖花园", "紫荆苑", "蓝湾新村", "松鹤家园")
# A numeral in a road's name, as the register writes it (合肥九路, 人民十二街).
ROAD_NUMBER = re.compile(r"([零一二三四五六七八九十百]+)(?:大道|大街|路|街|巷)$")
NONSENSE = ("请尽快处理", "asdfgh", "？？？", "喂你好", "楼下很吵", "123456")


@dataclass(frozen=True, slots=True)
class Case:
    """One query: its text, the building it names (None: it names none), how it was made."""

    text: str
    truth: str | None
    variant: str


def chinese(n: int) -> str:
    """A number as people say it: 18 -> 十八, 3 -> 三, 105 -> 一百零五."""
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return "十" + (DIGITS[n % 10] if n % 10 else "")
    if n < 100:
        return DIGITS[n // 10] + "十" + (DIGITS[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        tail = "" if rest == 0 else ("零" + DIGITS[rest] if rest < 10 else chinese(rest))
        if 10 <= rest < 20:
            tail = "一" + tail
        return DIGITS[n // 100] + "百" + tail
    return str(n)


@dataclass(frozen=True, slots=True)
class Register:
    """The register as the test set sees it: each building's parts, and what is unique."""

    parts: dict[str, ParsedAddress]
    estate_building: Counter[tuple[str | None, str | None]]
    road_door_building: Counter[tuple[str | None, str | None, str | None]]
    estates: frozenset[str]
    roads: frozenset[str]

    @classmethod
    def of(cls, buildings: Iterable[tuple[str, str]]) -> Register:
        """From (code, address) pairs."""
        parts = {code: parse(address) for code, address in buildings}
        return cls(
            parts,
            Counter((p.estate, p.building) for p in parts.values()),
            Counter((p.road, p.door, p.building) for p in parts.values()),
            frozenset(p.estate for p in parts.values() if p.estate),
            frozenset(p.road for p in parts.values() if p.road),
        )


def _variants(p: ParsedAddress, reg: Register, s2t: Callable[[str], str]) -> dict[str, str]:
    road, door, estate, bld = p.road or "", p.door or "", p.estate or "", p.building or ""
    admin = f"{p.province or ''}{p.city or ''}{p.district or ''}"
    body = f"{road}{door}号{estate}{bld}栋"
    out = {
        "full": admin + body,
        "no_province_city": (p.district or "") + body,
        "no_admin": body,
        "chinese_numerals": f"{road}{chinese(int(door))}号{estate}{chinese(int(bld))}栋"
        if door.isdigit() and bld.isdigit()
        else body,
        "full_width": admin.replace("省", "省 ") + body.translate(FULL_WIDTH),
        "zhuang": f"{road}{door}号{estate}{bld}幢",
        "haolou": f"{road}{door}号{estate}{bld}号楼",
        "with_unit_room": f"{body}2单元301室",
        "traditional": s2t(admin + body),
        "spaces_punct": f"{admin}，{road} {door}号 {estate}（{bld}栋）",
        "typo_hao": f"{road}{door}好{estate}{bld}栋",
        "dashed": f"{road}{door}号{estate}{bld}-2-301",
        "no_hao": f"{road}{door} {estate}{bld}栋",
        "mixed_numerals": f"{road}{door}号{estate}{chinese(int(bld))}号楼"
        if bld.isdigit()
        else body,
    }
    numbered = ROAD_NUMBER.search(road)
    if numbered:  # 合肥九路 as people type it: 合肥9路, 合肥９路
        digits = _cn_number(numbered.group(1))
        if digits:
            typed = road[: numbered.start(1)] + digits + road[numbered.end(1) :]
            out["road_digits"] = f"{typed}{door}号{estate}{bld}栋"
            out["road_full_width_digits"] = f"{typed.translate(FULL_WIDTH)}{door}号{estate}{bld}栋"
    other_form = road[:-1] + ("街" if road.endswith("路") else "路")
    if road[-1:] in "路街" and other_form not in reg.roads:
        out["road_typo"] = f"{other_form}{door}号{estate}{bld}栋"
    if reg.road_door_building[(p.road, p.door, p.building)] == 1:
        out["no_estate"] = f"{road}{door}号{bld}栋"
    if reg.estate_building[(p.estate, p.building)] == 1:
        out["estate_only"] = f"{estate}{bld}栋"
    typo = next(
        (
            estate.replace(c, w, 1)
            for c, w in HOMOPHONES.items()
            if c in estate and estate.replace(c, w, 1) not in reg.estates
        ),
        None,
    )
    if typo:
        out["estate_typo"] = f"{road}{door}号{typo}{bld}栋"
    return out


def cases(reg: Register, *, sample: int | None = None, seed: int = 7) -> list[Case]:
    """Every variant of (a sample of) the register's buildings, and non-existent addresses."""
    rng = random.Random(seed)
    codes = sorted(reg.parts)
    if sample is not None and sample < len(codes):
        codes = sorted(rng.sample(codes, sample))
    to_traditional = opencc.OpenCC("s2t").convert
    out: list[Case] = []
    for code in codes:
        p = reg.parts[code]
        out += [Case(t, code, v) for v, t in _variants(p, reg, to_traditional).items()]
    # Addresses that name no building of the register.
    for code in codes[: max(1, len(codes) // 4)]:
        p = reg.parts[code]
        out += [
            Case(f"{p.road}{p.door}号{p.estate}{int(p.building or 0) + 90}栋", None, "no_building"),
            Case(f"{p.road}{int(p.door or 0) + 901}号{rng.choice(FAKE_ESTATES)}1栋", None,
                 "no_door"),
            Case(f"{rng.choice(FAKE_ROADS)}{p.door}号{rng.choice(FAKE_ESTATES)}{p.building}栋",
                 None, "no_road"),
        ]  # fmt: skip
    out += [Case(t, None, "nonsense") for t in NONSENSE]
    return out


@dataclass(frozen=True, slots=True)
class Figures:
    """Top-1 accuracy over the queries that name a building; confident wrong answers (a
    building other than the one named, with confidence >= 0.8) over all queries."""

    queries: int
    real: int
    top1: float
    confident_wrong: float
    by_variant: dict[str, float]  # share answered well: the right building, or none confident


def measure(results: list[tuple[Case, str | None, float]]) -> Figures:
    """Figures from (case, top candidate's building code or None, its confidence)."""
    real = [(c, got) for c, got, _ in results if c.truth is not None]
    right = sum(got == c.truth for c, got in real)
    wrong = sum(1 for c, got, conf in results if got is not None and got != c.truth and conf >= 0.8)
    by: dict[str, list[bool]] = {}
    for c, got, conf in results:
        # A query naming no building is answered well when no building comes back confident.
        ok = got == c.truth if c.truth is not None else got is None or conf < 0.8
        by.setdefault(c.variant, []).append(ok)
    return Figures(
        queries=len(results),
        real=len(real),
        top1=right / len(real) if real else 0.0,
        confident_wrong=wrong / len(results) if results else 0.0,
        by_variant={v: sum(ok) / len(ok) for v, ok in sorted(by.items())},
    )
