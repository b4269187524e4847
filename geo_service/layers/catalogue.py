"""The layer catalogue: one TOML file per map layer in `layers/`, validated (pure, no database).

A file names its source (a table or one SELECT), the id, fields and geometry it exposes (and
optionally the same geometry stored in Web Mercator, for tiles), the zoom range, the
simplification per zoom, a default style with Chinese and English labels and the roles that
may see it. Adding a layer is adding a file: nothing here knows a layer by name.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geo_service.auth.policy import PERSONAL_COLUMNS, Role
from geo_service.errors import InvalidInput

GeometryType = Literal[
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "Geometry",
]
MAX_ZOOM = 24
_IDENT = r"[a-z_][a-z0-9_]*"
Identifier = Annotated[str, Field(pattern=rf"^{_IDENT}$", max_length=63)]
# A layer id: also a path segment of /ogc and /tiles URLs and an MVT layer name.
LAYER_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
LayerId = Annotated[str, Field(pattern=LAYER_ID_PATTERN, max_length=63)]
Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")]


class LayerFileError(InvalidInput):
    """A layer file that cannot be used: the message names the file and the field."""

    code = "invalid_layer_file"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    """A text in Chinese and English."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class FieldSpec(_Strict):
    """One attribute a layer exposes."""

    title: Label | None = None
    personal: bool = Field(False, description="personal data: never for anonymous users")


class LegendEntry(_Strict):
    """One line of a legend."""

    label: Label
    color: Colour
    value: str | int | float | bool | None = Field(
        None, description="the value of `style.color_by` drawn in this colour"
    )


class Style(_Strict):
    """How a map draws the layer by default (the web map reads it from the collection)."""

    type: Literal["fill", "line", "circle", "hexbin"]
    color: Colour = "#3388ff"
    fill: Colour | None = None
    opacity: float = Field(0.3, ge=0, le=1)
    width: float = Field(1.0, ge=0, le=20)
    radius: float = Field(5.0, ge=0, le=50)
    color_by: Identifier | None = None
    legend: list[LegendEntry] = []
    popup: list[Identifier] = []
    label: Identifier | None = None


class Hexbin(_Strict):
    """H3 aggregation of the source's points: resolution by zoom, optional summed weight."""

    weight: Identifier | None = None
    resolutions: dict[int, Annotated[int, Field(ge=0, le=15)]]
    default_resolution: int = Field(8, ge=0, le=15, description="of the features endpoint")

    @field_validator("resolutions")
    @classmethod
    def _zooms(cls, v: dict[int, int]) -> dict[int, int]:
        return _zoom_table(v)


def _zoom_table(table: dict[int, Any]) -> dict[int, Any]:
    if not table:
        raise ValueError("needs at least one zoom")
    if 0 not in table:
        raise ValueError("needs an entry for zoom 0 (used below the first zoom given)")
    bad = [z for z in table if not 0 <= z <= MAX_ZOOM]
    if bad:
        raise ValueError(f"zoom {bad[0]} is outside 0..{MAX_ZOOM}")
    return dict(sorted(table.items()))


