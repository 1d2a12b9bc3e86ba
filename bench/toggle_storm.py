"""A storm of concurrent checklist ticks through the real flow, and whether any is lost.

For SQLite (a temp file) and Postgres (a fresh database, created and dropped here): ROLLOUTS
rollouts of ITEMS checklist items each (bot.rollouts.new_rollout from a plan with that many
items), UNTICK_SHARE of the items ticked beforehand. Then TOGGLES calls of
`bot.flows.set_items` (the function the checklist listener calls) from THREADS threads, in a
shuffled order so threads keep meeting on the same rollouts; each call changes one distinct
item: the ticked ones are unticked, the others ticked. Reported: toggles per second, per-toggle
p50/p99, and the checks that nothing was lost:

- every item's state in the database is what its toggle asked for;
- ITEM_CHECKED / ITEM_UNCHECKED events: exactly one per toggle;
- each rollout's revision went up once per toggle on it (no lost update of the rollout row);
- no call failed.

Baseline: the same number of plain single-row UPDATE transactions (one checklist item each,
BEGIN IMMEDIATE on SQLite as the bot's write transactions) from the same threads, same database.
A lost toggle or a failed call prints MISSED; only an error exits non-zero.

Run: .venv/bin/python bench/toggle_storm.py
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchlib import (
    add_rollouts,
    machine_note,
    ms,
    pct,
    postgres_available,
    postgres_database,
    run_main,
    table,
    verdict,
)
from sqlalchemy import func, select, update

from bot.config import load_settings
from bot.domain.plans.model import Phase, Plan, Step
from bot.services import Actor, Services
from bot.slackweb.client import make_client
from bot.usecases import checklist
from bot.usecases.checklist import ItemChange
from storage.db import Database, begin_writing
from storage.enums import EventKind
from storage.migrate import upgrade
from storage.models import ChecklistItem, Event, Rollout

ROLLOUTS = 50
ITEMS = 20
TOGGLES = ROLLOUTS * ITEMS  # one per item: 1,000
THREADS = 16
UNTICK_SHARE = 0.2
TEAM = "TSTORM001"
SEED = 20240611
TARGET_RATIO = 0.5  # ticks per second, at least this share of the plain UPDATEs'
STORM_TIMEOUT = 50.0  # seconds; a storm still running then is reported, not waited for


@dataclass
class Outcome:
    seconds: float
    latencies: list[float]
    failures: Counter[str] = field(default_factory=Counter)
    changed: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")


def services(url: str) -> Services:
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": "bench",
            "DATABASE_URL": url,
            "SLACK_API_URL": "http://127.0.0.1:9/api/",
        }
    )
    # Pool as `serve` sizes it (bot/runtime.py: max(5, WEB_THREADS)); set_items calls no Slack.
    db = Database(url, pool_size=max(5, THREADS))
    return Services(
        settings=settings, db=db, client=make_client("xoxb-bench", settings.slack_api_url), metrics=None
    )


def storm_plan() -> Plan:
    tasks = tuple(f"Task {i + 1}: check the thing number {i + 1}" for i in range(ITEMS - 5))
    exits = tuple(f"Exit criterion {i + 1}" for i in range(5))
    phases = (
        Phase(name="Canary", steps=(Step(percent=1, min_business_days=1),), tasks=tasks, exit_criteria=exits),
        Phase(name="General availability", steps=(Step(percent=100),)),
    )
    return Plan(name="storm", title="Toggle storm", phases=phases)


def create(svc: Services, count: int, prefix: str) -> dict[int, list[int]]:
    """`count` rollouts; returns rollout id -> its item ids."""
    now = datetime.now(UTC)
    plan = storm_plan()
    ids = add_rollouts(svc.db, plan, count, prefix, TEAM, now)
    with svc.db.reading() as session:
        items: dict[int, list[int]] = {rid: [] for rid in ids}
        for item_id, rollout_id in session.execute(
            select(ChecklistItem.id, ChecklistItem.rollout_id)
            .where(ChecklistItem.rollout_id.in_(ids))
            .order_by(ChecklistItem.id)
        ):
            items[rollout_id].append(item_id)
    return items


def set_initial(svc: Services, all_items: list[int], ticked: set[int]) -> None:
    now = datetime.now(UTC)
    with svc.db.transaction() as session:
        session.execute(
            update(ChecklistItem)
            .where(ChecklistItem.id.in_(all_items))
            .values(checked_at=None, checked_by=None)
        )
        session.execute(
            update(ChecklistItem)
            .where(ChecklistItem.id.in_(sorted(ticked)))
            .values(checked_at=now, checked_by="WPRE00001")
        )


def run_parallel(work: list[tuple[int, int, bool]], call: object, label: str) -> Outcome:
    """Runs `call(rollout_id, item_id, checked)` for each piece of work from THREADS threads."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    changed = [0]
    lock = threading.Lock()

    def one(piece: tuple[int, int, bool]) -> None:
        began = time.perf_counter()
        try:
            n = call(*piece)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            with lock:
                failures[f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"] += 1
            return
        took = time.perf_counter() - began
        with lock:
            latencies.append(took)
            changed[0] += n or 0

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix=label) as pool:
        futures = [pool.submit(one, piece) for piece in work]
        deadline = began + STORM_TIMEOUT
        for future in futures:
            future.result(timeout=max(0.1, deadline - time.perf_counter()))
    return Outcome(time.perf_counter() - began, latencies, failures, changed[0])


