"""Statistical canary judgement, Kayenta style: is the canary worse than the control, and by
enough to matter?

Each metric's canary and control samples go through a two-sided Mann-Whitney U (Wilcoxon
rank-sum) test (`mann_whitney`), are classified PASS / HIGH / LOW / NODATA (`classify`, the
rules of Kayenta's MannWhitneyClassifier), and the classifications are scored into one
verdict (`score`, Kayenta's weighted scorer plus the bot's rule that it never advances on
missing data).

Standard library only (`statistics.NormalDist`, `math`): the test needs a normal quantile, a
normal tail and a root finder, which do not justify a ~40 MB numpy/scipy dependency in a Slack
bot; and writing them here gives exact control over R's conventions (tie and continuity
corrections, the root-found interval, the exact small-sample distribution), so every number
can be checked against R's `wilcox.test` to 1e-6.

`mann_whitney(canary, control)` is R's
`wilcox.test(canary, control, conf.int=TRUE, conf.level=confidence, correct=TRUE, exact=...)`,
and takes the path R takes:

| `exact`          | tied values in the pooled data | sizes               | path   |
|------------------|--------------------------------|---------------------|--------|
| None (R default) | none                           | both sides below 50 | exact  |
| None             | some, or a side has 50 or more |                     | normal |
| True             | none                           | any                 | exact  |
| True             | some (R warns, then the same)  | any                 | normal |
| False            | any                            | any                 | normal |

- exact: p from the exact null distribution of W (R's pwilcox); the estimate is the
  Hodges-Lehmann shift, the median of canary - control over all pairs; the interval is the
  k-th smallest and k-th largest of those differences, k = qwilcox(alpha/2) (at least 1).
- normal: p from the normal approximation with tie and continuity corrections; estimate and
  interval ends are roots, in the shift, of the rank statistic, found by Brent's method step
  for step as R's uniroot finds them, to `tol_root` (R's default 1e-4, in the data's unit).
  The estimate is where the uncorrected statistic crosses zero: the Hodges-Lehmann median to
  within `tol_root` (with an even number of pairs, any point between the middle two).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from statistics import NormalDist, fmean, median
from typing import Literal

__all__ = [
    "Classification",
    "MannWhitney",
    "MetricJudgement",
    "Outcome",
    "Score",
    "Verdict",
    "classify",
    "mann_whitney",
    "score",
]

Bad = Literal["up", "down", "both"]  # the plan model's Direction ("up"/"down") works as is
_R_TOL_ROOT = 1e-4  # wilcox.test's default tol.root
_EPS = sys.float_info.epsilon  # DBL_EPSILON, as in R's zeroin.c


class Outcome(StrEnum):
    PASS = "PASS"
    HIGH = "HIGH"
    LOW = "LOW"
    NODATA = "NODATA"


class Verdict(StrEnum):
    PASS = "PASS"
    MARGINAL = "MARGINAL"
    FAIL = "FAIL"
    NODATA = "NODATA"


@dataclass(frozen=True)
class MannWhitney:
    """`u` is R's W: canary rank sum - n(n+1)/2, i.e. the (canary, control) pairs where the
    canary is larger, ties counting half. `estimate` and the interval are canary - control."""

    u: float
    p_value: float
    estimate: float
    ci_low: float
    ci_high: float
    n_canary: int
    n_control: int
    exact: bool


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(v)]


def _rank_sum(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, int]:
    """Sum of the mid-ranks of `xs` in the pooled sample, and the tie term sum(t^3 - t)."""
    pooled = sorted([(v, 1) for v in xs] + [(v, 0) for v in ys])
    total, ties, i = 0.0, 0, 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        total += (i + j + 2) / 2 * sum(flag for _, flag in pooled[i : j + 1])
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    return total, ties


def _zeroin(f: Callable[[float], float], a: float, b: float, fa: float, fb: float, tol: float) -> float:
    """Brent's root finder step for step as R's uniroot (zeroin.c). R only locates the interval
    to `tol`, so matching R to 1e-6 means taking the very same steps, not just any root."""
    if fa == 0:
        return a
    if fb == 0:
        return b
    c, fc = a, fa
    for _ in range(1001):  # uniroot's maxiter, plus the one more that zeroin.c allows
        prev_step = b - a
        if abs(fc) < abs(fb):  # keep b the best guess, c on the other side of the root
            a, b, c, fa, fb, fc = b, c, b, fb, fc, fb
        tol_act = 2 * _EPS * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):  # try interpolating
            cb = c - b
            if a == c:  # secant
                t1 = fb / fa
                p, q = cb * t1, 1.0 - t1
            else:  # inverse quadratic
                q, t1, t2 = fa / fc, fb / fc, fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            p, q = (p, -q) if p > 0 else (-p, q)
            if p < 0.75 * cb * q - abs(tol_act * q) / 2 and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _normal(xs: list[float], ys: list[float], alpha: float, tol: float) -> tuple[float, float, float, float]:
    """p, estimate, ci_low, ci_high by the normal approximation, as wilcox.test computes them."""
    nx, ny = float(len(xs)), float(len(ys))

    def z(d: float, correct: bool = True) -> float:  # the statistic for canary - d (R's W(d))
        s, ties = _rank_sum([x - d for x in xs], ys)
        dz = s - nx * (nx + 1) / 2 - nx * ny / 2
        sigma = math.sqrt((nx * ny / 12) * ((nx + ny + 1) - ties / ((nx + ny) * (nx + ny - 1))))
        return (dz - (math.copysign(0.5, dz) if dz and correct else 0.0)) / sigma

    # 2·Φ(-|z|) via erfc: NormalDist.cdf loses far-tail p-values to cancellation.
    p = math.erfc(abs(z(0.0)) / math.sqrt(2))
    lo, hi = min(xs) - max(ys), max(xs) - min(ys)
    if lo == hi:  # every pairwise difference is this one value (R's uniroot refuses)
        return p, lo, lo, lo
    z_lo, z_hi = z(lo), z(hi)

    def root(zq: float) -> float:
        if z_lo - zq <= 0:
            return lo
        if z_hi - zq >= 0:
            return hi
        return _zeroin(lambda d: z(d) - zq, lo, hi, z_lo - zq, z_hi - zq, tol)

    # R finds the estimate with the continuity correction switched off (it sets correct <- FALSE
    # before that uniroot call), so the estimate is where the plain statistic crosses zero.
    def plain(d: float) -> float:
        return z(d, correct=False)

    estimate = _zeroin(plain, lo, hi, plain(lo), plain(hi), tol)
    q = NormalDist().inv_cdf(alpha / 2)  # R's qnorm(alpha/2); the upper one is exactly -q
    return p, estimate, root(-q), root(q)


@lru_cache(maxsize=32)
def _w_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) equally likely rank orders give W = 0 .. m·n: the coefficients
    of the Gaussian binomial [m+n choose m]_q, one factor (1-q^(n+i))/(1-q^i) at a time."""
    coef = [1] + [0] * (m * n + m)
    for i in range(1, m + 1):
        for j in range(i * n + i, n + i - 1, -1):
            coef[j] -= coef[j - n - i]
        for j in range(i, i * n + i + 1):  # exact division: the top i coefficients become 0
            coef[j] += coef[j - i]
    return tuple(coef[: m * n + 1])


