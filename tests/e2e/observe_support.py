"""What the observability and Socket Mode tests share: a bot of their own, and a checklist box."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from storage.db import Database
from storage.enums import ItemKind
from storage.models import ChecklistItem, Phase


def task_ids(db: Database, rollout_id: int) -> list[int]:
    """The tasks of the rollout's first phase, as their checkbox values."""
    with db.reading() as session:
        stmt = (
            select(ChecklistItem.id)
            .join(Phase, ChecklistItem.phase_id == Phase.id)
            .where(Phase.rollout_id == rollout_id, Phase.position == 0, ChecklistItem.kind == ItemKind.TASK)
            .order_by(ChecklistItem.id)
        )
        return list(session.scalars(stmt))


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except HTTPError as error:
        return error.code, error.read().decode()


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    status, text = get(f"{base_url}/metrics")
    assert status == 200, text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def readyz(base_url: str) -> tuple[int, dict[str, Any]]:
    status, text = get(f"{base_url}/readyz")
    return status, json.loads(text)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a log line that is not JSON: {line!r}") from None
    return parsed
