"""Address normalisation and parsing in GB/T 37149 order; pure text, no database.

`normalize` turns what residents say on the phone and dispatchers paste into one spelling;
`parse` splits it into administrative area, road + door number, estate, building, unit and
room; `match_key` is the compact canonical string used to index and match buildings.

Rules chosen for ambiguous input (all deliberate, all tested):

- Chinese numerals become digits only right before a number word (号 栋 幢 座 单元 门 室 户
  房 层 楼), or at the very end after a building or unit ("3栋1单元五零二"). Names keep theirs:
  翠湖三路, 五松路, 一品花园, 第三网格. A run that starts with 百 or 千 stays as written
  (千户 is a name, not 1000户), and so does a malformed run (十十).
- 门 is a unit (1门 -> 1单元) only when a number precedes it and the text ends or a number
  follows, so 东门 and 三门峡 are left alone.
- "N楼" is a building (N栋) when no building was given before it and it is followed by a unit
  (3楼1单元), by a room whose number does not start with N (3楼502), or by nothing after an
  estate (金山花园3楼). Otherwise it is a floor, spelled "N层": 3栋5楼, 5楼502 (room 502
  is on floor 5), 长江西路18号3楼. Floors have no field and stay in `rest`.
- "N号" is the door number right after a road (or first of all); after an estate it is a
  building (金山花园3号 = 3号楼); after a building or unit it is a room (1单元502号).
- A bare number is the door after a road, the building after an estate or door, the room after
  a building, unit or floor. Dashed numbers: 18-2 after a road is a door; after an estate
  3-1-502 is building-unit-room and 3-502 building-room; after a building 1-502 is unit-room.
- Separators between two digits become "-" ("金山花园 3 1 502" -> 3-1-502), elsewhere they
  are dropped; "#" after a digit means 号 (5#楼 -> 5栋); "第" before a number word goes
  (第三栋 -> 3栋), unless it ends a word of a name (书香门第5座: the estate 书香门第);
  ASCII letters are upper-cased (a座 -> A栋); traditional characters become simplified
  (OpenCC t2s, applied to a fixed point); a leading 地址/住址 label is skipped.
- A number inside a road's name is written in Chinese numerals, as registers write road
  names (合肥9路 -> 合肥九路), and a lane after a road is part of the road's name
  (XX路12弄3号: road XX路十二弄, door 3).
- Typos (TYPO_FIXES) are fixed only right after an Arabic digit or inside a listed bigram:
  十八好 stays as typed, 五好家庭 and 东门 are names.
- Province names come from the national table (34 entries); short forms (安徽, 北京) count
  only when an administrative part follows, so 江西路 and 北京路 stay roads. Cities, districts
  and counties are recognised by their suffixes; a two-character short city (铜陵) counts
  when a district follows, or a road or estate follows a province. Repeats are skipped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Final, NamedTuple

__all__ = [
    "INDEX_FIELDS",
    "TYPO_FIXES",
    "ParsedAddress",
    "TypoFix",
    "half_width",
    "index_row",
    "index_rows",
    "match_key",
    "normalize",
    "parse",
]


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """The parts of one address, each None when not given; `rest` holds what was not placed."""

    province: str | None = None  # 安徽省 (short forms expanded)
    city: str | None = None  # 铜陵市; a municipality (北京市) sits here, not in province
    district: str | None = None  # 铜官区, a county or a county-level city
    road: str | None = None  # 长江西路, 石城大道, 义安街
    door: str | None = None  # door number on the road, "18" or "18-2"
    estate: str | None = None  # 金山花园, 幸福小区, or a community such as 金山社区
    building: str | None = None  # "3" (also "A", "3A" from A座, 3A栋)
    unit: str | None = None  # "1"
    room: str | None = None  # "502"
    rest: str = ""  # unplaced pieces of normalize(text), in reading order (floors, noise)
    place: str | None = None  # a place word after a name: 门口, 东门, 附近, 对面 ... (a landmark)
    cross: str | None = None  # the other road of an intersection (解放九路与胜利八路交叉口)


class TypoFix(NamedTuple):
    """One conservative correction: `wrong` becomes `right`, only in the context `where`."""

    wrong: str
    right: str
    where: str  # "after_number" | "building_end" | "anywhere" | "road_noise"


# Typos from pinyin input and phone dictation. Each touches a character only right after an
# Arabic digit or inside the listed bigram, so names are never rewritten. "road_noise" entries
# are 路 + one character, removed in one step.
TYPO_FIXES: Final[tuple[TypoFix, ...]] = (
    TypoFix("好", "号", "after_number"),  # 18好 -> 18号 (hao)
    TypoFix("动", "栋", "after_number"),  # 3动 -> 3栋 (dong)
    TypoFix("是", "室", "after_number"),  # 502是 -> 502室 (shi)
    TypoFix("事", "室", "after_number"),  # 502事 -> 502室 (shi)
    # 东 is a common name character (东门, 东路), so only when it ends a building part.
    TypoFix("东", "栋", "building_end"),  # 3东1单元, 金山花园3东
    TypoFix("单原", "单元", "anywhere"),
    TypoFix("单远", "单元", "anywhere"),
    # "长江西路口" / "长江西路段": position noise; not before 镇/村/乡 (路口镇 is a town).
    TypoFix("路口", "路", "road_noise"),
    TypoFix("路段", "路", "road_noise"),
)

ROAD_SUFFIXES: Final = ("大道", "大街", "胡同", "路", "街", "道", "巷", "弄")
ESTATE_SUFFIXES: Final = (
    "花园", "小区", "苑", "新村", "家园", "公寓", "名邸", "雅居", "嘉园", "华庭", "社区", "村",
    "园", "庭", "府", "邸", "居", "城", "湾", "里", "坊", "庄", "院", "大厦", "大楼", "广场",
    "公馆", "山庄", "宿舍", "阁", "轩", "墅", "期", "区",
)  # fmt: skip

# Provincial-level divisions (GB/T 2260): the list is short and closed, so a table recognises
# short forms (安徽铜陵) and common typos of 省 can still fall back on the generic pattern.
_PROVINCES: Final = (
    "河北省", "山西省", "辽宁省", "吉林省", "黑龙江省", "江苏省", "浙江省", "安徽省", "福建省",
    "江西省", "山东省", "河南省", "湖北省", "湖南省", "广东省", "海南省", "四川省", "贵州省",
    "云南省", "陕西省", "甘肃省", "青海省", "台湾省", "内蒙古自治区", "广西壮族自治区",
    "西藏自治区", "宁夏回族自治区", "新疆维吾尔自治区", "香港特别行政区", "澳门特别行政区",
)  # fmt: skip
_MUNICIPALITIES: Final = ("北京市", "天津市", "上海市", "重庆市")


def _short_name(full: str) -> str:
    """安徽省 -> 安徽, 广西壮族自治区 -> 广西, 北京市 -> 北京."""
    for ending in ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "特别行政区", "省", "市"):
        if full.endswith(ending):
            return full[: -len(ending)]
    return full


_PROVINCE_NAMES: Final[dict[str, tuple[str, bool]]] = {  # spelling -> (full name, is short)
    **{_short_name(n): (n, True) for n in (*_PROVINCES, *_MUNICIPALITIES)},
    **{n: (n, False) for n in (*_PROVINCES, *_MUNICIPALITIES)},
}

_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
_CN_DIGITS: Final = {
    "零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
    "七": 7, "八": 8, "九": 9,
}  # fmt: skip
_CN_UNITS: Final = {"十": 10, "百": 100, "千": 1000}
_CN_NUM = "".join(_CN_DIGITS) + "".join(_CN_UNITS)
_MAX_NUMERAL = 12  # characters; 九千九百九十九 has 7, a spoken phone number would have 11

# ------------------------------------------------------------------ normalize: regexes

_DROP = re.compile(r"[\W_]+")  # punctuation, symbols, spaces, controls, emoji
_HASH_AS_HAO = re.compile(r"(?<=[0-9])#")  # 5#楼 = 5号楼, before # is dropped
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _typo_regex(fixes: tuple[TypoFix, ...]) -> re.Pattern[str]:
    """One alternation for the whole TYPO_FIXES table (one pass over the text)."""
    unit_spellings = "|".join(["单元", *(f.wrong for f in fixes if f.right == "单元")])
    after_digit = []
    for f in fixes:
        w = re.escape(f.wrong)
        if f.where == "after_number":
            after_digit.append(w)
        elif f.where == "building_end":
            # Chinese numerals count as the next number: they become digits only later
            after_digit.append(f"{w}(?=$|[0-9{_CN_NUM}]|{unit_spellings})")
    # The digit is matched, not looked behind at, so the scan can skip to digits quickly.
    parts = [f"(?P<digit>[0-9])(?P<wrong>{'|'.join(after_digit)})"]
    parts += [re.escape(f.wrong) for f in fixes if f.where == "anywhere"]
    # One class for all road noise, possessive: 路口段口 goes in one step, so normalize stays
    # idempotent (a second pass finds nothing left to remove).
    noise = "".join(re.escape(f.wrong[1:]) for f in fixes if f.where == "road_noise")
    if noise:
        parts.append(f"路[{noise}]++(?![镇村乡])")
    return re.compile("|".join(parts))


_TYPO = _typo_regex(TYPO_FIXES)
_TYPO_RIGHT: Final = {f.wrong: f.right for f in TYPO_FIXES}

_NUMBER_WORD = rf"号|栋|幢|座|单元|门(?:$|[0-9{_CN_NUM}])|室|户|房|层|楼"
_CN_BEFORE_UNIT = re.compile(rf"[{_CN_NUM}]+(?={_NUMBER_WORD})")
_CN_AT_END = re.compile(rf"(?<=[0-9])(单元|栋|楼+|层|门)([{_CN_NUM}]+)$")
# 第3栋, 第三栋 -> 3栋; never right after a number, where dropping 第 would join two numbers
# 第 before a numbered part goes (第三栋 -> 3栋), except where it ends a word of a name:
# 书香门第, 状元府第, 及第 (an estate named so keeps its name whole).
_ORDINAL = re.compile(rf"(?<![0-9{_CN_NUM}门府宅及甲])第+(?=[0-9{_CN_NUM}]+(?:{_NUMBER_WORD}))")
# Building words, swallowing repeats and a trailing 楼: 3号楼, 3栋楼, 3幢, A座 -> 3栋 / A栋.
# 3号楼 is building 3; 95号楼下 is downstairs at number 95 (楼下/楼上 are place words).
_BUILDING_WORD = re.compile(r"号(?:楼(?![下上])|[栋幢座])[楼栋幢座]*|[栋幢座][楼栋幢座]*")
# A number inside a road's name (合肥9路, 人民５路): written as the register writes road names,
# in Chinese numerals (合肥九路), so both spellings meet. Not after a number word (3栋2街 is
# not a road name), not at the start (1路 is a bus line).
_ROAD_NUMBER = re.compile(
    rf"(?<=[{_CJK}])(?<![号栋幢座室户房层楼门元弄])[0-9]{{1,3}}(?=大道|大街|路|街(?!道)|巷)"
)
# A lane of a road (XX路12弄3号, 12弄 of XX路): its number written like road names' numbers,
# so that the lane reads as part of the road's name (XX路十二弄) and its door as the door.
_LANE_NUMBER = re.compile(r"(?:(?<=路)|(?<=街)|(?<=巷)|(?<=道)|(?<=胡同))[0-9]{1,3}(?=弄)")
_LANE_AFTER_ROAD = re.compile(rf"[{_CN_NUM}]+弄")
_LOWER = re.compile(r"[a-z]")
_ROOM_WORD = re.compile(r"(?<=[0-9])(?:号房|[室户房])+")
_DOOR_AS_UNIT = re.compile(r"(?<=[0-9])门(?=$|[0-9])")
_LOU = re.compile(r"([0-9]+)楼+")
_BUILDING_MARK = re.compile(r"[0-9A-Z]栋")
_ROOM_AHEAD = re.compile(r"([0-9]+)(?:室|$)")
_UNIT_AHEAD = re.compile(r"[0-9]+单元")


@lru_cache(maxsize=4096)
def _cn_number(run: str) -> str | None:
    """Digits for a Chinese numeral (十八 -> 18, 五零二 -> 502), None when it is not a number."""
    if len(run) > _MAX_NUMERAL:
        return None  # no address number is that long; also keeps the cache small
    if not any(ch in _CN_UNITS for ch in run):
        return "".join(str(_CN_DIGITS[ch]) for ch in run)  # spoken digit by digit
    if run[0] in "百千":
        return None  # 千户, 百层: names, not numbers
    total, digit, last_unit, after_zero = 0, None, 10_000, False
    for ch in run:
        if ch in _CN_UNITS:
            unit = _CN_UNITS[ch]
            if unit >= last_unit or digit == 0 or (digit is None and (unit != 10 or total)):
                return None
            total += (1 if digit is None else digit) * unit
            last_unit, digit, after_zero = unit, None, False
        elif digit is None:
            digit = _CN_DIGITS[ch]
        elif digit == 0:  # 一百零五: the zero only holds a place
            digit, after_zero = _CN_DIGITS[ch], True
        else:
            return None  # two digits in a row inside a positional number
    if digit:
        # 三百五 says 350, 三百零五 says 305
        total += digit if after_zero or last_unit == 10 else digit * last_unit // 10
    return str(total)


_CN_DIGIT_CHARS: Final = "零一二三四五六七八九"


def cn_numeral(n: int) -> str:
    """The Chinese numeral of 0 <= n < 1000, as road names write it: 9 九, 10 十, 12 十二,
    20 二十, 105 一百零五, 110 一百一十."""
    d = _CN_DIGIT_CHARS
    if n < 10:
        return d[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else d[tens]) + "十" + (d[ones] if ones else "")
    hundreds, rest = divmod(n, 100)
    head = d[hundreds] + "百"
    if rest == 0:
        return head
    if rest < 10:
        return head + "零" + d[rest]
    tens, ones = divmod(rest, 10)
    return head + d[tens] + "十" + (d[ones] if ones else "")


def _sub_road_number(m: re.Match[str]) -> str:
    """Replacement for _ROAD_NUMBER: the number of a road's name as the register writes it."""
    return cn_numeral(int(m.group()))


