from alembic import context

from storage.db import create_db_engine
from storage.models import Base

config = context.config


def run() -> None:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "", pool_size=1)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
