"""Buildings and addresses: search, geocoding, reverse geocoding."""
