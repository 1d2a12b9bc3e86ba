"""Alembic, run from code: `rollout-bot db upgrade` and every `serve` start.

Replicas start together and each migrates on start, so migrating takes a lock first: on
Postgres a transaction-scoped advisory lock, on SQLite its one write lock (`BEGIN IMMEDIATE`).
The migrations then run inside that same transaction; whoever comes second waits, finds the
schema at head, and does nothing."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from storage.db import begin_writing, create_db_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number works; this one is "rollout" on a phone keypad, unlikely to meet another
# application's advisory lock in a shared database.
MIGRATION_LOCK = 7655688


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic reads the URL through configparser, which would treat % as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    engine = create_db_engine(url, pool_size=1)
    try:
        connection = engine.connect()
        with connection, begin_writing(connection):
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
