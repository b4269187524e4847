"""Settings: every variable the README documents is read into its group, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geo_service.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def documented() -> set[str]:
    """The GEO_ variables of the README's Settings table."""
    text = README.read_text(encoding="utf-8")
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `GEO_")]
    return {name for row in rows for name in re.findall(r"`(GEO_[A-Z0-9_]+)`", row.split("|")[1])}


def accepted() -> dict[str, tuple[str, str]]:
    """Each variable a settings group reads -> (group, field)."""
    out = {}
    for group, info in Settings.model_fields.items():
        model = info.annotation
        prefix = model.model_config["env_prefix"]
        for name, field in model.model_fields.items():
            env = field.validation_alias or f"{prefix}{name}"
            out[str(env).upper()] = (group, name)
    return out


def test_every_documented_variable_is_read_and_every_setting_documented():
    assert documented() == set(accepted())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GEO_DATABASE_URL", "postgresql://u@db.example/geo", "postgresql://u@db.example/geo"),
        ("GEO_POOL_SIZE", "4", 4),
        ("GEO_COVERAGE_TIERS_MIN", "[5, 10]", [5, 10]),
        ("GEO_AUTH_REQUIRED", "false", False),
        ("GEO_LOCATE_TOLERANCE_M", "12.5", 12.5),
        ("GEO_INCIDENT_TIMEZONE", "Asia/Urumqi", "Asia/Urumqi"),
        ("GEO_MAP_BASEMAP", "none", "none"),
        ("GEO_OPEN311_LANGUAGE", "en", "en"),
        ("GEO_TILE_CACHE_MB", "8", 8),
        ("geo_host", "0.0.0.0", "0.0.0.0"),  # names are not case-sensitive
    ],
)
def test_variables_reach_their_group(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    group, name = accepted()[variable.upper()]
    assert getattr(getattr(Settings(), group), name) == expected


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("GEO_MAP_REFRESH_S", "2")
    with pytest.raises(ValueError, match="refresh_s"):
        Settings()


def test_updated_checks_names_and_values_and_leaves_the_original():
    base = Settings()
    slower = base.updated(coverage={"walk_speed_kmh": 3.0})
    assert (slower.coverage.walk_speed_kmh, base.coverage.walk_speed_kmh) == (3.0, 4.0)
    with pytest.raises(ValueError, match="no walk_speed"):
        base.updated(coverage={"walk_speed": 3.0})
    with pytest.raises(ValueError, match="walk_speed_kmh"):
        base.updated(coverage={"walk_speed_kmh": -1})
