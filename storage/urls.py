"""Database URLs, kept free of SQLAlchemy so reading settings stays cheap (`rollout-bot --help`)."""

DEFAULT_URL = "sqlite:///rollout-bot.db"


def normalize_url(url: str) -> str:
    """Accepts the URLs people paste, including Heroku's `postgres://`."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