def run_backend(name: str, url: str) -> dict[str, object]:
    svc = services(url)
    try:
        items = create(svc, ROLLOUTS, "storm")
        warm = create(svc, 1, "warm")
        all_items = [i for ids in items.values() for i in ids]
        rng = random.Random(SEED)
        ticked = set(rng.sample(all_items, int(len(all_items) * UNTICK_SHARE)))
        rollout_of = {i: rid for rid, ids in items.items() for i in ids}

        # Baseline: plain single-row UPDATE transactions, same threads, same database.
        now = datetime.now(UTC)

        def plain_update(_rollout_id: int, item_id: int, checked: bool) -> int:
            with svc.db.engine.connect() as conn, begin_writing(conn):
                conn.execute(
                    update(ChecklistItem)
                    .where(ChecklistItem.id == item_id)
                    .values(checked_at=now if checked else None, checked_by="WBASE0001" if checked else None)
                )
            return 1

        order = list(all_items)
        rng.shuffle(order)
        work = [(rollout_of[i], i, i not in ticked) for i in order][:TOGGLES]
        run_parallel([(0, i, True) for i in next(iter(warm.values()))], plain_update, "warm")  # warm-up
        baseline = run_parallel(work, plain_update, "base")

        # The storm, through the real flow, from the same starting state.
        set_initial(svc, all_items, ticked)
        with svc.db.reading() as session:
            revisions_before = dict(session.execute(select(Rollout.id, Rollout.revision)).all())

        def toggle(rollout_id: int, item_id: int, checked: bool) -> int:
            actor = Actor(team_id=TEAM, user_id=f"W{item_id % 97:08d}", channel_id="CSTORM")
            return checklist.set_items(svc, actor, rollout_id, [ItemChange(item_id, checked)])

        warm_id, warm_items = next(iter(warm.items()))
        run_parallel([(warm_id, i, True) for i in warm_items], toggle, "warm")  # warm-up, another rollout
        storm = run_parallel(work, toggle, "storm")

        # What the database says.
        with svc.db.reading() as session:
            state = dict(
                session.execute(
                    select(ChecklistItem.id, ChecklistItem.checked_at.is_not(None)).where(
                        ChecklistItem.id.in_(all_items)
                    )
                ).all()
            )
            events = Counter(
                dict(
                    session.execute(
                        select(Event.kind, func.count())
                        .where(
                            Event.rollout_id.in_(list(items)),
                            Event.kind.in_([EventKind.ITEM_CHECKED, EventKind.ITEM_UNCHECKED]),
                        )
                        .group_by(Event.kind)
                    ).all()
                )
            )
            revisions = dict(
                session.execute(select(Rollout.id, Rollout.revision).where(Rollout.id.in_(list(items)))).all()
            )
        toggled = {item for _, item, _ in work}
        wrong = [i for i in toggled if state[i] != (i not in ticked)]
        per_rollout = Counter(rid for rid, _, _ in work)
        lost_revisions = sum(per_rollout[rid] - (revisions[rid] - revisions_before[rid]) for rid in items)
        expected_checked = sum(1 for _, _, c in work if c)
        return {
            "baseline": baseline,
            "storm": storm,
            "wrong": wrong,
            "events_checked": events.get(EventKind.ITEM_CHECKED, 0),
            "events_unchecked": events.get(EventKind.ITEM_UNCHECKED, 0),
            "expected_checked": expected_checked,
            "expected_unchecked": len(work) - expected_checked,
            "lost_revisions": lost_revisions,
            "work": len(work),
        }
    finally:
        svc.db.dispose()