def _sub_cn_before_unit(m: re.Match[str]) -> str:
    """Replacement for _CN_BEFORE_UNIT: digits, or the run unchanged."""
    return _cn_number(m.group()) or m.group()


def _sub_cn_at_end(m: re.Match[str]) -> str:
    """Replacement for _CN_AT_END: keep the unit word, convert the trailing numeral."""
    return m.group(1) + (_cn_number(m.group(2)) or m.group(2))


def _sub_building_word(m: re.Match[str]) -> str:
    """Replacement for _BUILDING_WORD: 栋 after 3, 3A or a lone letter (A座), else unchanged."""
    s, i = m.string, m.start()
    before = s[i - 1] if i else ""
    if "0" <= before <= "9" or ("A" <= before <= "Z" and not (i > 1 and "A" <= s[i - 2] <= "Z")):
        return "栋"
    return m.group()


def _sub_typo(m: re.Match[str]) -> str:
    """Replacement for _TYPO."""
    if m.group("digit"):
        return m.group("digit") + _TYPO_RIGHT[m.group("wrong")]
    text = m.group()
    return _TYPO_RIGHT.get(text) or _TYPO_RIGHT[text[:2]]  # road noise: 路口口 -> 路口 -> 路


def _sub_drop(m: re.Match[str]) -> str:
    """Replacement for _DROP: a separator between two digits becomes "-", else nothing."""
    s, (i, j) = m.string, m.span()
    return "-" if i > 0 and j < len(s) and "0" <= s[i - 1] <= "9" and "0" <= s[j] <= "9" else ""


