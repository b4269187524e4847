"""Imports: reading the files a city's GIS office has, validating and storing them."""

from geo_service.ingest.importer import ImportOptions, ImportRejected, ImportReport, import_file
from geo_service.ingest.kinds import KINDS

__all__ = ["KINDS", "ImportOptions", "ImportRejected", "ImportReport", "import_file"]