class Layer(_Strict):
    """One layer file, validated."""

    id: LayerId
    aliases: list[LayerId] = Field(
        [],
        description="other ids the layer answers to in URLs (a former id, so that old links, "
        "QGIS projects and map styles keep working); never listed, the id is what is shown",
    )
    title: Label
    description: Label | None = None
    table: Annotated[str, Field(pattern=rf"^({_IDENT}\.)?{_IDENT}$")] | None = None
    sql: str | None = None
    id_field: Identifier = "id"
    geometry: Identifier = "geom"
    tile_geometry: Identifier | None = Field(
        None,
        description="a column of the source holding the same shapes as `geometry` in Web "
        "Mercator (EPSG:3857): tiles draw it instead of transforming `geometry` row by row "
        "(a stored generated column keeps it in step); rows are still found by `geometry`",
    )
    tile_simplified: dict[Annotated[float, Field(gt=0)], Identifier] = Field(
        {},
        description="by a tolerance of `simplify`: a column of the source holding "
        "`tile_geometry` simplified once by it (ST_Simplify(shape, tolerance, true), a stored "
        "generated column): tiles at the zooms of that tolerance draw it instead of simplifying "
        "every row",
    )
    geometry_type: GeometryType = "Geometry"
    fields: dict[Identifier, FieldSpec] = {}
    minzoom: int = Field(0, ge=0, le=MAX_ZOOM)
    maxzoom: int = Field(22, ge=0, le=MAX_ZOOM)
    simplify: dict[int, Annotated[float, Field(ge=0)]] = {0: 0.0}
    versions: list[Identifier] = Field(
        [],
        description="dataset kinds whose imports change this layer (dataset_versions); "
        "empty: live data, generated on every request with an ETag of its content",
    )
    roles: list[Role] = Field(min_length=1)
    attribution: str | None = None
    hexbin: Hexbin | None = None
    history_table: Annotated[str, Field(pattern=rf"^({_IDENT}\.)?{_IDENT}$")] | None = Field(
        None,
        description="a table of every version of the source's rows, with the same fields and "
        "valid_from/valid_to: items take `as_of=` and answer the rows valid at that moment",
    )
    style: Style
    source_file: str = ""

    @field_validator("simplify")
    @classmethod
    def _simplify(cls, v: dict[int, float]) -> dict[int, float]:
        return _zoom_table(v)

    @field_validator("sql")
    @classmethod
    def _one_select(cls, v: str | None) -> str | None:
        if v is None:
            return v
        text = v.strip()
        if not re.match(r"(?is)^(select|with)\b", text):
            raise ValueError("must be one SELECT (or WITH ... SELECT) statement")
        if ";" in text:
            raise ValueError("must be one statement, without ';'")
        if "%" in text:
            # Request values are bound with %(name)s placeholders around this text.
            raise ValueError("must not contain '%' (use strpos() or a regex instead of LIKE)")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> Layer:
        if (self.table is None) == (self.sql is None):
            raise ValueError("give exactly one of `table` or `sql`")
        if self.id in self.aliases:
            raise ValueError(f"alias {self.id!r} is the layer's own id")
        if self.minzoom > self.maxzoom:
            raise ValueError(f"minzoom {self.minzoom} is above maxzoom {self.maxzoom}")
        if self.hexbin is not None and self.tile_geometry is not None:
            raise ValueError("a hexbin layer draws hexagons: `tile_geometry` does not apply")
        if self.tile_simplified and self.tile_geometry is None:
            raise ValueError("`tile_simplified` holds `tile_geometry` simplified: give it too")
        unused = sorted(set(self.tile_simplified) - set(self.simplify.values()))
        if unused:
            raise ValueError(
                f"`tile_simplified` has tolerance {unused[0]}, which `simplify` never uses"
            )
        if self.history_table is not None and self.hexbin is not None:
            raise ValueError(
                "a hexbin layer aggregates today's rows: `history_table` does not apply"
            )
        if self.hexbin is None and self.id_field not in self.fields:
            raise ValueError(f"id_field {self.id_field!r} must be one of the fields")
        names = set(self.output_fields)
        for name in (*self.style.popup, self.style.label, self.style.color_by):
            if name is not None and name not in names:
                raise ValueError(f"style refers to {name!r}, which is not one of the fields")
        if "anonymous" in self.roles:
            self._no_personal_data()
        return self

    def _no_personal_data(self) -> None:
        for name, spec in self.fields.items():
            if spec.personal or name in PERSONAL_COLUMNS:
                raise ValueError(
                    f"field {name!r} is personal data and the layer is visible to "
                    "'anonymous': remove the field or the role"
                )
        if self.sql is not None:
            for word in sorted(PERSONAL_COLUMNS):
                if re.search(rf"\b{word}\b", self.sql, re.IGNORECASE):
                    raise ValueError(
                        f"sql reads the personal column {word!r} and the layer is visible "
                        "to 'anonymous': remove the column or the role"
                    )

    @property
    def source_sql(self) -> str:
        """The source as one SELECT (a table becomes SELECT * FROM it)."""
        if self.sql is not None:
            return self.sql
        assert self.table is not None
        return "SELECT * FROM " + ".".join(f'"{part}"' for part in self.table.split("."))

    @property
    def history_sql(self) -> str | None:
        """The rows valid at the moment bound as %(as_of)s (None: the layer keeps no history)."""
        if self.history_table is None:
            return None
        table = ".".join(f'"{part}"' for part in self.history_table.split("."))
        return (
            f"SELECT * FROM {table} WHERE valid_from <= %(as_of)s "
            "AND (valid_to IS NULL OR valid_to > %(as_of)s)"
        )

    @property
    def output_fields(self) -> list[str]:
        """Attribute names of features and tiles (hexbins: cell, count and the weight)."""
        if self.hexbin is not None:
            return ["cell", "count", *([self.hexbin.weight] if self.hexbin.weight else [])]
        return list(self.fields)

    @property
    def live(self) -> bool:
        """True when no dataset version tells when the data changes."""
        return not self.versions

    def simplify_at(self, z: int) -> float:
        """Simplification tolerance (Web Mercator metres) at zoom `z`."""
        return _at(self.simplify, z)

    def simplified_at(self, z: int) -> str | None:
        """The column holding the shapes already simplified for zoom `z`, if one does."""
        return self.tile_simplified.get(self.simplify_at(z))

    def resolution_at(self, z: int) -> int:
        """H3 resolution of a hexbin layer at zoom `z`."""
        assert self.hexbin is not None
        return int(_at(self.hexbin.resolutions, z))

    def field_title(self, name: str) -> Label | None:
        """The bilingual title of a field, when the file gives one."""
        spec = self.fields.get(name)
        return spec.title if spec else None