def _lou_rule(s: str) -> str:
    """Decide each "N楼": building (N栋) or floor (N层); see the module docstring."""
    marked = _BUILDING_MARK.search(s)
    building_at = marked.start() if marked else len(s)  # where the first building was given

    def decide(m: re.Match[str]) -> str:
        nonlocal building_at
        number, start, end = m.group(1), m.start(), m.end()
        if building_at < start:
            return f"{number}层"  # 3栋5楼, and 3楼1单元5楼 once 3楼 was taken as the building
        room = _ROOM_AHEAD.match(s, end)
        if _UNIT_AHEAD.match(s, end):
            is_building = True  # 3楼1单元: floors have no units
        elif room is not None and end < len(s):
            r = room.group(1)
            is_building = not (r.startswith(number) and len(r) == len(number) + 2)  # 5楼502
        else:
            is_building = end == len(s) and s[:start].endswith(ESTATE_SUFFIXES)  # 金山花园3楼
        if not is_building:
            return f"{number}层"
        building_at = start
        return f"{number}栋"

    return _LOU.sub(decide, s)


@cache
def _t2s() -> Callable[[str], str]:
    """The OpenCC traditional -> simplified converter, loaded once on first use (~16 ms)."""
    import opencc  # deferred: most callers never see a traditional character

    converter = opencc.OpenCC("t2s.json")
    return converter.convert


