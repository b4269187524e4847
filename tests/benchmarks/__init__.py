"""Benchmarks: each prints our figure next to a peer's, measured in the same run."""
