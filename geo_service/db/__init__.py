"""Database access: engine, sessions, the embedded cluster, models and migrations."""