def main() -> int:
    began = time.monotonic()
    print(
        f"toggle storm: {TOGGLES} toggles of distinct items ({int(UNTICK_SHARE * 100)}% unticks) on {ROLLOUTS} rollouts x "
        f"{ITEMS} items, {THREADS} threads, through bot.flows.set_items\n{machine_note()}\n"
    )
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'storm.db'}"
        upgrade(url)
        results["sqlite"] = run_backend("sqlite", url)
    if postgres_available():
        with postgres_database("bench_storm") as pg_url:
            results["postgres"] = run_backend("postgres", pg_url)
    else:
        print("postgres: not reachable, skipped (set BENCH_POSTGRES_URL)")

    rows = []
    for backend, r in results.items():
        base, storm = r["baseline"], r["storm"]
        assert isinstance(base, Outcome) and isinstance(storm, Outcome)
        rows.append(
            [
                f"{backend}: plain UPDATE (baseline)",
                len(base.latencies),
                f"{base.rate:,.0f}/s",
                ms(pct(base.latencies, 50)),
                ms(pct(base.latencies, 99)),
                "1.00x",
            ]
        )
        rows.append(
            [
                f"{backend}: set_items toggle",
                len(storm.latencies),
                f"{storm.rate:,.0f}/s",
                ms(pct(storm.latencies, 50)),
                ms(pct(storm.latencies, 99)),
                f"{storm.rate / base.rate:.2f}x",
            ]
        )
    print()
    table(["what", "done", "per second", "p50", "p99", "vs baseline"], rows)

    print("\nlost anything?")
    for backend, r in results.items():
        storm = r["storm"]
        base = r["baseline"]
        assert isinstance(storm, Outcome) and isinstance(base, Outcome)
        wrong = r["wrong"]
        assert isinstance(wrong, list)
        failed = sum(storm.failures.values())
        lost = len(wrong)
        ev_ok = (
            r["events_checked"] == r["expected_checked"] and r["events_unchecked"] == r["expected_unchecked"]
        )
        ok = lost == 0 and failed == 0 and ev_ok and r["lost_revisions"] == 0 and storm.changed == r["work"]
        print(
            f"  {backend}: items in the wrong state {lost}/{r['work']}; failed calls {failed}; "
            f"events checked {r['events_checked']}/{r['expected_checked']}, unchecked {r['events_unchecked']}/{r['expected_unchecked']}; "
            f"set_items reported {storm.changed} changes; revisions lost {r['lost_revisions']}: "
            + ("OK (0 lost)" if ok else "MISSED")
        )
        for reason, count in storm.failures.most_common(3):
            print(f"    {count} x {reason}")
        if base.failures:
            print(f"    baseline failures: {dict(base.failures)}")
    print("\ntargets")
    for backend, r in results.items():
        base, storm = r["baseline"], r["storm"]
        assert isinstance(base, Outcome) and isinstance(storm, Outcome)
        verdict(
            f"{backend}: ticks per second vs plain UPDATEs",
            storm.rate / base.rate,
            TARGET_RATIO,
            higher_is_better=True,
        )
    print(f"\n{machine_note()}\n(total {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
