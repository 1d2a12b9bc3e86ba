"""The persisted vocabulary. Plain enums, so the domain can use them without SQLAlchemy."""

from enum import StrEnum


class RolloutStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"

    @property
    def is_open(self) -> bool:
        """Open rollouts hold their feature name; finished ones free it."""
        return self in (RolloutStatus.ACTIVE, RolloutStatus.PAUSED)


OPEN_STATUSES = (RolloutStatus.ACTIVE.value, RolloutStatus.PAUSED.value)
# The condition of the partial unique index on open names, as SQL text: a query that is to use
# that index writes the same words (a database sees only that its own condition implies the
# index's, which a bound `IN (?, ?)` never shows).
OPEN_WHERE = f"status IN {OPEN_STATUSES!r}"


class ItemKind(StrEnum):
    TASK = "task"
    EXIT = "exit"


class EventKind(StrEnum):
    STARTED = "started"
    ITEM_CHECKED = "item_checked"
    ITEM_UNCHECKED = "item_unchecked"
    ADVANCED = "advanced"
    ADVANCE_BLOCKED = "advance_blocked"
    OVERRIDDEN = "overridden"
    PHASE_COMPLETED = "phase_completed"
    PAUSED = "paused"
    RESUMED = "resumed"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    SNAPSHOT = "snapshot"
    TRIGGER_FIRED = "trigger_fired"
    APPROVER_ADDED = "approver_added"
    APPROVER_REMOVED = "approver_removed"
    METRICS_EDITED = "metrics_edited"
    REFUSED = "refused"
    UPDATE_SENT = "update_sent"
    DIGEST_CHANGED = "digest_changed"
    DELIVERY_FAILED = "delivery_failed"
    FLAG_SET = "flag_set"  # the bot wrote the flag: data has before -> after
    FLAG_WRITE_FAILED = "flag_write_failed"  # a write the provider refused, in its own words
    FLAG_DRIFT = "flag_drift"  # the flag says something else than the plan
    FLAG_ADOPTED = "flag_adopted"  # people accepted the flag's percentage as it is
    ACCESS_CHANGED = "access_changed"  # who may tick exit criteria or send updates
    ACCESS_REQUESTED = "access_requested"  # someone refused asked the owner to be an approver
    AUTO_CHANGED = "auto_changed"  # auto-advance or the allowed hours of a rollout changed


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class SnapshotKind(StrEnum):
    BASELINE = "baseline"
    GATE = "gate"
    CHECK = "check"
    WATCH = "watch"
