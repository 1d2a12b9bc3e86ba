"""Judged metrics in the gate: a metric marked `judge = "mann-whitney"` is decided by the
statistical canary test of `bot.domain.judgement`, not by its rule and threshold.

Per metric (success criterion or rollback trigger):

- canary = the metric's timeseries over its window now; control = the control cohort's
  timeseries over the same window (`control_query`/`control_queries`), else the series stored
  with the baseline at start. NaN and ±inf are dropped (`classify` does).
- `classify(canary, control, bad=metric.bad)` with Kayenta's defaults (98% confidence,
  tolerance 0.25, allowed mean ratio 1.1, at least 5 points a side): PASS → pass, HIGH/LOW →
  fail (a judged trigger fires), NODATA → no data.
- the timeseries has one point a minute of the window (`series_points`), so a 60-minute
  window gives up to 60 points a side.

Over the judged success criteria, `score` (weights, `critical`) with pass 95 and marginal 75:

| score verdict | the gate                                                          |
|---------------|-------------------------------------------------------------------|
| PASS          | the judged metrics let it advance                                  |
| MARGINAL      | blocks, says "marginal" with the score; a person may Advance anyway |
| FAIL          | blocks (score below 75, or a critical metric HIGH/LOW: score 0)    |
| NODATA        | blocks like missing data                                          |

A minimum of traffic (`min_count`) applies before any of this: below it the reading has no
value, "not enough traffic yet (312 of 500 requests)", and blocks like no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.domain.judgement import Classification, MetricJudgement, Outcome, Score, classify, score
from bot.domain.plans.model import MANN_WHITNEY, Direction, Metric

__all__ = [
    "CONFIDENCE",
    "MANN_WHITNEY",
    "Judged",
    "blocker",
    "judge",
    "judged_rule",
    "score_metrics",
    "series_points",
    "short_of_traffic",
]

CONFIDENCE = 0.98
PASS_THRESHOLD = 95.0
MARGINAL_THRESHOLD = 75.0
SPARKLINE_POINTS = 15
MAX_JUDGED_POINTS = 240  # one a minute, up to 4 h: enough for the test, not a flood of points
_MINUS = "\u2212"
_COUNT_NOUNS = {"hits": "requests", "requests": "requests"}


def series_points(metric: Metric) -> int:
    """How many points of its window a metric's timeseries asks for."""
    if not metric.judge:
        return SPARKLINE_POINTS
    return max(SPARKLINE_POINTS, min(metric.window_minutes, MAX_JUDGED_POINTS))


def short_of_traffic(metric: Metric, count: float | None, *, has_value: bool) -> str | None:
    """Why the reading must not count for lack of traffic, or None when there was enough.
    An unreadable count blocks only a reading that has a value (else its own problem stands)."""
    if metric.min_count is None:
        return None
    name, least = metric.min_count
    noun = _COUNT_NOUNS.get(name, name)
    if count is None:
        return (
            f"the traffic ({noun}) could not be read, so the minimum of {least:g} is unknown"
            if has_value
            else None
        )
    if count >= least:
        return None
    return f"not enough traffic yet ({count:g} of {least:g} {noun})"


@dataclass(frozen=True)
class Judged:
    """One judged metric: the classification, and the shift with its interval (canary −
    control, in the metric's unit) when the test ran."""

    outcome: Outcome
    verdict: str  # "pass", "fail", "no data": the gate's Verdict values
    words: str  # "no significant change", "significantly higher", …
    reason: str  # classify's own sentence, with p and the mean ratio
    shift: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float = CONFIDENCE
    mean_ratio: float | None = None
    n_canary: int = 0
    n_control: int = 0

    def line(self, name: str, unit: str) -> str:
        """ "Error rate: +0.04 points (98% interval −0.01 to +0.09) — no significant change"."""
        return f"{name}: {self.summary(unit)}"

    def summary(self, unit: str) -> str:
        """The line without the name: the shift, its interval and the classification."""
        if self.shift is None or self.low is None or self.high is None:
            return self.words
        interval = f"{self.confidence:.0%} interval {_bare(self.low)} to {_bare(self.high)}"
        return f"{_signed(self.shift, unit)} ({interval}) — {self.words}"

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "words": self.words,
            "shift": self.shift,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "mean_ratio": self.mean_ratio,
            "n_canary": self.n_canary,
            "n_control": self.n_control,
        }


