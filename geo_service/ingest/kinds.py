"""What each import kind expects: fields, their types, the geometry, the references.

This is the single source of truth behind `shapefiles/SCHEMA.md` and the import validator.
Default field names stay within the shapefile's 10-character limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geo_service.errors import InvalidInput

FieldType = Literal["text", "int"]
GeometryKind = Literal["polygon", "building", "point", "line", "none"]


@dataclass(frozen=True)
class Field:
    """One attribute of an import kind."""

    name: str
    type: FieldType = "text"
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class Reference:
    """A field that must name an existing row of another kind (checked in the database)."""

    field: str
    table: str
    kind: str


@dataclass(frozen=True)
class KindSpec:
    """Everything the importer needs to know about one kind of data."""

    name: str
    table: str
    geometry: GeometryKind
    fields: tuple[Field, ...]
    references: tuple[Reference, ...] = ()
    code_pattern_setting: str | None = None  # name of the GridSettings field with the code regex
    doc: str = ""

    @property
    def field_names(self) -> tuple[str, ...]:
        """Canonical field names, in order."""
        return tuple(f.name for f in self.fields)


KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            "communities",
            "communities",
            "polygon",
            (Field("code", doc="community code (12 digits by default)"), Field("name")),
            code_pattern_setting="community_code_pattern",
            doc="Community (社区) boundaries.",
        ),
        KindSpec(
            "grids",
            "grids",
            "polygon",
            (
                Field("code", doc="grid code (15 digits by default, DB11/T 2157)"),
                Field("name"),
                Field("community", doc="code of the community the grid belongs to"),
            ),
            references=(Reference("community", "communities", "communities"),),
            code_pattern_setting="grid_code_pattern",
            doc="Grid (网格) boundaries; grids tile their community.",
        ),
        KindSpec(
            "workers",
            "workers",
            "none",
            (
                Field("code", doc="worker id"),
                Field("name"),
                Field("phone", required=False),
                Field("grid", doc="code of the worker's grid"),
            ),
            references=(Reference("grid", "grids", "grids"),),
            doc="Grid workers (网格员); a grid has one or more. CSV or any table format.",
        ),
        KindSpec(
            "buildings",
            "buildings",
            "building",
            (
                Field("code"),
                Field("address", doc="full address (GB/T 37149 order)"),
                Field("name", required=False),
                Field("households", "int", doc="whole number of households, >= 0"),
            ),
            doc="Buildings (楼栋) as points or footprint polygons (a point inside is derived).",
        ),
        KindSpec(
            "centers",
            "centers",
            "point",
            (Field("code"), Field("name"), Field("kind", required=False)),
            doc="Neighbourhood centres (邻里中心) and other service sites.",
        ),
        KindSpec(
            "pois",
            "places",
            "point",
            (
                Field("code"),
                Field("name", doc="as residents say it (向阳小学, 五松菜市场)"),
                Field("kind", required=False, doc="school, market, clinic, park ..."),
            ),
            doc="Named places (schools, markets, clinics ...) that residents name instead of "
            "an address; the geocoder finds them by name.",
        ),
        KindSpec(
            "roads",
            "street_edges",
            "line",
            (
                Field("code", required=False, doc="derived from the geometry when absent"),
                Field("name", required=False),
            ),
            doc="Street centre lines; MultiLineStrings are split into their parts.",
        ),
    )
}

# Column names tried, in order, for the coordinates of point data given as CSV.
LON_NAMES = ("lon", "lng", "long", "longitude", "x")
LAT_NAMES = ("lat", "latitude", "y")


# Other spellings users type for a kind: British "centres" (the README's prose) names the
# kind (and table) "centers".
ALIASES = {"centres": "centers", "streets": "roads", "places": "pois"}


def canonical_kind(name: str) -> str:
    """The kind's own name for `name` or one of its aliases; other names pass unchanged."""
    return ALIASES.get(name, name)


def kind_spec(name: str) -> KindSpec:
    """The spec of an import kind (or an alias of one), or a clear error naming the kinds."""
    try:
        return KINDS[canonical_kind(name)]
    except KeyError:
        raise InvalidInput(
            f"unknown import kind {name!r}; expected one of: {', '.join(KINDS)}"
        ) from None
