"""The claim-and-run loop of the due work (`bot.delivery.jobs.run_due`, `bot.delivery.charts`):
what a tick claims, in which transactions its jobs run, and how their rows get their next times.

- `run` claims due rows in one short transaction (`FOR UPDATE SKIP LOCKED` on Postgres;
  SQLite serialises writers) by moving their `due_at` a lease ahead: the new `due_at` is the
  claim's token. A crashed run is retried once the lease runs out; another replica never takes
  a leased row. Each job then runs outside that transaction, and its row gets its next time (or
  goes) only while the token still holds, so a change meanwhile wins.
- A job that writes does that in a transaction of its own, with its row's next time, so what
  it queued and when it runs again commit together. A job whose whole run is database work in
  one transaction (`InTransaction`: the digest, the overdue and stale reminders), or is once
  its reads of outside services are done (`Prepared`: the ready check), shares it with the
  jobs of those kinds around it: a stretch of them (at most `SHARED` jobs) commits once, each
  job's writes and its row's next time in it, in claim order. A `Prepared` job reads (in
  transactions of its own) before the stretch's transaction opens, so none is held open across
  an outside service. If any of them raises, none of
  the stretch is committed, and each runs again in a transaction of its own, so only the
  failing one fails (logged, retried after its lease) and the others land: a commit is a round
  trip and, on Postgres, a WAL flush, and cost more than the statements of a reminder.
- Rows claimed with the same `due_at` may run in any order (the database returned them in one),
  so the shared jobs run after the others of their moment: the stretches are longer.
- Jobs whose run writes nothing another job of the tick reads (`SETTLED_TOGETHER`: the watch,
  which only reads, or writes in transactions of its own) have their rows settled at the end of
  the tick, in the last stretch's transaction if there is one, else in one of their own (each
  still only while its token holds; a crash before leaves them leased, and they run again after
  the lease).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from bot.domain.schedule import Due, Kind
from bot.observe import logs, telemetry
from bot.services import Services
from storage import job_queries
from storage.models import DueJob

# The jobs' logger, where operators (and the bench) have always found a job's failure.
log = logging.getLogger("bot.delivery.jobs")

LEASE = timedelta(minutes=5)
FAILED = "%s job of rollout %s failed; it is retried after its lease"
SHARED = 10  # jobs in one shared transaction at most: on SQLite it holds the write lock


@dataclass(frozen=True)
class Claimed:
    id: int
    rollout_id: int
    kind: str
    data: dict[str, Any]
    last_run_at: datetime | None
    now: datetime  # the tick's time: what was due then is what this run covers
    lease: datetime  # the claim's token: the row's due_at while this run holds it
    # Set when the job wrote its row's next time in its own transaction (`in_transaction`):
    # then there is no separate `_finish`.
    settled: list[bool] = field(default_factory=list, compare=False)


Job = Callable[[Services, Claimed], Due | None]
Body = Callable[[Session, Claimed], Due | None]


@dataclass(frozen=True)
class InTransaction:
    """A job that is database work alone: `body` decides, reads and writes in the session it
    is given and returns the row's next time. Called as a job, it runs in a transaction of its
    own; `run` may give it one shared with others (see the module's docstring)."""

    body: Body

    def __call__(self, svc: Services, job: Claimed) -> Due | None:
        return in_transaction(svc, job, lambda session: self.body(session, job))


@dataclass(frozen=True)
class Prepared:
    """A job that reads first, in no transaction of the tick's (an outside service: the ready
    check's Datadog reads), and then is database work alone: `prepare` returns the `Body` that
    does that part (`finished` when there is nothing left to do). Called as a job, the body runs
    in a transaction of its own; `run` may give it one shared with others."""

    prepare: Callable[[Services, Claimed], Body]

    def __call__(self, svc: Services, job: Claimed) -> Due | None:
        body = self.prepare(svc, job)
        return in_transaction(svc, job, lambda session: body(session, job))


def finished(nxt: Due | None) -> Body:
    """The body of a `Prepared` job that decided while preparing: it only records `nxt`."""
    return lambda _session, _job: nxt


# Jobs whose run writes nothing that another job of the same tick reads (the watch only reads,
# or writes in transactions of its own): their rows are settled together at the end of the tick.
SETTLED_TOGETHER = frozenset({Kind.WATCH})


def _claim(svc: Services, now: datetime, limit: int, table: Mapping[str, Job]) -> list[Claimed]:
    lease = now + LEASE
    with svc.db.transaction() as session:
        rows = job_queries.due_rows(session=session, now=now, limit=limit, kinds=tuple(table))
        for r in rows:
            telemetry.DUE_JOB_LAG.labels(r.kind).observe(max(0.0, (now - r.due_at).total_seconds()))
        if rows:
            job_queries.lease_due_rows(session=session, ids=[r.id for r in rows], lease=lease)
    # Due at the same moment, the shared jobs last (a stable sort keeps the claim's order else).
    ordered = sorted(rows, key=lambda r: (r.due_at, isinstance(table[r.kind], InTransaction | Prepared)))
    return [Claimed(r.id, r.rollout_id, r.kind, dict(r.data), r.last_run_at, now, lease) for r in ordered]


def _finish(svc: Services, job: Claimed, nxt: Due | None) -> None:
    with svc.db.transaction() as session:
        _settle(session, job, nxt)


def _settle(session: Session, job: Claimed, nxt: Due | None) -> None:
    """The row's next time (or its end), only while the claim's token still holds."""
    job_queries.settle_due_row(
        session=session,
        job_id=job.id,
        token=job.lease,
        ran_at=job.now,
        next_at=None if nxt is None else nxt.at,
        next_data=None if nxt is None else nxt.data,
    )


def in_transaction(svc: Services, job: Claimed, decide: Callable[[Session], Due | None]) -> Due | None:
    """Runs `decide` and records the row's next time in one transaction: what the job queued
    and when it runs again commit together (and one commit, not two)."""
    with svc.db.transaction() as session:
        nxt = decide(session)
        _settle(session, job, nxt)
    job.settled.append(True)
    return nxt


def mark(svc: Services, job: Claimed, data: dict[str, Any]) -> bool:
    """Writes `data` into the claimed row while the claim holds (its token is unchanged);
    False when it does not, and the row is someone else's now."""
    with svc.db.transaction() as session:
        done = session.execute(
            update(DueJob).where(DueJob.id == job.id, DueJob.due_at == job.lease).values(data=data)
        )
    return bool(cast("CursorResult[Any]", done).rowcount)


def run(svc: Services, table: Mapping[str, Job], *, limit: int) -> int:
    """Claims the due rows of the kinds in `table` and runs each with its job. Returns how many
    jobs ran to the end; one that fails is logged and retried after its lease, and the others
    carry on."""
    ran = 0
    together: list[tuple[Claimed, Due | None]] = []
    shared: list[tuple[Claimed, Body]] = []
    for job in _claim(svc, svc.clock(), limit, table):
        run_job = table[job.kind]
        if isinstance(run_job, InTransaction | Prepared):
            if (body := _body(svc, job, run_job)) is not None:
                shared.append((job, body))
            if len(shared) < SHARED:
                continue
        ran += _run_shared(svc, shared, ())
        shared = []
        if isinstance(run_job, InTransaction | Prepared):
            continue
        with logs.scope(job=job.kind, rollout_id=job.rollout_id):
            try:
                nxt = run_job(svc, job)
                if job.settled or job.kind not in SETTLED_TOGETHER:
                    if not job.settled:
                        _finish(svc, job, nxt)
                    ran += 1
                    telemetry.DUE_JOBS.labels(job.kind, "ok").inc()
                else:
                    together.append((job, nxt))
            except Exception:
                telemetry.DUE_JOBS.labels(job.kind, "failed").inc()
                log.exception(FAILED, job.kind, job.rollout_id)
    return ran + _run_shared(svc, shared, together)


def _body(svc: Services, job: Claimed, run_job: InTransaction | Prepared) -> Body | None:
    """The database part of a shared job; None when preparing it failed (logged: the row stays
    leased, and runs again after the lease)."""
    if isinstance(run_job, InTransaction):
        return run_job.body
    with logs.scope(job=job.kind, rollout_id=job.rollout_id):
        try:
            return run_job.prepare(svc, job)
        except Exception:
            telemetry.DUE_JOBS.labels(job.kind, "failed").inc()
            log.exception(FAILED, job.kind, job.rollout_id)
            return None


def _run_shared(
    svc: Services, shared: Sequence[tuple[Claimed, Body]], together: Sequence[tuple[Claimed, Due | None]]
) -> int:
    """Runs a stretch of `InTransaction` jobs, and settles the rows of `together`, in one
    transaction; when that fails, each job in a transaction of its own, and the rows of
    `together` in one after them."""
    if not shared and not together:
        return 0
    if len(shared) > 1 or together:
        try:
            with svc.db.transaction() as session:
                for job, body in shared:
                    with logs.scope(job=job.kind, rollout_id=job.rollout_id):
                        _settle(session, job, body(session, job))
                for job, nxt in together:
                    _settle(session, job, nxt)
        except Exception:
            log.info(
                "a transaction of %s due jobs failed; each runs again in its own", len(shared), exc_info=True
            )
        else:
            for job, _ in [*shared, *together]:
                telemetry.DUE_JOBS.labels(job.kind, "ok").inc()
            return len(shared) + len(together)
    ran = 0
    for job, body in shared:
        with logs.scope(job=job.kind, rollout_id=job.rollout_id):
            try:
                InTransaction(body)(svc, job)
            except Exception:
                telemetry.DUE_JOBS.labels(job.kind, "failed").inc()
                log.exception(FAILED, job.kind, job.rollout_id)
            else:
                ran += 1
                telemetry.DUE_JOBS.labels(job.kind, "ok").inc()
    return ran + _settle_together(svc, together)


def _settle_together(svc: Services, together: Sequence[tuple[Claimed, Due | None]]) -> int:
    if not together:
        return 0
    kinds = [job.kind for job, _ in together]
    try:
        with svc.db.transaction() as session:
            for job, nxt in together:
                _settle(session, job, nxt)
    except Exception:
        for kind in kinds:
            telemetry.DUE_JOBS.labels(kind, "failed").inc()
        ids = [job.rollout_id for job, _ in together]
        log.exception(
            "the rows of %s jobs of rollouts %s were not settled; retried after their lease", kinds, ids
        )
        return 0
    for kind in kinds:
        telemetry.DUE_JOBS.labels(kind, "ok").inc()
    return len(together)