def _simplified(s: str) -> str:
    """Traditional -> simplified, repeated to a fixed point (OpenCC maps 薴 -> 苧 -> 苎)."""
    if s.isascii():
        return s
    convert = _t2s()
    for _ in range(4):
        out = convert(s)
        if out == s:
            break
        s = out
    return s


def half_width(text: str) -> str:
    """Full-width digits, letters, signs and spaces as their ASCII forms (NFKC): what a Chinese
    input method types (１１７．８１, －３０，ａ座) read as what it means.

    The one such normaliser: addresses start here, and coordinates typed as text
    (`coords`) are read through it, so every door reads full-width input alike.
    """
    return unicodedata.normalize("NFKC", text)


def _clean(text: str) -> str:
    """NFKC, drop separators, upper-case ASCII letters; repeated until NFKC is stable."""
    s = text
    for _ in range(4):
        s = half_width(s)
        if "#" in s:
            s = _HASH_AS_HAO.sub("号", s)
        s = _DROP.sub(_sub_drop, s)
        # dropping a separator can join characters that NFKC composes (Hangul jamo)
        if unicodedata.is_normalized("NFKC", s):
            break
    return s.translate(_ASCII_UPPER) if _LOWER.search(s) else s


def normalize(text: str) -> str:
    """One canonical spelling of an address: half-width, simplified, digits, canonical words."""
    s = _simplified(_clean(text))
    if not s:
        return s
    s = _TYPO.sub(_sub_typo, s)
    if "第" in s:  # before numerals: 一门第3栋 must not reveal a new "门3" on a second pass
        s = _ORDINAL.sub("", s)
    s = _CN_BEFORE_UNIT.sub(_sub_cn_before_unit, s)
    s = _BUILDING_WORD.sub(_sub_building_word, s)
    s = _ROOM_WORD.sub("室", s)
    s = _CN_AT_END.sub(_sub_cn_at_end, s)
    s = _DOOR_AS_UNIT.sub("单元", s)  # after _CN_AT_END: 1门五零二 needs its digits first
    if "楼" in s:
        s = _lou_rule(s)
    s = _ROAD_NUMBER.sub(_sub_road_number, s)
    return _LANE_NUMBER.sub(_sub_road_number, s) if "弄" in s else s