def _at(table: dict[int, Any], z: int) -> Any:
    """The entry of the greatest zoom not above `z` (tables always hold zoom 0)."""
    found = table[0]
    for zoom, value in table.items():
        if zoom > z:
            break
        found = value
    return found


class Catalogue:
    """The layers of a folder, by id, in file-name order."""

    def __init__(self, layers: list[Layer], fingerprint: str) -> None:
        self.layers = {layer.id: layer for layer in layers}
        self.aliases = {alias: layer.id for layer in layers for alias in layer.aliases}
        # Changes whenever any file changes: part of every tile ETag, so that a changed
        # style or field list after a restart is never answered with 304.
        self.fingerprint = fingerprint

    def __iter__(self) -> Any:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def canonical(self, name: str) -> str:
        """The id of the layer called `name` in a URL (its id or one of its aliases); an
        unknown name is returned as it is."""
        return self.aliases.get(name, name)


def load_layer(path: Path) -> Layer:
    """Read and validate one layer file; errors name the file and the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LayerFileError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LayerFileError(f"{path}: not valid TOML: {exc}") from exc
    raw.setdefault("id", path.stem)
    raw["source_file"] = str(path)
    try:
        return Layer.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise LayerFileError(f"{path}: {problems}") from exc


def _problem(err: Any) -> str:
    """`field.path: message (got value)` of one pydantic error."""
    where = ".".join(str(p) for p in err["loc"]) or "(file)"
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] != "missing" and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return f"{where}: {message}"


def load_catalogue(folder: Path) -> Catalogue:
    """Every `*.toml` layer file of `folder`; ids must be unique."""
    if not folder.is_dir():
        raise LayerFileError(f"{folder}: the layers folder does not exist")
    layers: list[Layer] = []
    digest = hashlib.blake2b(digest_size=8)
    seen: dict[str, Path] = {}  # ids and aliases: one name, one layer
    for path in sorted(folder.glob("*.toml")):
        layer = load_layer(path)
        for name, what in ((layer.id, "id"), *((a, "alias") for a in layer.aliases)):
            if name in seen:
                raise LayerFileError(f"{path}: {what} {name!r} is already used by {seen[name]}")
            seen[name] = path
        digest.update(path.read_bytes())
        layers.append(layer)
    return Catalogue(layers, digest.hexdigest())
