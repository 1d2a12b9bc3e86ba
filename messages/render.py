"""One Jinja environment for every text the bot writes. mrkdwn is escaped with Slack's rules
(`&`, `<`, `>`), not HTML's; a team may override any template from ROLLOUT_TEMPLATES_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from messages.text import escape, local_time, percent, truncate

BUILTIN_DIR = Path(__file__).parent / "templates"

_env: jinja2.Environment | None = None


def _build(override_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(BUILTIN_DIR)]
    if override_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(override_dir))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["e"] = escape
    env.filters["slack"] = escape
    env.filters["truncate_to"] = truncate
    env.filters["local"] = local_time
    env.filters["pct"] = percent
    return env


def configure(override_dir: Path | None) -> None:
    global _env
    _env = _build(override_dir)


def environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = _build(None)
    return _env


def render(name: str, **context: Any) -> str:
    """Renders `messages/templates/<name>.j2` (or a team's override of it)."""
    return environment().get_template(f"{name}.j2").render(**context).strip()
