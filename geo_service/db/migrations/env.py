"""Alembic environment: runs migrations on the connection the service hands over."""

from alembic import context
from sqlalchemy import create_engine

from geo_service.db.models import metadata

# Tables owned by extensions, not by us: autogenerate must leave them alone.
_FOREIGN_TABLES = {"spatial_ref_sys", "layer", "topology"}


def _include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return not (type_ == "table" and name in _FOREIGN_TABLES)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = create_engine(str(context.config.get_main_option("sqlalchemy.url")))
        connection = engine.connect()
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_include_object,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
