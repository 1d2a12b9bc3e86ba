"""The outbox's claim and the statements every delivery runs (bot/delivery/outbox.py has the
rules: leases, order per rollout and channel, exactly once).

They are built once, with bound parameters: building them for each row (and their cache keys,
which SQLAlchemy keeps on the statement object) cost more than running them. They run on a bare
connection (`Database.writing`, `Database.connected`), not in an ORM session: a delivery's four
transactions write no Event and queue nothing, and a session's set-up and ORM execution cost
more than these statements. And they run on that connection's DBAPI connection, compiled once
(`storage.dbapi_statements.Fixed`): through SQLAlchemy's execution path the statements of
delivering a start's "started" message cost 0.33 ms of CPU more, a fifth of the delivery
(bench/work_costs.py: drain 1.44 -> 1.11 ms)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    exists,
    or_,
    select,
    update,
)

from bot.services import Services
from bot.usecases.view_reads import MessageRef
from storage.dbapi_statements import Fixed
from storage.enums import OutboxState
from storage.models import OutboxMessage, Rollout, SlackMessage
from storage.queries import STATUS_PURPOSE


def _claimable(row: Any, now: Any) -> Any:
    return and_(
        row.state == OutboxState.PENDING,
        row.next_attempt_at <= now,
        or_(row.locked_until.is_(None), row.locked_until <= now),
    )


OUTBOX_TABLE = cast(Table, OutboxMessage.__table__)
_NOW = bindparam("now", type_=OUTBOX_TABLE.c.next_attempt_at.type)


def _claim_statements() -> tuple[Select[Any], Select[Any], Update]:
    row = OUTBOX_TABLE.c
    earlier = OUTBOX_TABLE.alias("earlier").c
    same_queue = and_(
        earlier.rollout_id == row.rollout_id,
        earlier.channel_id == row.channel_id,
        earlier.id < row.id,
        earlier.state == OutboxState.PENDING,
    )
    may_go = (_claimable(row, _NOW), ~exists().where(same_queue, ~_claimable(earlier, _NOW)))
    head = select(row.id, row.rollout_id, row.channel_id).where(*may_go).order_by(row.id).limit(1)
    rest = (
        select(row.id)
        .where(
            *may_go,
            row.rollout_id == bindparam("rollout_id"),
            row.channel_id == bindparam("channel_id"),
            row.id > bindparam("head_id"),
        )
        .order_by(row.id)
        .limit(bindparam("limit", type_=Integer))
    )
    # One row per statement, run as an executemany (`Fixed.many`): an IN list of ids would be
    # rendered into the statement again at every claim.
    lease = (
        update(OUTBOX_TABLE)
        .where(row.id == bindparam("id"))
        .values(locked_until=bindparam("lease", type_=row.locked_until.type))
    )
    return head, rest, lease


_HEAD, _REST, _LEASE = _claim_statements()
HEAD_LOCKED = _HEAD.with_for_update(skip_locked=True)
REST_LOCKED = _REST.with_for_update(skip_locked=True)
_HEAD_RUN, _HEAD_LOCKED_RUN = Fixed(_HEAD), Fixed(HEAD_LOCKED)
_REST_RUN, _REST_LOCKED_RUN = Fixed(_REST), Fixed(REST_LOCKED)
_LEASE_RUN = Fixed(_LEASE)
_EARLIER = OUTBOX_TABLE.alias("earlier").c
WAITING_BEFORE = (
    select(_EARLIER.id)
    .where(
        _EARLIER.rollout_id == bindparam("rollout_id"),
        _EARLIER.channel_id == bindparam("channel_id"),
        _EARLIER.id < bindparam("row_id"),
        _EARLIER.state == OutboxState.PENDING,
    )
    .limit(1)
)


@dataclass(frozen=True)
class Pending:
    """An outbox row, as a delivery reads it (the columns it decides from; its outcome is
    written by id and lease)."""

    id: int
    rollout_id: int | None
    dedupe_key: str
    channel_id: str
    in_status_thread: bool
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class Recipient:
    """What a delivery reads of the rollout: where it is, whom to tell, the log's names. Its plan
    and settings, large JSON documents, are not read for every message."""

    id: int
    team_id: str
    channel_id: str
    feature: str
    owner_id: str
    stakeholder_channels: list[str]


_ROW = OUTBOX_TABLE.c
_ROLLOUT = cast(Table, Rollout.__table__).c
_MESSAGE = cast(Table, SlackMessage.__table__).c
_PENDING: tuple[Column[Any], ...] = (
    *(_ROW.id, _ROW.rollout_id, _ROW.dedupe_key, _ROW.channel_id, _ROW.in_status_thread),
    *(_ROW.payload, _ROW.attempts, _ROW.created_at),
)
_RECIPIENT: tuple[Column[Any], ...] = (
    *(_ROLLOUT.id, _ROLLOUT.team_id, _ROLLOUT.channel_id, _ROLLOUT.feature, _ROLLOUT.owner_id),
    _ROLLOUT.stakeholder_channels,
)
_STATUS = (_MESSAGE.id, _MESSAGE.channel_id, _MESSAGE.ts, _MESSAGE.permalink)

# A delivery's row, its rollout and its status message, in one statement.
DELIVERY = (
    select(
        *_PENDING, *(c.label(f"r_{c.name}") for c in _RECIPIENT), *(c.label(f"s_{c.name}") for c in _STATUS)
    )
    .select_from(
        OUTBOX_TABLE.outerjoin(Rollout.__table__, _ROLLOUT.id == _ROW.rollout_id).outerjoin(
            SlackMessage.__table__,
            and_(_MESSAGE.rollout_id == _ROW.rollout_id, _MESSAGE.purpose == STATUS_PURPOSE),
        )
    )
    .where(_ROW.id == bindparam("row_id"))
)
RECIPIENT = select(*_RECIPIENT).where(_ROLLOUT.id == bindparam("id"))


_DELIVERY = Fixed(DELIVERY)


def delivery(conn: Connection, row_id: int) -> tuple[Pending, Recipient | None, MessageRef | None] | None:
    """The row (None: its rollout was discarded meanwhile), its rollout and status message."""
    values = _DELIVERY.first_named(conn, {"row_id": row_id})
    if values is None:
        return None
    row = Pending(*(values[c.name] for c in _PENDING))
    rollout = Recipient(*(values[f"r_{c.name}"] for c in _RECIPIENT)) if values["r_id"] is not None else None
    status = MessageRef(*(values[f"s_{c.name}"] for c in _STATUS)) if values["s_id"] is not None else None
    return row, rollout, status


def recipient(conn: Connection, rollout_id: int | None) -> Recipient | None:
    if rollout_id is None:
        return None
    found = conn.execute(RECIPIENT, {"id": rollout_id}).first()
    return Recipient(**found._asdict()) if found is not None else None


def _finish_statement(names: frozenset[str]) -> Update:
    return (
        update(OUTBOX_TABLE)
        .where(
            _ROW.id == bindparam("row_id"),
            _ROW.locked_until == bindparam("lease", type_=_ROW.locked_until.type),
        )
        .values({name: bindparam(f"v_{name}", type_=_ROW[name].type) for name in sorted(names)})
    )


# An outcome, written only while the lease holds: one statement per set of columns written,
# built the first time it is needed.
_FINISHES: dict[frozenset[str], Fixed] = {}


def finish(conn: Connection, row_id: int, lease: datetime, values: dict[str, Any]) -> bool:
    names = frozenset(values)
    stmt = _FINISHES.get(names)
    if stmt is None:
        stmt = _FINISHES.setdefault(names, Fixed(_finish_statement(names)))
    params = {"row_id": row_id, "lease": lease, **{f"v_{k}": v for k, v in values.items()}}
    return bool(stmt.rowcount(conn, params))


def mark_attempt(conn: Connection, params: dict[str, Any]) -> bool:
    """Runs MARK_ATTEMPT: whether it counted the attempt."""
    return bool(_MARK_ATTEMPT.rowcount(conn, params))


MARK_ATTEMPT = (
    update(OUTBOX_TABLE)
    .where(
        OUTBOX_TABLE.c.id == bindparam("row_id"),
        OUTBOX_TABLE.c.locked_until == bindparam("lease", type_=OUTBOX_TABLE.c.locked_until.type),
        ~exists().where(
            _EARLIER.rollout_id == bindparam("q_rollout_id"),
            _EARLIER.channel_id == bindparam("q_channel_id"),
            _EARLIER.id < bindparam("row_id"),
            _EARLIER.state == OutboxState.PENDING,
        ),
    )
    .values(attempts=bindparam("next_attempts"))
)
_MARK_ATTEMPT = Fixed(MARK_ATTEMPT)


def claim(svc: Services, now: datetime, lease: datetime, limit: int) -> list[tuple[int, datetime]]:
    """Leases the first due rows, up to `limit`, of one rollout and channel: the queue of the
    lowest-id row that may go now (no earlier pending row of its rollout and channel is
    waiting or leased). Returns (id, lease) pairs in id order; the lease is the claim token.

    One queue per claim, so that another worker's claim finds the other queues free rather
    than all their first rows leased by this one."""
    postgres = svc.db.dialect == "postgresql"
    with svc.db.writing() as conn:
        head = (_HEAD_LOCKED_RUN if postgres else _HEAD_RUN).first(conn, {"now": now})
        if head is None:
            return []
        head_id, rollout_id, channel_id = head
        ids = [head_id]
        if rollout_id is not None and limit > 1:
            params = {
                "now": now,
                "rollout_id": rollout_id,
                "channel_id": channel_id,
                "head_id": head_id,
                "limit": limit - 1,
            }
            ids += [i for (i,) in (_REST_LOCKED_RUN if postgres else _REST_RUN).all(conn, params)]
        _LEASE_RUN.many(conn, [{"id": i, "lease": lease} for i in ids])
    return [(i, lease) for i in ids]
