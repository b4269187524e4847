"""Settings: one pydantic-settings class, GEO_ prefix, built once by the app or CLI and passed down.

Every number from the domain notes is a setting with its default here, never a constant in code.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable; environment variables are GEO_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="GEO_", env_file=".env", extra="ignore")

    # Database. Empty database_url -> the embedded cluster in data_dir.
    database_url: str | None = None
    data_dir: Path = Path(".geo-service")
    embedded_port: int = 54329
    pool_size: int = 10

    # Import
    import_tolerance_deg: float = Field(
        1e-7, description="Geometries closer than this (degrees, ~1 cm) count as unchanged"
    )
    rejects_dir: Path | None = Field(
        None, description="Where rejected rows are written; default next to the input file"
    )

    # Shapes of codes the deployment accepts (DB11/T 2157: 15-digit grids, 12-digit communities).
    grid_code_pattern: str = r"^\d{15}$"
    community_code_pattern: str = r"^\d{12}$"

    # Locate / QA
    locate_tolerance_m: float = Field(
        50.0, description="A point in no grid but this close to one is assigned to it (nearest)"
    )
    locate_max_points: int = Field(10_000, description="Largest POST /api/v1/locate batch")
    max_body_bytes: int = Field(5 << 20, description="Largest request body accepted")
    qa_min_area_m2: float = Field(1.0, description="Overlaps and gaps smaller than this are noise")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000

    @cached_property
    def embedded(self) -> bool:
        """True when the service manages its own local PostGIS cluster."""
        return not self.database_url


def get_settings() -> Settings:
    """Build settings from the environment (called by the CLI and the app factory only)."""
    return Settings()
