"""Incident categories and their time limits, read from a TOML table (packaged or the city's own).

The packaged `categories.toml` is the default; `settings.incidents.categories_file` replaces it
(whole, not merged: a city's table is its own). Files are re-read when they change, so editing
the table needs no restart.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from geo_service.errors import InvalidInput
from geo_service.incidents.workflow import TimeLimit

CODE_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
LANGUAGES: Final = ("zh", "en")
_UNITS: Final = {"working_days": "days", "working_hours": "hours"}


@dataclass(frozen=True)
class Category:
    """One category: its names, time limit and Open311 metadata."""

    code: str
    name: dict[str, str]
    limit: TimeLimit
    group: dict[str, str] = field(default_factory=dict)
    description: dict[str, str] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()

    def text(self, attribute: str, language: str) -> str | None:
        """A localised attribute (name, group, description), falling back to any language."""
        values: dict[str, str] = getattr(self, attribute)
        return values.get(language) or next(iter(values.values()), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "code": self.code,
            "name": self.name,
            "time_limit": str(self.limit),
            "group": self.group,
            "description": self.description,
            "keywords": list(self.keywords),
        }


def categories_for(path: Path | None) -> Mapping[str, Category]:
    """The categories in force: those of `path`, or the packaged defaults when None."""
    if path is None:
        return _packaged()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        message = f"cannot read the incident categories file {str(path)!r}: {exc}"
        raise InvalidInput(message) from None
    return _load(str(path), stamp)


@lru_cache(maxsize=1)
def _packaged() -> Mapping[str, Category]:
    source = resources.files("geo_service.incidents").joinpath("categories.toml")
    return _parse(source.read_text(encoding="utf-8"), "categories.toml (packaged)")


@lru_cache(maxsize=8)
def _load(path: str, stamp: int) -> Mapping[str, Category]:
    """Parse a file once per modification time (the stamp is part of the cache key)."""
    return _parse(Path(path).read_text(encoding="utf-8"), path)


def _parse(text: str, origin: str) -> Mapping[str, Category]:
    """Validate a categories table; InvalidInput naming the file, the code and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{origin}: not valid TOML: {exc}") from None
    tables = data.get("categories")
    if not isinstance(tables, dict) or not tables:
        raise InvalidInput(f"{origin}: no [categories.<code>] tables")
    # Read-only: the parsed table is cached and shared by every request.
    return MappingProxyType({code: _category(origin, code, spec) for code, spec in tables.items()})


def _category(origin: str, code: str, spec: Any) -> Category:
    where = f"{origin}: category {code!r}"
    if not CODE_PATTERN.fullmatch(code):
        raise InvalidInput(f"{where}: codes are 1-64 of a-z, 0-9, '_', '-', '.'")
    if not isinstance(spec, dict):
        raise InvalidInput(f"{where}: expected a table")
    unknown = set(spec) - {"name", "limit", "group", "description", "keywords"}
    if unknown:
        raise InvalidInput(f"{where}: unknown keys {sorted(unknown)}")
    name = _texts(where, "name", spec.get("name"))
    if not name:
        raise InvalidInput(f"{where}: a name is required, e.g. name = {{ zh = ..., en = ... }}")
    limit = spec.get("limit")
    if not isinstance(limit, dict) or len(limit) != 1 or next(iter(limit)) not in _UNITS:
        raise InvalidInput(
            f"{where}: limit must be {{ working_days = N }} or {{ working_hours = N }}: {limit!r}"
        )
    [(unit, amount)] = limit.items()
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount > 0:
        raise InvalidInput(f"{where}: {unit} must be a positive number: {amount!r}")
    keywords = spec.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise InvalidInput(f"{where}: keywords must be a list of strings")
    return Category(
        code=code,
        name=name,
        limit=TimeLimit(float(amount), _UNITS[unit]),  # type: ignore[arg-type]
        group=_texts(where, "group", spec.get("group")),
        description=_texts(where, "description", spec.get("description")),
        keywords=tuple(keywords),
    )


def _texts(where: str, key: str, value: Any) -> dict[str, str]:
    """{zh, en} texts; a bare string counts as Chinese."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"zh": value}
    if not isinstance(value, dict) or not all(
        lang in LANGUAGES and isinstance(text, str) and text.strip() for lang, text in value.items()
    ):
        raise InvalidInput(f"{where}: {key} must be {{ zh = '...', en = '...' }}: {value!r}")
    return dict(value)
