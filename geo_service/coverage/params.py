"""What a coverage compute depends on besides the data, as one value: written with each run,
compared by `service.status` (a change marks the stored coverage stale) and read back by the
planning model; it also turns walks into minutes and tiers, so a new parameter (a walking
speed per tier, say) is added here and in the settings, not at every use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        tiers = sorted(set(settings.coverage.tiers_min))
        if not tiers or tiers[0] <= 0:
            raise InvalidInput(
                f"GEO_COVERAGE_TIERS_MIN={settings.coverage.tiers_min!r}: need minutes > 0"
            )
        return cls(tuple(tiers), settings.coverage.walk_speed_kmh, settings.coverage.max_access_m)

    @classmethod
    def of_run(cls, run: Mapping[str, Any]) -> CoverageParams:
        """The parameters a stored run was computed with."""
        return cls(tuple(run["tiers_min"]), run["walk_speed_kmh"], run["max_access_m"])

    def row(self) -> dict[str, Any]:
        """The run's columns that hold them (also how the coverage status shows them)."""
        return {
            "tiers_min": list(self.tiers_min),
            "walk_speed_kmh": self.walk_speed_kmh,
            "max_access_m": self.max_access_m,
        }

    def metres(self, minutes: float) -> float:
        """How far one walks in `minutes`."""
        return minutes * self.walk_speed_kmh * 1000.0 / 60.0

    @property
    def reach_m(self) -> float:
        """The longest walk any tier holds."""
        return self.metres(self.tiers_min[-1])

    def tier_of(self, walk_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Minutes of each walk, and the smallest tier (minutes) that holds it (0 where none
        does: uncovered)."""
        minutes = walk_m / (self.walk_speed_kmh * 1000.0 / 60.0)
        tiers = np.asarray(self.tiers_min, dtype=float)
        pos = np.searchsorted(tiers, minutes, side="left")
        tier = np.where(pos < len(tiers), tiers[np.minimum(pos, len(tiers) - 1)], 0).astype(int)
        tier[~np.isfinite(minutes)] = 0
        return minutes, tier
