"""Data shipped with the service: the default map layers and the demo city.

In a source checkout they are the repository's top-level `layers/` and `shapefiles/demo/`
folders; an installed wheel carries the same files inside the package (setup.py maps them to
`geo_service/builtin_layers` and `geo_service/demo_city`). Either way these functions find
them, so the service behaves the same from a clone and from `pip install`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _first_folder(*candidates: Path) -> Path:
    for folder in candidates:
        if folder.is_dir():
            return folder
    return candidates[0]  # the caller's "does not exist" error names the installed path


def layers_dir() -> Path:
    """The default layer files (GEO_LAYERS_DIR replaces them with a city's own)."""
    return _first_folder(_PACKAGE / "builtin_layers", _CHECKOUT / "layers")


def demo_dir() -> Path:
    """The small demo city: shapefiles and workers.csv, as `geo-service synth` writes them."""
    return _first_folder(_PACKAGE / "demo_city", _CHECKOUT / "shapefiles" / "demo")