# ------------------------------------------------------------------ parse: administrative area

_PROVINCE_RE = re.compile("|".join(sorted(_PROVINCE_NAMES, key=len, reverse=True)))
_GENERIC_PROVINCE = re.compile(rf"[{_CJK}]{{2,3}}省|[{_CJK}]{{2,6}}?自治区")
_CITY_RE = re.compile(rf"[{_CJK}]{{2,4}}?(?:市|自治州|地区|盟)")
_DISTRICT_RE = re.compile(rf"[{_CJK}]{{1,4}}?[区县旗]")
_TOWN_RE = re.compile(rf"[{_CJK}]{{1,5}}?(?:街道|镇|乡)")
_SHORT_CITY_RE = re.compile(rf"[{_CJK}]{{2}}")
_ADMIN_MARK = re.compile(r"[省市区县旗州盟镇乡]|街道")  # every suffixed administrative name has one
_LABEL_RE = re.compile(r"(?:家庭|详细|居住|现|联系|收货)?(?:住址|地址)(?:是|为|在)?")
_ROAD_AT = re.compile(rf"[{_CJK}0-9]{{2,8}}?(?:大道|大街|胡同|路|街(?!道)|(?<!街)道|巷|弄)")
_ESTATE_AT = re.compile(rf"[{_CJK}]{{2,8}}?(?:{'|'.join(ESTATE_SUFFIXES)})")
# Not a district / city / town when the name runs on into these: 东方都市花园, 新镇路.
_NOT_AFTER_ADMIN: Final = (*ROAD_SUFFIXES, "花园", "小区", "新村", "家园", "公寓", "广场",
                           "大厦", "苑", "场", "政", "民")  # fmt: skip
_NOT_DISTRICT_ENDINGS: Final = ("小区", "社区", "园区", "校区", "片区", "厂区", "营区", "景区",
                                "街区", "东区", "西区", "南区", "北区", "中区")  # fmt: skip
_ONE_CHAR_DISTRICTS: Final = ("郊区", "矿区", "城区")  # real districts: 铜陵市郊区
_NOT_SHORT_CITY_START: Final = frozenset("路街道巷弄省市区县旗镇乡")


@dataclass
class _Parts:
    """Mutable parts while parsing; `prev` is the kind of the last part placed."""

    province: str | None = None
    city: str | None = None
    district: str | None = None
    road: str | None = None
    door: str | None = None
    estate: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    rest: list[str] = field(default_factory=list)
    prev: str = "start"
    place: str | None = None
    cross: str | None = None