def _exact(xs: list[float], ys: list[float], w: float, alpha: float) -> tuple[float, float, float, float]:
    """p, estimate, ci_low, ci_high from the exact distribution (R's pwilcox/qwilcox)."""
    m, n = len(xs), len(ys)
    counts, total, k = _w_counts(m, n), math.comb(m + n, m), round(w)
    tail = sum(counts[k:]) if w > m * n / 2 else sum(counts[: k + 1])
    # qwilcox(alpha/2): the first W whose lower tail reaches alpha/2 (R allows 10 ulps of slack)
    target, cum, qu = alpha / 2 - 10 * _EPS, 0, 0
    while (cum := cum + counts[qu]) / total < target:
        qu += 1
    qu = max(qu, 1)
    diffs = sorted(x - y for x in xs for y in ys)
    return min(2 * tail / total, 1.0), median(diffs), diffs[qu - 1], diffs[m * n - qu]


def mann_whitney(
    canary: Iterable[float],
    control: Iterable[float],
    *,
    confidence: float = 0.98,
    exact: bool | None = None,
    tol_root: float = _R_TOL_ROOT,
) -> MannWhitney:
    """Two-sided Mann-Whitney U test of canary against control, NaN and ±inf dropped first.
    Which computation is used when: see the module docstring. Raises ValueError when a side
    has no finite value. When every value is the same, R stops; this returns W = mn/2, p = 1
    and a zero shift."""
    xs, ys = _finite(canary), _finite(control)
    if not xs or not ys:
        raise ValueError("both canary and control need at least one finite value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    alpha = 1 - confidence
    rank_sum, ties = _rank_sum(xs, ys)
    w = rank_sum - len(xs) * (len(xs) + 1) / 2
    use_exact = ties == 0 and (len(xs) < 50 and len(ys) < 50 if exact is None else exact)
    if len(set(xs + ys)) == 1:
        p, est, low, high = 1.0, 0.0, 0.0, 0.0
    elif use_exact:
        p, est, low, high = _exact(xs, ys, w, alpha)
    else:
        p, est, low, high = _normal(xs, ys, alpha, tol_root)
    return MannWhitney(w, p, est, low, high, len(xs), len(ys), use_exact)


@dataclass(frozen=True)
class Classification:
    """One metric's outcome, in words. `mean_ratio` is mean(canary) / mean(control), None where
    it is no effect size: no data, a control mean of 0 or below, or a negative canary mean."""

    outcome: Outcome
    reason: str
    test: MannWhitney | None = None
    mean_ratio: float | None = None


def _mean_ratio(xs: list[float], ys: list[float]) -> float | None:
    if not xs or not ys:
        return None
    canary, control = fmean(xs), fmean(ys)
    return canary / control if control > 0 and canary >= 0 else None


def classify(
    canary: Iterable[float],
    control: Iterable[float],
    *,
    bad: Bad,
    confidence: float = 0.98,
    tolerance: float = 0.25,
    allowed_ratio: float = 1.1,
    min_points: int = 5,
) -> Classification:
    """Classify one metric as Kayenta's MannWhitneyClassifier does. First rule that holds:

    | # | condition (NaN and ±inf dropped first)                      | outcome |
    |---|-------------------------------------------------------------|---------|
    | 1 | either side has fewer than `min_points` values              | NODATA  |
    | 2 | canary and control hold the same values                     | PASS    |
    | 3 | the interval, widened by `tolerance` × |estimate| each side, | PASS    |
    |   | contains 0 (no clear shift)                                 |         |
    | 4 | shifted up and bad="down", or down and bad="up"             | PASS    |
    |   | (a change in the good direction)                            |         |
    | 5 | up, and mean ratio < `allowed_ratio`                        | PASS    |
    |   | down, and mean ratio > 1 / `allowed_ratio`                  | PASS    |
    |   | ("significant but small"; skipped when the ratio is None)   |         |
    | 6 | shifted up / down                                           | HIGH / LOW |

    The mean ratio is mean(canary) / mean(control); Kayenta's allowedIncrease is `allowed_ratio`,
    its allowedDecrease 1 / `allowed_ratio`. As there, the ratio is a second gate: a large ratio
    on noisy data still passes rule 3. `confidence` 0.98 and `tolerance` 0.25 are Kayenta's.
    `min_points` defaults to 5: with 4 or fewer points a side even complete separation has
    p >= 2/70, so no 98% test can be met, and R's exact interval quietly drops to a lower level
    (3 a side: the full range of differences, a 90% interval) yet reads as a clear shift.
    """
    if bad not in ("up", "down", "both"):
        raise ValueError(f'bad must be "up", "down" or "both", not {bad!r}')
    if tolerance < 0 or allowed_ratio < 1 or min_points < 1:
        raise ValueError("need tolerance >= 0, allowed_ratio >= 1 and min_points >= 1")
    xs, ys = _finite(canary), _finite(control)
    if len(xs) < min_points or len(ys) < min_points:
        return Classification(
            Outcome.NODATA,
            f"not enough data: {len(xs)} canary and {len(ys)} control values after dropping "
            f"NaN/inf, {min_points} needed on each side",
        )
    ratio = _mean_ratio(xs, ys)
    if sorted(xs) == sorted(ys):
        return Classification(Outcome.PASS, "canary and control data are identical", None, ratio)
    # R's tol.root is an absolute 1e-4: far too coarse for metrics measured in fractions (an
    # error rate of 0.002), so the interval is located to 1e-4 of the data's spread when finer.
    spread = max(xs + ys) - min(xs + ys)
    mw = mann_whitney(xs, ys, confidence=confidence, tol_root=min(_R_TOL_ROOT, _R_TOL_ROOT * spread))
    band = tolerance * abs(mw.estimate)
    shift = (
        f"shift {mw.estimate:+.4g} (canary − control), {confidence:.0%} interval "
        f"{mw.ci_low:.4g} to {mw.ci_high:.4g}, p = {mw.p_value:.2g}"
    )
    if mw.ci_low <= band and mw.ci_high >= -band:
        return Classification(
            Outcome.PASS, f"no clear difference: {shift}, widened by ±{band:.4g}, holds 0", mw, ratio
        )
    up = mw.ci_low > band
    moved = "higher" if up else "lower"
    if bad == ("down" if up else "up"):
        return Classification(
            Outcome.PASS, f"canary is {moved}, the good direction for this metric: {shift}", mw, ratio
        )
    said_ratio = "mean ratio undefined" if ratio is None else f"mean ratio {ratio:.3f}"
    limit = allowed_ratio if up else 1 / allowed_ratio
    if ratio is not None and (ratio < limit if up else ratio > limit):
        return Classification(
            Outcome.PASS,
            f"significant but small: canary is {moved}, {shift}; {said_ratio}, "
            f"{'under' if up else 'over'} the allowed {limit:.3f}",
            mw,
            ratio,
        )
    return Classification(
        Outcome.HIGH if up else Outcome.LOW, f"canary is {moved}: {shift}; {said_ratio}", mw, ratio
    )


@dataclass(frozen=True)
class MetricJudgement:
    """A classified metric as the scorer weighs it."""

    name: str
    classification: Classification
    weight: float = 1.0
    critical: bool = False


@dataclass(frozen=True)
class Score:
    """`value` is 0-100, None when no metric could be judged."""

    value: float | None
    verdict: Verdict
    reason: str
    failed: tuple[str, ...] = ()
    nodata: tuple[str, ...] = ()


def score(
    results: Sequence[MetricJudgement], *, pass_threshold: float = 95, marginal_threshold: float = 75
) -> Score:
    """Score = 100 × weight of PASS / weight of all metrics that are not NODATA (NODATA metrics
    are left out, as in Kayenta's scorer). Verdict, first rule that holds:

    | # | condition                                                   | score | verdict  |
    |---|-------------------------------------------------------------|-------|----------|
    | 1 | a critical metric is HIGH or LOW                            | 0     | FAIL     |
    | 2 | no metric, or every metric NODATA                           | None  | NODATA   |
    | 3 | score < `marginal_threshold`                                | score | FAIL     |
    | 4 | a critical metric is NODATA, or NODATA metrics carry half   | score | NODATA   |
    |   | the weight or more (Kayenta's 50 % rule, which scores 0)    |       |          |
    | 5 | score ≥ `pass_threshold` and no metric NODATA               | score | PASS     |
    | 6 | otherwise (between thresholds, or a passing score with a    | score | MARGINAL |
    |   | non-critical metric NODATA): a person decides               |       |          |

    Only PASS lets the bot advance, so it never advances on missing data; failures found in
    the data there is (rules 1, 3) outrank missing data, which calls for waiting (rule 4).
    """
    if not 0 <= marginal_threshold <= pass_threshold <= 100:
        raise ValueError("need 0 <= marginal_threshold <= pass_threshold <= 100")
    if any(not r.weight > 0 for r in results):
        raise ValueError("metric weights must be positive")
    failed = tuple(r.name for r in results if r.classification.outcome in (Outcome.HIGH, Outcome.LOW))
    nodata = tuple(r.name for r in results if r.classification.outcome is Outcome.NODATA)
    critical_failed = [
        r.name for r in results if r.critical and r.classification.outcome in (Outcome.HIGH, Outcome.LOW)
    ]
    if critical_failed:
        reason = f"critical metric failed: {', '.join(critical_failed)}"
        return Score(0.0, Verdict.FAIL, reason, failed, nodata)
    missing_weight = sum(r.weight for r in results if r.classification.outcome is Outcome.NODATA)
    judged_weight = sum(r.weight for r in results if r.classification.outcome is not Outcome.NODATA)
    if not judged_weight:
        return Score(None, Verdict.NODATA, "no metric has enough data to judge", failed, nodata)
    value = 100 * sum(r.weight for r in results if r.classification.outcome is Outcome.PASS) / judged_weight
    said = f"score {value:.0f}" + "".join(
        f"; {label}: {', '.join(names)}"
        for label, names in (("failing", failed), ("no data", nodata))
        if names
    )
    # A little slack at the thresholds: weights like 0.1 must not turn 95 into 94.999...
    if value < marginal_threshold - 1e-9:
        return Score(value, Verdict.FAIL, f"{said}; below {marginal_threshold:g}", failed, nodata)
    critical_missing = any(r.critical and r.classification.outcome is Outcome.NODATA for r in results)
    if critical_missing or missing_weight >= judged_weight:
        return Score(value, Verdict.NODATA, f"{said}; wait for data", failed, nodata)
    if value < pass_threshold - 1e-9 or nodata:
        return Score(value, Verdict.MARGINAL, f"{said}; a person decides", failed, nodata)
    return Score(value, Verdict.PASS, f"{said}; at or above {pass_threshold:g}", failed, nodata)
