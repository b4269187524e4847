"""Communities, grids and grid workers: point -> grid, grid QA."""