def _district_at(s: str, pos: int, *, strict: bool = False) -> re.Match[str] | None:
    """A district or county starting at pos; strict wants a name of two characters or more."""
    m = _DISTRICT_RE.match(s, pos)
    if m is None:
        return None
    name = m.group()
    if name.endswith(_NOT_DISTRICT_ENDINGS) or s.startswith(_NOT_AFTER_ADMIN, m.end()):
        return None
    if len(name) == 2 and (strict or name not in _ONE_CHAR_DISTRICTS):
        return None
    return m


def _city_at(s: str, pos: int) -> re.Match[str] | None:
    """A prefecture-level city (…市, …自治州, …地区, …盟) starting at pos."""
    m = _CITY_RE.match(s, pos)
    if m is None or s.startswith(_NOT_AFTER_ADMIN, m.end()):
        return None
    return m


def _short_city_at(s: str, pos: int, *, after_province: bool) -> int | None:
    """End of a two-character city without 市 (铜陵铜官区, 安徽铜陵长江西路), else None."""
    m = _SHORT_CITY_RE.match(s, pos)
    if m is None or s[pos] in _NOT_SHORT_CITY_START or s[pos + 1] in _NOT_SHORT_CITY_START:
        return None  # 北京大道: 大道 is a road, not a city
    end = m.end()
    if _district_at(s, end, strict=True) is not None:
        return end
    if after_province and (
        end == len(s)
        or (s[end] not in _NOT_SHORT_CITY_START and _ROAD_AT.match(s, end) is not None)
        or _ESTATE_AT.match(s, end) is not None
    ):
        return end
    return None


def _admin_follows(s: str, pos: int) -> bool:
    """True when an administrative part (or nothing) follows a short province name."""
    return (
        pos == len(s)
        or _city_at(s, pos) is not None
        or _district_at(s, pos) is not None
        or _short_city_at(s, pos, after_province=True) is not None
    )


def _fill(p: _Parts, slot: str, value: str) -> bool:
    """Put value in an empty slot, or accept a repeat of the same value; False on a clash."""
    current = getattr(p, slot)
    if current is None:
        setattr(p, slot, value)
        return True
    return bool(current == value)


def _admin_step(s: str, pos: int, p: _Parts) -> int | None:
    """Place one administrative part at pos and return where the next one starts."""
    m = _PROVINCE_RE.match(s, pos)
    if m is not None and not s.startswith(_NOT_AFTER_ADMIN, m.end()):  # 北京大道, 江西路
        full, short = _PROVINCE_NAMES[m.group()]
        if not short or _admin_follows(s, m.end()):
            slot = "city" if full in _MUNICIPALITIES else "province"
            return m.end() if _fill(p, slot, full) else None
    if (p.province is None or p.city is not None) and not _ADMIN_MARK.search(s, pos, pos + 10):
        return None  # fast exit into the body; only a short city (安徽铜陵…) lacks a mark
    m = _GENERIC_PROVINCE.match(s, pos)
    if m is not None and not s.startswith(_NOT_AFTER_ADMIN, m.end()):
        return m.end() if _fill(p, "province", m.group()) else None
    m = _city_at(s, pos)
    if m is not None:
        if _fill(p, "city", m.group()) or _fill(p, "district", m.group()):  # county-level city
            return m.end()
        return None
    if p.city is None:
        end = _short_city_at(s, pos, after_province=p.province is not None)
        if end is not None:
            p.city = s[pos:end] + "市"
            return end
    m = _district_at(s, pos)
    if m is not None:
        return m.end() if _fill(p, "district", m.group()) else None
    if p.province or p.city or p.district:
        m = _TOWN_RE.match(s, pos)  # 街道 / 镇 / 乡 has no field of its own
        if m is not None and not s.startswith(_NOT_AFTER_ADMIN, m.end()):
            p.rest.append(m.group())
            return m.end()
    return None


def _parse_admin(s: str, p: _Parts) -> int:
    """Place the administrative prefix (repeats allowed); return where the body starts."""
    label = _LABEL_RE.match(s)
    pos = label.end() if label else 0
    while pos < len(s):
        nxt = _admin_step(s, pos, p)
        if nxt is None:
            break
        pos = nxt
    return pos


# ------------------------------------------------------------------ parse: body

