"""The 15-minute life circle: walking network, distances, coverage, isochrones, siting."""
