from alembic import context

from storage.db import create_db_engine
from storage.models import Base

config = context.config


def migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    # Inside `storage.migrate.upgrade`'s locked transaction this joins it; alone it is its own.
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        migrate(given)
        return
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "", pool_size=1)
    with engine.connect() as connection:
        migrate(connection)
    engine.dispose()


run()
