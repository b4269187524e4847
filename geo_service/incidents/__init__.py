"""Incidents: intake and routing to grids, the dispatch workflow with working-time deadlines,
supervision of overdue cases (分流督办), statistics, and the Open311 GeoReport v2 door.

Modules: `workflow` (pure statuses, transitions, deadlines), `categories` (the category table),
`store` (all SQL), `service` (the operations), `open311` (pure Open311 mapping and XML).
"""
