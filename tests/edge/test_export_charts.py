"""The export carries its charts: files beside the Markdown (CLI) or in the same upload
(Slack), referenced from a Charts section the importer reads past."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from bot.config import load_settings
from bot.delivery import status_board
from bot.devtools import plan_cli
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.markdown import parse_plans
from bot.edge import plan_slack
from bot.metrics import StaticMetricsSource
from bot.services import Actor
from bot.usecases import advance, exporting, lookup, measure
from bot.usecases import start as starting
from storage.db import Database
from storage.migrate import upgrade
from tests.support import Clock, body, make_services

OWNER = Actor("T1", "U_OWNER", "C1")
LINKS = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def rollout_with_a_check(db: Database, slack: LocalSlack) -> int:
    svc = make_services(
        db, slack, Clock(datetime(2026, 3, 2, 17, 0, tzinfo=UTC)), StaticMetricsSource({"error_rate": 0.4})
    )
    rollout_id = starting.start(svc, OWNER, starting.Start(feature="checkout-v2", template="aggressive"))
    status_board.post(svc, rollout_id)
    measure.capture_baseline(svc, rollout_id)
    advance.snapshot(svc, OWNER, lookup.load_for(svc, OWNER, rollout_id))
    return rollout_id


def test_the_cli_writes_the_charts_beside_the_document(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)
    db = Database(url)
    with LocalSlack() as slack:
        rollout_with_a_check(db, slack)
    db.dispose()
    out = tmp_path / "retro" / "checkout.md"
    out.parent.mkdir()

    assert plan_cli.export_feature(load_settings({"DATABASE_URL": url}), "checkout-v2", None, str(out)) == 0

    document = out.read_text()
    names = LINKS.findall(document)
    assert len(names) == 2 and names[0].startswith("checkout-v2-progress-")
    assert names[1].startswith("checkout-v2-gate-")
    for name in names:
        Image.open(out.parent / name).load()
    (result,) = parse_plans(document, name="aggressive")
    assert list(result.problems) == []  # the Charts section is read past, like the Results


def test_slack_gets_the_charts_in_the_same_upload_as_the_document(db: Database) -> None:
    with LocalSlack() as slack:
        rollout_id = rollout_with_a_check(db, slack)
        svc = make_services(db, slack)
        slack.clear_calls()
        reply = plan_slack.export_to_thread(svc, OWNER, rollout_id)
        assert body(reply).startswith(
            ":page_facing_up: Exported *checkout-v2* with 2 charts into its thread."
        )
        (complete,) = slack.calls("files.completeUploadExternal")
        uploads = slack.calls("upload_url")
    assert len(complete.params["files"]) == 3
    *pictures, doc = uploads
    document = doc.params["data"].decode()
    names = [str(c.params["filename"]) for c in slack.calls("files.getUploadURLExternal")][:2]
    assert LINKS.findall(document) == names
    for picture in pictures:
        Image.open(io.BytesIO(picture.params["data"])).load()


def test_an_export_without_a_gate_check_has_the_progress_only(db: Database) -> None:
    with LocalSlack() as slack:
        svc = make_services(db, slack)
        rollout_id = starting.start(svc, OWNER, starting.Start(feature="quiet", template="standard"))
        charts, missing = exporting.export_charts(svc, rollout_id)
    assert [c.filename.split("-")[1] for c in charts] == ["progress"] and missing == ""
