"""Re-division proposals: grids of a target size made of street blocks, by a regionalisation
library (pure cores: blocks.py, partition.py, metrics.py; SQL in store.py; proposals.py the
domain functions)."""
