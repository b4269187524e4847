"""Roles and tokens: one row per token, only its SHA-256 stored, with role, grid scope,
expiry and revocation.

Revision ID: 0003_auth
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0003_auth"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copy of the roles a token may carry: a migration must not change when the code does.
ROLES = ("admin", "planner", "dispatcher", "worker", "reporter")


def upgrade() -> None:
    op.create_table(
        "auth_tokens",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("grids", ARRAY(sa.Text), nullable=False, server_default="{}"),
        # SHA-256 (hex) of the token: the token itself is shown once and never stored.
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("token_prefix", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="auth_tokens_role_known"
        ),
        sa.CheckConstraint(
            "(role = 'worker') = (cardinality(grids) > 0)", name="auth_tokens_worker_grids"
        ),
    )
    op.create_index("auth_tokens_name", "auth_tokens", ["name"])


def downgrade() -> None:
    op.drop_table("auth_tokens")