_ROAD_SUFFIX_RE = re.compile(r"大道|大街|胡同|路|街(?!道)|(?<!街)道|巷|弄")
_PART = re.compile(
    r"(?P<n>[A-Z]?[0-9]+(?:-[0-9]+)*[A-Z]?|[A-Z](?=栋))"
    r"(?:(?P<kind>栋|单元|室|层|号(?!大道|大街|胡同|路|街|道|巷|弄))|(?![0-9号]))"
)
_GRID_RE = re.compile(rf"第?[0-9{_CN_NUM}]+网格")
_LEADING_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")
_NUMBER_KINDS: Final = frozenset({"栋", "单元", "室", "层", "号", ""})
# A bare number after an estate: 3, 3-502, 3-1-502.
_AFTER_ESTATE: Final = {1: ("building",), 2: ("building", "room"), 3: ("building", "unit", "room")}


def _assign(p: _Parts, slots: tuple[str, ...], values: list[str]) -> bool:
    """Fill several slots at once, only when their count matches and all are empty."""
    if len(slots) != len(values) or any(getattr(p, s) is not None for s in slots):
        return False
    for slot, value in zip(slots, values, strict=True):
        setattr(p, slot, value)
    p.prev = slots[-1]
    return True


def _place_number(p: _Parts, raw: str, value: str, kind: str) -> None:
    """Place one number part (kind is its word: 栋 单元 室 层 号, or "" when bare)."""
    parts = value.split("-")
    prev = p.prev
    placed = False
    if kind == "栋":
        placed = _assign(p, ("building",), [value])
    elif kind == "单元":
        placed = _assign(p, ("unit",), parts) or _assign(p, ("building", "unit"), parts)
    elif kind == "层":
        p.prev = "floor"  # a floor has no field: keep the words in rest
    elif kind == "号":
        if prev in ("start", "road") and p.door is None:
            placed = _assign(p, ("door",), [value])
        elif prev in ("estate", "door"):
            placed = _assign(p, ("building",), [value])
        elif prev in ("building", "unit", "floor"):
            placed = _assign(p, ("room",), [value])
    elif kind == "室" and len(parts) == 1:
        placed = _assign(p, ("room",), parts)
    elif prev == "road" and kind == "" and len(parts) <= 2:
        placed = _assign(p, ("door",), [value])
    elif prev in ("estate", "door"):
        layout = _AFTER_ESTATE.get(len(parts))
        placed = layout is not None and _assign(p, layout, parts)
    elif prev == "building":
        placed = _assign(p, ("room",), parts) or _assign(p, ("unit", "room"), parts)
    elif prev in ("unit", "floor"):
        placed = _assign(p, ("room",), [value]) if len(parts) <= 2 else False
    if not placed:
        p.rest.append(raw)


def _place_name(p: _Parts, text: str, next_kind: str | None) -> None:
    """Place a run of name text: a road, an estate, or both (长江西路金山花园); else rest."""
    if p.road is None:
        m = _ROAD_SUFFIX_RE.search(text, 2)  # two name characters at least: 五松路, 义安街
        if m is not None and text[m.end() :] not in ESTATE_SUFFIXES:  # 翠湖路小区 is an estate
            end = m.end()
            lane = _LANE_AFTER_ROAD.match(text, end)
            if lane is not None:  # XX路十二弄: a lane is part of the road's name
                end = lane.end()
            p.road, p.prev = text[:end], "road"
            text = text[end:]
    if not text:
        return
    is_estate = text.endswith(ESTATE_SUFFIXES) or next_kind in _NUMBER_KINDS
    if p.estate is None and len(text) >= 2 and is_estate and not text.endswith(ROAD_SUFFIXES):
        i = text.find("社区")
        if i > 0 and len(text) - i - 2 >= 2:  # 金山社区幸福小区: the estate is the finer part
            p.rest.append(text[: i + 2])
            text = text[i + 2 :]
        p.estate, p.prev = text, "estate"
    else:
        p.rest.append(text)


def _parse_body(body: str, p: _Parts) -> None:
    """Walk the body as alternating name runs and number parts."""
    if "网格" in body:  # a grid designation is no part of an address
        p.rest.extend(g.group() for g in _GRID_RE.finditer(body))
        body = _GRID_RE.sub("", body)
    pos = 0
    for m in _PART.finditer(body):
        kind = m.group("kind") or ""
        if m.start() > pos:
            _place_name(p, body[pos : m.start()], kind)
        value = m.group("n")
        if "0" in value:
            value = _LEADING_ZEROS.sub("", value)  # 03栋 is 3栋
        _place_number(p, m.group(), value, kind)
        pos = m.end()
    if pos < len(body):
        _place_name(p, body[pos:], None)


