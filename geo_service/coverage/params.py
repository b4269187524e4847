"""What a coverage compute depends on besides the data, as one value: written with each run,
compared by `service.status` (a change marks the stored coverage stale) and read back by the
planning model, so a new parameter is added here and in the settings, not at every use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geo_service.errors import InvalidInput
from geo_service.settings import Settings


@dataclass(frozen=True)
class CoverageParams:
    """The walking tiers (minutes, ascending), the walking speed and the longest walk from a
    building or centre to its street."""

    tiers_min: tuple[int, ...]
    walk_speed_kmh: float
    max_access_m: float

    @classmethod
    def from_settings(cls, settings: Settings) -> CoverageParams:
        """The parameters the settings give; InvalidInput naming a setting that is unusable."""
        tiers = sorted(set(settings.coverage_tiers_min))
        if not tiers or tiers[0] <= 0:
            raise InvalidInput(
                f"GEO_COVERAGE_TIERS_MIN={settings.coverage_tiers_min!r}: need minutes > 0"
            )
        return cls(tuple(tiers), settings.coverage_walk_speed_kmh, settings.coverage_max_access_m)

    @classmethod
    def of_run(cls, run: Mapping[str, Any]) -> CoverageParams:
        """The parameters a stored run was computed with."""
        return cls(tuple(run["tiers_min"]), run["walk_speed_kmh"], run["max_access_m"])

    def row(self) -> dict[str, Any]:
        """The run's columns that hold them."""
        return {
            "tiers_min": list(self.tiers_min),
            "walk_speed_kmh": self.walk_speed_kmh,
            "max_access_m": self.max_access_m,
        }
