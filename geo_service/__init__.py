"""geo-service: grid management and 15-minute life-circle mapping on PostGIS."""

__version__ = "0.1.0"