def _bare(x: float) -> str:
    return f"{x:+.3g}".replace("-", _MINUS)


def _signed(x: float, unit: str) -> str:
    """A shift in the metric's unit: a change of a percentage is in (percentage) points."""
    if unit == "%":
        return f"{_bare(x)} points"
    return f"{_bare(x)} {unit}" if unit else _bare(x)


_VERDICTS = {Outcome.PASS: "pass", Outcome.HIGH: "fail", Outcome.LOW: "fail", Outcome.NODATA: "no data"}


def judge(metric: Metric, canary: Sequence[float], control: Sequence[float]) -> Judged:
    """Classify one judged metric (rules in the module docstring)."""
    bad: Literal["up", "down"] = "up" if metric.bad is Direction.UP else "down"
    found = classify(canary, control, bad=bad, confidence=CONFIDENCE)
    test = found.test
    verdict = _VERDICTS[found.outcome]
    if found.outcome is Outcome.NODATA:
        return Judged(found.outcome, verdict, found.reason, found.reason)
    if test is None:  # identical samples
        return Judged(found.outcome, verdict, "no change (identical data)", found.reason, 0.0, 0.0, 0.0)
    band = 0.25 * abs(test.estimate)  # classify's tolerance: the same test, in words
    if found.outcome is Outcome.HIGH:
        words = "significantly higher"
    elif found.outcome is Outcome.LOW:
        words = "significantly lower"
    elif test.ci_low <= band and test.ci_high >= -band:
        words = "no significant change"
    elif (test.ci_low > band) == (bad == "down"):
        words = f"significantly {'higher' if test.ci_low > band else 'lower'}, the good way"
    else:
        words = f"significant but small (mean ratio {found.mean_ratio:.3f})"
    return Judged(
        found.outcome,
        verdict,
        words,
        found.reason,
        test.estimate,
        test.ci_low,
        test.ci_high,
        CONFIDENCE,
        found.mean_ratio,
        test.n_canary,
        test.n_control,
    )


def judged_rule(metric: Metric) -> str:
    """The rule of a judged metric, for the gate report and the status message."""
    way = "rise" if metric.bad is Direction.UP else "fall"
    return f"no significant {way} vs control (Mann-Whitney, {CONFIDENCE:.0%})"


def score_metrics(metrics: Sequence[Metric], judged: Sequence[Judged | None]) -> Score | None:
    """The score over the judged success criteria; None when none is judged."""
    weighed = [
        MetricJudgement(m.name, _as_classification(j), weight=m.weight, critical=m.critical)
        for m, j in zip(metrics, judged, strict=True)
        if m.judge and j is not None
    ]
    if not weighed:
        return None
    return score(weighed, pass_threshold=PASS_THRESHOLD, marginal_threshold=MARGINAL_THRESHOLD)


def _as_classification(j: Judged) -> Classification:
    return Classification(j.outcome, j.reason, None, j.mean_ratio)


def blocker(result: Score) -> str | None:
    """The gate's sentence for a judgement that does not pass, None when it passes."""
    match result.verdict.value:
        case "PASS":
            return None
        case "MARGINAL":
            return (
                f"The canary judgement is marginal ({result.reason}): between {MARGINAL_THRESHOLD:g} and "
                f"{PASS_THRESHOLD:g}, a person decides; “Advance anyway…” moves on with a reason."
            )
        case "FAIL":
            return f"The canary judgement fails ({result.reason})."
        case _:
            return f"The canary judgement has no data ({result.reason})."
