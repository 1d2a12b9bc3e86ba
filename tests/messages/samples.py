"""Fixed read models and a fixed clock: every message kind rendered from the same rollout, for
the snapshot tests and the style tests. Nothing here reads a database or the time of day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.gates import GateInput, GateResult, Observation, evaluate_gate
from bot.domain.plans.model import Direction, Metric, Rule
from bot.domain.rollouts import Moved
from messages.views import EventView, ItemView, Outcome, PhaseView, RolloutView, SnapshotView, StepView

TZ = "America/Los_Angeles"
# Mon 30 Nov 2026, 09:00 in Los Angeles: the step started the evening before.
NOW = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
STARTED = NOW - timedelta(hours=10)
DATADOG = "https://app.datadoghq.com/metric/explorer?exp_metric=trace.http.request.errors"

ERROR_RATE = Metric(
    key="error_rate",
    name="Error rate",
    query="sum:trace.http.request.errors{service:web}.as_rate()",
    rule=Rule.ABSOLUTE,
    threshold=0.1,
    unit="%",
)
ERROR_TRIGGER = Metric(
    key="error_rate_trigger",
    name="Error rate",
    query="sum:trace.http.request.errors{service:web}.as_rate()",
    rule=Rule.ABSOLUTE,
    threshold=0.5,
    unit="%",
)
LATENCY = Metric(
    key="latency_p95",
    name="Latency p95",
    query="p95:trace.http.request.duration{service:web}",
    rule=Rule.RELATIVE,
    threshold=10,
    unit="ms",
)
CONVERSION = Metric(
    key="conversion",
    name="Checkout conversion",
    query="avg:checkout.conversion{service:web}",
    rule=Rule.LOWER,
    threshold=2.5,
    unit="%",
    bad=Direction.DOWN,
)


def item(i: int, text: str, kind: str, ticked: bool = False) -> ItemView:
    return ItemView(
        id=i,
        text=text,
        kind=kind,
        checked_by="U_ANA" if ticked else None,
        checked_at=STARTED + timedelta(hours=1) if ticked else None,
    )


def rollout(status: str = "active", *, phase: int = 0, step: int = 0) -> RolloutView:
    done = STARTED - timedelta(days=2)
    phases = (
        PhaseView(
            1,
            0,
            "Internal Testing",
            done if phase > 0 else None,
            (StepView(0, "internal", 0.0, None, done if phase > 0 else None),),
            (
                item(1, "Deploy behind the flag", "task", ticked=True),
                item(2, "Run the smoke tests", "task"),
                item(3, "No P1 bugs open", "exit"),
                item(4, "QA sign-off", "exit", ticked=True),
            ),
        ),
        PhaseView(
            1,
            1,
            "Canary",
            done if phase > 1 else None,
            (
                StepView(0, "1%", 1.0, 2_000, done if (phase, step) > (1, 0) else None),
                StepView(1, "5%", 5.0, 10_000, done if phase > 1 else None),
            ),
            (item(5, "Watch the dashboards for a day", "task"), item(6, "Error rate within limits", "exit")),
        ),
        PhaseView(
            1,
            2,
            "Full Launch",
            done if status == "completed" else None,
            (
                StepView(0, "100%", 100.0, None, done if status == "completed" else None),
                StepView(1, "launch", 100.0, None, done if status == "completed" else None),
            ),
            (),
        ),
    )
    return RolloutView(
        id=1,
        feature="checkout-v2",
        template="backend",
        plan_title="Backend service",
        owner_id="U_OWNER",
        approvers=("U_APPROVER",),
        channel_id="C_ROLLOUT",
        status=status,
        is_open=status in ("active", "paused"),
        revision=3,
        timezone=TZ,
        country="US",
        flag_key="checkout_v2",
        service="web",
        stakeholder_channels=("C_LAUNCH",),
        phase_index=phase,
        step_index=step,
        step_started_at=STARTED,
        updated_at=STARTED,
        digest="daily",
        digest_time="09:30",
        phases=phases,
        # A rollback sets the flag to 0 %, and the plan wants 0 % of a rolled-back rollout.
        flag_percent=1.0 if phase and status != "rolled_back" else 0.0,
        flag_plan_percent=1.0 if phase and status != "rolled_back" else 0.0,
        # The last stop: a pause by the bot when a trigger fired, a rollback by the owner.
        stopped_by={"rolled_back": "U_OWNER"}.get(status),
        stopped_at=NOW - timedelta(hours=1) if status in ("paused", "rolled_back") else None,
        stop_reason={"paused": "rollback trigger fired: Error rate", "rolled_back": "checkout errors"}.get(
            status
        ),
    )


def gate(
    error_rate: float = 1.217,
    *,
    unticked: tuple[str, ...] = ("No P1 bugs open",),
    soak_days: float = 3,
    step: str = "internal",
) -> GateResult:
    readings = {
        "error_rate": Observation(error_rate, series=(1.0, 1.02, 1.05, 1.1, 1.16, error_rate)),
        "error_rate_trigger": Observation(error_rate),
        "latency_p95": Observation(251.0, series=(240.0, 244.0, 250.0, 249.0, 251.0, 251.0)),
        "conversion": Observation(3.1),
    }
    baselines = {
        "error_rate": Observation(1.0),
        "error_rate_trigger": Observation(1.0),
        "latency_p95": Observation(240.0),
        "conversion": Observation(3.0),
    }
    return evaluate_gate(
        GateInput(
            metrics=[ERROR_RATE, LATENCY, CONVERSION],
            triggers=[ERROR_TRIGGER],
            readings=readings,
            baselines=baselines,
            unchecked_exit_criteria=unticked,
            step_title=step,
            step_started_at=STARTED,
            min_business_days=soak_days,
            now=NOW,
            tz=TZ,
            country="US",
        )
    )


LINKS = (("error_rate", DATADOG), ("latency_p95", DATADOG.replace("errors", "duration")))


def blocked() -> Outcome:
    return Outcome(1, "checkout-v2", TZ, "internal", gate(), None, "1:0:0", links=LINKS)


def passed() -> Outcome:
    moved = Moved("internal", "1%", "Internal Testing", False)
    return Outcome(
        1, "checkout-v2", TZ, "internal", gate(1.05, unticked=(), soak_days=0), moved, None, links=LINKS
    )


def looked() -> Outcome:
    return Outcome(
        1, "checkout-v2", TZ, "internal", gate(1.05, unticked=()), None, None, snapshot_only=True, links=LINKS
    )


def rolled_back() -> Outcome:
    return Outcome(
        1,
        "checkout-v2",
        TZ,
        "1%",
        gate(1.9, unticked=(), step="1%"),
        None,
        None,
        rolled_back=True,
        links=LINKS,
    )


def events() -> tuple[EventView, ...]:
    at = STARTED
    return (
        EventView("started", "U_OWNER", at, {}),
        EventView("item_checked", "U_ANA", at + timedelta(hours=1), {"text": "Deploy behind the flag"}),
        EventView("item_checked", "U_ANA", at + timedelta(hours=1), {"text": "QA sign-off"}),
        EventView("advance_blocked", "U_OWNER", at + timedelta(hours=2), {}),
        EventView("paused", "U_OWNER", at + timedelta(hours=3), {"reason": "waiting for the fix"}),
    )


def last_check() -> SnapshotView:
    return SnapshotView(taken_at=STARTED + timedelta(hours=2), passed=False, blockers=gate().blockers)
