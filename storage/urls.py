"""Database URLs, kept free of SQLAlchemy so reading settings stays cheap (`rollout-bot --help`)."""

DEFAULT_URL = "sqlite:///rollout-bot.db"


def queue_url(url: str) -> str:
    """Where the web process queues work for the work process. On SQLite a file of its own
    beside the database, so queuing never waits for SQLite's single write lock behind the
    work process's transactions; on Postgres the same database (row locks do not collide)."""
    url = normalize_url(url)
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return url
    path = url[len("sqlite:///") :]
    stem, dot, ext = path.rpartition(".")
    return "sqlite:///" + (f"{stem}-queue.{ext}" if dot and "/" not in ext else f"{path}-queue")


def normalize_url(url: str) -> str:
    """Accepts the URLs people paste, including Heroku's `postgres://`."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
