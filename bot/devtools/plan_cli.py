"""`rollout-bot plan import FILE.md` and `rollout-bot plan export FEATURE`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sqlalchemy import select

from bot.config import Settings
from bot.domain.names import feature_key
from bot.domain.plans.markdown import DocumentTooLarge, parse_plans
from bot.errors import UsageError
from bot.runtime import build_services
from bot.usecases import exporting, plan_store
from storage.models import Rollout


def template_name(path: str, given: str | None) -> str:
    raw = given or Path(path).stem
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-")[:64]
    if not name:
        raise SystemExit("rollout-bot: give the template a name with --name")
    return name


def import_file(settings: Settings, path: str, name: str | None) -> int:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        results = parse_plans(text, name=template_name(path if path != "-" else "plan", name))
    except DocumentTooLarge as error:
        print(f"rollout-bot: {error}", file=sys.stderr)
        return 2
    svc = build_services(settings)
    for result in results:
        try:
            replaced = plan_store.save(svc, None, result.plan, source=text)
        except UsageError as error:
            print(f"rollout-bot: {error}", file=sys.stderr)
            for problem in result.problems:
                print(f"  line {problem.line}: {problem.reason}: {problem.text.strip()}", file=sys.stderr)
            return 2
        plan = result.plan
        steps = " → ".join(s.title for p in plan.phases for s in p.steps)
        print(
            f"{'replaced' if replaced else 'imported'} template `{plan.name}`: {len(plan.phases)} phases, {steps}"
        )
        for problem in result.problems:
            print(f"  line {problem.line}: {problem.reason}: {problem.text.strip()}")
    svc.db.dispose()
    return 0


def export_feature(settings: Settings, feature: str, team: str | None, output: str | None = None) -> int:
    """The filled plan on standard output; with `output`, into that file, and its charts
    (progress, newest gate check) as PNG files beside it, referenced from the document."""
    svc = build_services(settings)
    with svc.db.reading() as session:
        stmt = (
            select(Rollout)
            .where(Rollout.feature_key == feature_key(feature))
            .order_by(Rollout.created_at.desc())
        )
        if team:
            stmt = stmt.where(Rollout.team_id == team)
        found = list(session.scalars(stmt))
    if not found:
        print(f"rollout-bot: no rollout called {feature!r}", file=sys.stderr)
        return 2
    if len({r.team_id for r in found}) > 1:
        teams = ", ".join(sorted({r.team_id for r in found}))
        print(
            f"rollout-bot: {feature!r} is used in several workspaces ({teams}); say which with --team",
            file=sys.stderr,
        )
        return 2
    if output is None:
        _rollout, text = exporting.export(svc, found[0].id)
        sys.stdout.write(text)
        svc.db.dispose()
        return 0
    target = Path(output)
    charts, missing = exporting.export_charts(svc, found[0].id)
    _rollout, text = exporting.export(svc, found[0].id, charts)
    svc.db.dispose()
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    for chart in charts:
        beside = target.parent / chart.filename
        beside.write_bytes(chart.png)
        print(f"wrote {beside}")
    if missing:
        print(f"rollout-bot: no charts: {missing}", file=sys.stderr)
    return 0
