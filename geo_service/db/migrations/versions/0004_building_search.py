"""Building search across the whole city: trigram indexes for text matched in part.

`GET /api/v1/buildings?q=` alone matches an estate given in part (瑞景 for 瑞景雅居) and a
text naming no part anywhere in an address key or a building's name (LIKE '%...%'). On the
`city` synthetic register (119,871 buildings) an estate search took 70-76 ms with sequential
scans and 28-38 ms with these indexes; a whole refresh of the address index costs ~1 s more
(GIN upkeep). Texts of one or two characters hold no trigram and are still scanned (~110 ms).

Revision ID: 0004_building_search
Revises: 0003_geocode
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004_building_search"
down_revision = "0003_geocode"
branch_labels = None
depends_on = None

_INDEXES = (
    ("building_addresses_estate_trgm", "building_addresses", "estate"),
    ("building_addresses_key_trgm", "building_addresses", "key"),
    ("buildings_name_trgm", "buildings", "name"),
)


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING gin ({column} gin_trgm_ops)")


def downgrade() -> None:
    for name, _, _ in _INDEXES:
        op.execute(f"DROP INDEX {name}")
