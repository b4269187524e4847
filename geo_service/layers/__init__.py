"""Map layers: the catalogue of `layers/*.toml`, OGC API Features, vector tiles, H3 hexbins."""

from geo_service.layers.catalogue import Catalogue, Layer, LayerFileError, load_catalogue
from geo_service.layers.service import LayerService

__all__ = ["Catalogue", "Layer", "LayerFileError", "LayerService", "load_catalogue"]
