"""Address index of the building register: each building's address parsed into its GB/T 37149
parts, with the indexes forward geocoding looks candidates up by; geocoding candidates of
address-only incidents.

Revision ID: 0003_geocode
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_geocode"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "building_addresses",
        sa.Column(
            "code",
            sa.Text,
            sa.ForeignKey("buildings.code", onupdate="CASCADE", ondelete="CASCADE"),
            primary_key=True,
        ),
        # The register's text this row was parsed from: a row whose text differs from the
        # building's current address is out of date and gets parsed again.
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("district", sa.Text),
        sa.Column("road", sa.Text),
        sa.Column("door", sa.Text),
        sa.Column("estate", sa.Text),
        sa.Column("building", sa.Text),
        sa.Column("unit", sa.Text),
        sa.Column("room", sa.Text),
    )
    op.create_index("building_addresses_key", "building_addresses", ["key"])
    op.create_index("building_addresses_road_door", "building_addresses", ["road", "door"])
    op.create_index(
        "building_addresses_estate_building", "building_addresses", ["estate", "building"]
    )
    # The distinct road and estate names, with a trigram index: a name typed with a typo is
    # matched here (a few thousand rows) and then looked up exactly in the index above.
    op.create_table(
        "address_names",
        sa.Column("kind", sa.Text, primary_key=True),  # road | estate
        sa.Column("name", sa.Text, primary_key=True),
    )
    op.execute("CREATE INDEX address_names_trgm ON address_names USING gin (name gin_trgm_ops)")

    # An address-only incident keeps the buildings geocoding proposed for it, for the
    # dispatcher who must choose when none was sure enough.
    op.add_column(
        "incidents",
        sa.Column("address_candidates", JSONB, nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    op.drop_column("incidents", "address_candidates")
    op.drop_table("address_names")
    op.drop_table("building_addresses")