# How residents point at a place rather than give its address: an estate (or a building)
# followed by a place word (东方小区门口, 梧桐雅居东门, 锦绣名邸附近, xx对面), and two streets
# where they meet (A路与B路交叉口, A路和B路路口, A路/B路交汇处, A路B路十字路口).
PLACE_WORDS: Final = (
    "正门口", "大门口", "东门口", "西门口", "南门口", "北门口", "门口", "大门", "正门", "东门",
    "西门", "南门", "北门", "侧门", "后门", "附近", "旁边", "边上", "周边", "对面", "门前",
    "后面", "前面", "里面", "楼下",
)  # fmt: skip
_PLACE_AT_END = re.compile("(" + "|".join(PLACE_WORDS) + ")$")
_STREET = rf"[{_CJK}0-9]{{2,10}}?(?:大道|大街|路|街|巷)"
# (normalize has already made 路口 a 路: 胜利八路路口 reads 胜利八路路, 十字路口 十字路)
_CROSSING = re.compile(
    rf"(?P<a>{_STREET})(?:与|和|跟|同|及|-)?(?P<b>{_STREET})"
    r"(?:十字路口|十字路|交叉路口|交叉路|交叉口|交汇处|交界处|交口|路口|路|口)$"
)


_TEXT_BREAK = re.compile(r"[，。！？；,.!?;\n]")
_WHERE_WORDS = re.compile(
    "|".join(("十字路口", "交叉路口", "交叉口", "交汇处", "交界处", "路口", *PLACE_WORDS))
)


def place_in_text(text: str) -> str | None:
    """The words of free text that say where (a report's description: 人民五路95号楼下垃圾堆了
    三天 -> 人民五路95号楼下): up to and including the first place word, else its first
    clause; None when they name no road, estate, place or intersection."""
    head = _TEXT_BREAK.split(text.strip(), maxsplit=1)[0][:80]
    words = _WHERE_WORDS.search(head)
    if words is not None and words.start() >= 2:
        head = head[: words.end()]
    parsed = parse(head)
    if parsed.road or parsed.estate or parsed.cross:
        return head
    return head if parsed.rest and parsed.place else None


def parse(text: str) -> ParsedAddress:
    """Split an address into its GB/T 37149 parts; order may vary, parts may be missing.
    A place word after a name goes to `place`; two streets that meet, to `road` and
    `cross`."""
    s = normalize(text)
    p = _Parts()
    body_start = _parse_admin(s, p)
    body = s[body_start:]
    crossing = _CROSSING.fullmatch(body)
    if crossing is not None and crossing.group("a") != crossing.group("b"):
        p.road, p.cross, p.place = crossing.group("a"), crossing.group("b"), "路口"
        body = ""
    else:
        placed = _PLACE_AT_END.search(body)
        if placed is not None and placed.start() >= 2:
            p.place, body = placed.group(), body[: placed.start()]
    _parse_body(body, p)
    return ParsedAddress(
        province=p.province,
        city=p.city,
        district=p.district,
        road=p.road,
        door=p.door,
        estate=p.estate,
        building=p.building,
        unit=p.unit,
        room=p.room,
        rest="".join(p.rest),
        place=p.place,
        cross=p.cross,
    )


def match_key(p: ParsedAddress) -> str:
    """Compact canonical key without the administrative area: 长江西路18号金山花园3栋1单元502室."""
    return "".join(
        (
            p.road or "",
            f"{p.door}号" if p.door else "",
            p.estate or "",
            f"{p.building}栋" if p.building else "",
            f"{p.unit}单元" if p.unit else "",
            f"{p.room}室" if p.room else "",
        )
    )


# The version of the parsing rules: raise it with any change to what `parse` answers, so that
# every database's address index is parsed again by the new rules (buildings.store).
PARSER_VERSION: Final = 3
INDEX_FIELDS: Final = ("key", "district", "road", "door", "estate", "building", "unit", "room")


def index_row(text: str) -> tuple[str | None, ...]:
    """One register address as a row of the address index, in INDEX_FIELDS order."""
    p = parse(text)
    return (match_key(p), p.district, p.road, p.door, p.estate, p.building, p.unit, p.room)


def index_rows(texts: list[str]) -> list[tuple[str | None, ...]]:
    """`index_row` of many addresses (a picklable unit of work for a process pool)."""
    return [index_row(t) for t in texts]
