"""The canary judgement: R's wilcox.test reproduced to 1e-6, Kayenta's classification rules,
and the score and verdict, as a release manager would decide them by hand."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.judgement import (
    Classification,
    MetricJudgement,
    Outcome,
    Verdict,
    classify,
    mann_whitney,
    score,
)

# ---------------------------------------------------------------------------------------------
# Reference values from R 4.2.2 Patched (2022-11-10 r83330), Debian 12 package r-base-core,
# printed with sprintf("%.17g") from, for each sample below (canary, control):
#   wilcox.test(canary, control, conf.int=TRUE, conf.level=CONF, exact=FALSE, correct=TRUE)
#       -> rows with exact=False (normal approximation, tie and continuity corrections)
#   wilcox.test(canary, control, conf.int=TRUE, conf.level=CONF)
#       -> rows with exact=None (R's default: the exact test, since n < 50 and no ties; for the
#          samples with ties R's default gives the exact=FALSE numbers, so they are not repeated)
# Row: sample, exact, CONF, W (statistic), p.value, estimate, conf.int[1], conf.int[2].
# ---------------------------------------------------------------------------------------------
# fmt: off
SAMPLES: dict[str, tuple[list[float], list[float]]] = {
    "no_ties_small": (
        [
            8.394, 8.786, 10.353, 11.253, 9.805, 7.458, 9.848, 11.338
        ],
        [
            8.589, 7.097, 10.341, 10.338, 9.205, 10.985, 9.238, 9.433, 11.309, 10.258
        ],
    ),
    "ties": (
        [
            125.0, 130.0, 120.0, 125.0, 130.0, 125.0, 125.0, 120.0, 135.0, 120.0, 125.0, 135.0
        ],
        [
            125.0, 115.0, 115.0, 125.0, 125.0, 115.0, 130.0, 115.0, 125.0, 110.0, 115.0, 125.0, 130.0,
            120.0, 120.0
        ],
    ),
    "sizes_5_vs_60": (
        [
            0.53, 0.45, 0.56, 0.47, 0.61
        ],
        [
            0.55, 0.55, 0.49, 0.48, 0.46, 0.44, 0.48, 0.42, 0.46, 0.37, 0.54, 0.48, 0.38, 0.47, 0.5, 0.55,
            0.51, 0.42, 0.49, 0.51, 0.51, 0.39, 0.56, 0.45, 0.56, 0.44, 0.49, 0.57, 0.43, 0.52, 0.48, 0.49,
            0.53, 0.47, 0.45, 0.52, 0.53, 0.52, 0.36, 0.51, 0.49, 0.47, 0.5, 0.52, 0.55, 0.46, 0.52, 0.5,
            0.42, 0.53, 0.52, 0.43, 0.52, 0.45, 0.52, 0.49, 0.5, 0.5, 0.49, 0.47
        ],
    ),
    "identical": (
        [
            220.4, 310.1, 195.1, 286.2, 240.3, 243.2, 223.9, 232.2, 260.2, 243.3
        ],
        [
            220.4, 310.1, 195.1, 286.2, 240.3, 243.2, 223.9, 232.2, 260.2, 243.3
        ],
    ),
    "shift_up": (
        [
            135.16, 129.85, 122.96, 131.13, 127.36, 138.36, 124.62, 133.18, 131.25, 128.24, 128.59, 134.01
        ],
        [
            101.42, 107.94, 94.36, 105.09, 100.83, 94.82, 97.18, 95.19, 100.61, 100.1, 102.53, 95.98
        ],
    ),
    "shift_down": (
        [
            75.0, 78.0, 75.0, 88.0, 66.0, 78.0, 72.0, 79.0, 84.0, 70.0, 82.0, 68.0, 72.0, 83.0, 87.0, 81.0,
            86.0, 82.0, 78.0, 90.0
        ],
        [
            99.0, 91.0, 99.0, 104.0, 100.0, 111.0, 108.0, 102.0, 98.0, 98.0, 101.0, 86.0, 102.0, 102.0,
            102.0, 95.0, 91.0, 100.0, 101.0, 94.0
        ],
    ),
    "larger_no_ties": (
        [
            53.5697, 54.0552, 45.5384, 48.2817, 44.6739, 45.4648, 41.6309, 52.0301, 49.7641, 51.8937,
            50.2194, 48.1135, 51.6257, 44.5494, 57.4136, 44.8606, 50.4032, 53.3411, 46.5093, 50.014, 44.871,
            47.537, 46.1421, 56.9591, 47.4388, 46.8184, 56.7552, 51.3668, 56.8577, 56.4941
        ],
        [
            57.616, 50.1837, 48.202, 45.2849, 46.1696, 41.4147, 58.0486, 45.7108, 55.5303, 49.9458, 53.1721,
            49.8712, 49.303, 52.2954, 47.388, 42.7029, 57.4958, 52.3512, 54.3551, 54.8576, 43.5841, 51.0427,
            45.2626, 46.7243, 46.6694, 50.0964, 53.2163, 52.5098, 51.0674, 45.274, 52.0277, 46.9918,
            52.8538, 39.7129, 54.1836, 52.1214, 45.3856, 50.7181, 54.41, 52.9755
        ],
    ),
}

R_REFERENCE = [
    ("no_ties_small", False, 0.98, 41, 0.9645647049173347, 0.013513846933580907, -1.7800100731786714, 1.7640026896450278),
    ("no_ties_small", None, 0.98, 41, 0.96540061245943609, 0.013500000000000512, -1.7799999999999994, 1.7639999999999993),
    ("ties", False, 0.98, 131.5, 0.038452300102844589, 5.0000332734857125, -2.5278772689315646e-05, 10.000043650440336),
    ("sizes_5_vs_60", False, 0.98, 200, 0.22175765551022006, 0.039991939440509564, -0.039962789990466548, 0.10997837020089121),
    ("identical", False, 0.98, 50, 1, 0, -42.899972729566002, 42.899972729566002),
    ("shift_up", False, 0.98, 144, 3.6584553538971001e-05, 30.641485740920675, 26.069973171341875, 35.490056270260794),
    ("shift_up", None, 0.98, 144, 7.39602301050679e-07, 30.645000000000003, 26.069999999999993, 35.489999999999995),
    ("shift_down", False, 0.98, 3.5, 1.1111077514211582e-07, -20.000002832506933, -25.999972354007056, -15.999951179727427),
    ("larger_no_ties", False, 0.98, 570, 0.72626320874975336, -0.41550895457815462, -2.9969013575269505, 2.5026599594899084),
    ("larger_no_ties", None, 0.98, 570, 0.72794227643205145, -0.4167500000000004, -2.9883000000000024, 2.5022999999999982),
    ("larger_no_ties", False, 0.9, 570, 0.72626320874975336, -0.41550895457815462, -2.1534763839662112, 1.557381086928662),
    ("larger_no_ties", None, 0.9, 570, 0.72794227643205145, -0.4167500000000004, -2.1535000000000011, 1.5574000000000012),
]
# fmt: on
R_WITHOUT_TIES = {"no_ties_small", "shift_up", "larger_no_ties"}


@pytest.mark.parametrize(("sample", "exact", "confidence", "w", "p", "estimate", "low", "high"), R_REFERENCE)
def test_agrees_with_r(
    sample: str,
    exact: bool | None,
    confidence: float,
    w: float,
    p: float,
    estimate: float,
    low: float,
    high: float,
) -> None:
    canary, control = SAMPLES[sample]
    result = mann_whitney(canary, control, confidence=confidence, exact=exact)
    got = (result.u, result.p_value, result.estimate, result.ci_low, result.ci_high)
    assert got == pytest.approx((w, p, estimate, low, high), rel=0, abs=1e-6)
    assert (result.n_canary, result.n_control) == (len(canary), len(control))
    assert result.exact == (exact is None and sample in R_WITHOUT_TIES)


# --- the test's edges ------------------------------------------------------------------------


def test_exact_p_value_of_complete_separation_is_two_orders_in_252() -> None:
    # 5 vs 5, every canary value above every control value: 1 of the C(10,5) = 252 rank
    # orders is as extreme on each side. R 4.2.2: wilcox.test(c(6,7,8,9,10), c(1,2,3,4,5),
    # conf.int=TRUE, conf.level=0.98) gives W = 25, p = 0.0079365079365079361, estimate 5,
    # interval 2 to 8 (qwilcox(0.01, 5, 5) = 2: the 2nd smallest and 2nd largest difference).
    result = mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert result.exact
    assert result.u == 25
    assert result.p_value == pytest.approx(2 / 252, rel=1e-15)
    assert (result.estimate, result.ci_low, result.ci_high) == (5, 2, 8)


def test_nan_and_inf_are_dropped_before_testing() -> None:
    canary, control = SAMPLES["ties"]
    dirty = mann_whitney([math.nan, *canary, math.inf], [*control, -math.inf, math.nan])
    assert dirty == mann_whitney(canary, control)


def test_a_side_without_finite_values_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        mann_whitney([math.nan, math.inf], [1.0, 2.0])


def test_all_values_equal_is_no_shift() -> None:
    # R stops here ("cannot compute confidence interval when all observations are tied").
    result = mann_whitney([3.0] * 6, [3.0] * 8)
    assert (result.u, result.p_value, result.estimate, result.ci_low, result.ci_high) == (24, 1, 0, 0, 0)


def test_two_constant_sides_differ_by_their_one_difference() -> None:
    result = mann_whitney([5.0] * 6, [2.0] * 6)
    assert (result.estimate, result.ci_low, result.ci_high) == (3, 3, 3)
    assert result.p_value < 0.01


# --- properties ------------------------------------------------------------------------------

# Integers keep shifted values exact (x + c - y == (x - y) + c) and give plenty of ties.
sides = st.lists(st.integers(-40, 40), min_size=1, max_size=25)
# The normal path locates its estimate and interval ends to R's tol.root (1e-4), not exactly.
ROOT_SLACK = 2e-4


@settings(max_examples=150, deadline=None)
@given(sides, sides, st.sampled_from([None, False]))
def test_estimate_lies_within_the_interval(canary: list[int], control: list[int], exact: bool | None) -> None:
    result = mann_whitney(canary, control, exact=exact)
    slack = 0 if result.exact else ROOT_SLACK
    assert result.ci_low - slack <= result.estimate <= result.ci_high + slack
    assert min(canary) - max(control) <= result.ci_low
    assert result.ci_high <= max(canary) - min(control)
    assert 0 <= result.p_value <= 1


def middle_differences(canary: list[int], control: list[int]) -> tuple[float, float]:
    """The one or two middle values of all canary - control differences: the Hodges-Lehmann
    median is their mean; any point between them splits the pairs evenly."""
    diffs = sorted(x - y for x in canary for y in control)
    return diffs[(len(diffs) - 1) // 2], diffs[len(diffs) // 2]


@settings(max_examples=150, deadline=None)
@given(sides, sides, st.sampled_from([None, False]))
def test_estimate_is_the_hodges_lehmann_shift(
    canary: list[int], control: list[int], exact: bool | None
) -> None:
    result = mann_whitney(canary, control, exact=exact)
    low, high = middle_differences(canary, control)
    if result.exact:
        assert result.estimate == (low + high) / 2
    else:  # as R's: some point between the middle differences, found to within tol.root
        assert low - ROOT_SLACK <= result.estimate <= high + ROOT_SLACK


@settings(max_examples=150, deadline=None)
@given(sides, sides, st.sampled_from([None, False]))
def test_swapping_the_samples_mirrors_the_result(
    canary: list[int], control: list[int], exact: bool | None
) -> None:
    forward = mann_whitney(canary, control, exact=exact)
    backward = mann_whitney(control, canary, exact=exact)
    slack = 0 if forward.exact else ROOT_SLACK
    assert backward.u == len(canary) * len(control) - forward.u
    assert backward.p_value == pytest.approx(forward.p_value, abs=1e-12)
    assert backward.ci_low == pytest.approx(-forward.ci_high, abs=slack)
    assert backward.ci_high == pytest.approx(-forward.ci_low, abs=slack)
    if forward.exact:
        assert backward.estimate == -forward.estimate
    else:  # R's normal-path estimate is any point of the middle gap, so only the gap mirrors
        low, high = middle_differences(canary, control)
        assert low - slack <= -backward.estimate <= high + slack


@settings(max_examples=100, deadline=None)
@given(sides, sides, st.integers(-100, 100))
def test_shifting_the_canary_shifts_estimate_and_interval_alike(
    canary: list[int], control: list[int], c: int
) -> None:
    before = mann_whitney(canary, control)
    after = mann_whitney([x + c for x in canary], control)
    if before.exact and after.exact:
        assert after.estimate == before.estimate + c
        assert (after.ci_low, after.ci_high) == (before.ci_low + c, before.ci_high + c)
    elif not before.exact and not after.exact:
        assert after.ci_low == pytest.approx(before.ci_low + c, abs=ROOT_SLACK)
        assert after.ci_high == pytest.approx(before.ci_high + c, abs=ROOT_SLACK)


@settings(max_examples=100, deadline=None)
@given(sides, sides, st.lists(st.sampled_from([math.nan, math.inf, -math.inf]), max_size=5), st.randoms())
def test_non_finite_values_change_nothing(
    canary: list[int], control: list[int], junk: list[float], rnd: random.Random
) -> None:
    dirty = [float(x) for x in canary] + junk
    rnd.shuffle(dirty)
    assert mann_whitney(dirty, control) == mann_whitney(canary, control)
    assert classify(dirty, control, bad="up") == classify(canary, control, bad="up")


# --- classification: one row per call a release manager would make by hand --------------------

# Two unrelated sets of 20 offsets (ms) around 200 ms: the same spread, different values.
# fmt: off
CANARY_NOISE = [-3.1, 0.5, -1.6, 1.2, 1.5, -5.2, -5.8, 4.0, -2.9, -3.2, 5.9, -0.4, 4.0, -0.3, 1.7, -4.2, 1.6, 4.4, 0.3, 2.9]
CONTROL_NOISE = [2.1, -5.2, 3.1, 1.1, -2.4, -5.6, 4.4, -0.3, 2.6, 4.5, 2.6, 5.1, -1.3, 3.6, -0.7, 5.2, 4.5, -4.8, -4.4, -3.4]
# fmt: on
CONTROL = [round(200 + d, 1) for d in CONTROL_NOISE]


def canary_at(factor: float = 1.0, plus: float = 0.0) -> list[float]:
    return [round(200 * factor + plus + d, 1) for d in CANARY_NOISE]


# fmt: off
CLASSIFY_TABLE = [
    # scenario, canary, control, options, outcome, words in the reason
    ("latency up 30%, bad is up", canary_at(1.3), CONTROL, {"bad": "up"}, Outcome.HIGH, "higher"),
    ("latency down 30%, bad is up: better", canary_at(0.7), CONTROL, {"bad": "up"}, Outcome.PASS, "good direction"),
    ("throughput down 30%, bad is down", canary_at(0.7), CONTROL, {"bad": "down"}, Outcome.LOW, "lower"),
    ("throughput up 30%, bad is down: better", canary_at(1.3), CONTROL, {"bad": "down"}, Outcome.PASS, "good direction"),
    ("either way is bad, up 30%", canary_at(1.3), CONTROL, {"bad": "both"}, Outcome.HIGH, "mean ratio 1.297"),
    ("either way is bad, down 30%", canary_at(0.7), CONTROL, {"bad": "both"}, Outcome.LOW, "mean ratio 0.698"),
    ("same distribution, other values", canary_at(), CONTROL, {"bad": "up"}, Outcome.PASS, "no clear difference"),
    ("identical data", CONTROL, CONTROL, {"bad": "both"}, Outcome.PASS, "identical"),
    # Real but small: +5% latency, sure of it, yet under the allowed ratio 1.1 ...
    ("latency up 5%, 10% allowed", canary_at(1.05), CONTROL, {"bad": "up"}, Outcome.PASS, "significant but small"),
    # ... and a failure when no increase is allowed (Kayenta's default allowedIncrease, 1.0).
    ("latency up 5%, none allowed", canary_at(1.05), CONTROL, {"bad": "up", "allowed_ratio": 1.0}, Outcome.HIGH, "1.048"),
    ("throughput down 5%, 10% allowed", canary_at(0.95), CONTROL, {"bad": "down"}, Outcome.PASS, "over the allowed 0.909"),
    ("throughput down 5%, none allowed", canary_at(0.95), CONTROL, {"bad": "down", "allowed_ratio": 1.0}, Outcome.LOW, "0.948"),
    # +4 ms on 200: the interval (0.5 to 6.3 ms) clears 0, but not 25% of the 3.4 ms shift.
    ("+4 ms, Kayenta's tolerance", canary_at(plus=4), CONTROL, {"bad": "up", "allowed_ratio": 1.0}, Outcome.PASS, "±0.838"),
    ("+4 ms, no tolerance", canary_at(plus=4), CONTROL, {"bad": "up", "allowed_ratio": 1.0, "tolerance": 0}, Outcome.HIGH, "higher"),
    # Errors where the control had none: no mean ratio to excuse them, the test alone decides.
    ("errors appear from zero", [0, 0, 1, 2, 3, 2, 4, 3, 1, 2], [0.0] * 10, {"bad": "up"}, Outcome.HIGH, "ratio undefined"),
    ("4 points a side", canary_at(1.3)[:4], CONTROL[:4], {"bad": "up"}, Outcome.NODATA, "4 canary and 4 control"),
    ("NaN leaves 4 canary points", [*canary_at(1.3)[:4], math.nan], CONTROL, {"bad": "up"}, Outcome.NODATA, "5 needed"),
    ("no data at all", [], [math.nan] * 5, {"bad": "up"}, Outcome.NODATA, "0 canary and 0 control"),
    # Why min_points is 5: at 3 a side R's exact "98%" interval is the full range of the
    # differences (really 90%), so complete separation reads HIGH although p is only 0.1.
    ("3 points each, 3 allowed", [300, 310, 320], [100, 110, 120], {"bad": "up", "min_points": 3}, Outcome.HIGH, "p = 0.1"),
]
# fmt: on


@pytest.mark.parametrize(
    ("canary", "control", "options", "outcome", "words"),
    [row[1:] for row in CLASSIFY_TABLE],
    ids=[row[0] for row in CLASSIFY_TABLE],
)
def test_classify(
    canary: list[float], control: list[float], options: dict[str, object], outcome: Outcome, words: str
) -> None:
    result = classify(canary, control, **options)  # type: ignore[arg-type]
    assert result.outcome is outcome, result.reason
    assert words in result.reason


def test_fractional_metrics_get_an_interval_finer_than_r_default_tolerance() -> None:
    # Error rates as fractions, with ties (so the root-finding path): R's absolute tol.root of
    # 1e-4 is a sixth of this whole shift; classify locates the interval to 1e-4 of the spread.
    control = [0.00176, 0.00177, 0.00213, 0.00154, 0.00197, 0.00155, 0.00222, 0.00204, 0.00227, 0.00177]
    canary = [0.003, 0.00256, 0.00248, 0.00309, 0.00231, 0.00253, 0.00273, 0.00306, 0.00241, 0.00253, 0.00251]
    judged = classify(canary, control, bad="up").test
    precise = mann_whitney(canary, control, tol_root=1e-12)
    assert judged is not None and not judged.exact
    assert (judged.ci_low, judged.ci_high) == pytest.approx((precise.ci_low, precise.ci_high), abs=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"bad": "sideways"},
        {"bad": "up", "tolerance": -0.1},
        {"bad": "up", "allowed_ratio": 0.9},
        {"bad": "up", "min_points": 0},
    ],
)
def test_classify_refuses_nonsense_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        classify(canary_at(), CONTROL, **options)  # type: ignore[arg-type]


# --- scoring ---------------------------------------------------------------------------------


def judged(outcome: Outcome, name: str = "m", weight: float = 1.0, critical: bool = False) -> MetricJudgement:
    return MetricJudgement(name, Classification(outcome, "set by the test"), weight, critical)


P, H, L, N = Outcome.PASS, Outcome.HIGH, Outcome.LOW, Outcome.NODATA


def metrics(*outcomes: Outcome) -> list[MetricJudgement]:
    return [judged(o, f"m{i}") for i, o in enumerate(outcomes)]


# fmt: off
SCORE_TABLE = [
    # scenario, results, score, verdict
    ("everything passes", metrics(*[P] * 10), 100, Verdict.PASS),
    ("19 of 20 pass: exactly the pass mark", metrics(*[P] * 19, H), 95, Verdict.PASS),
    ("9 of 10 pass: a person decides", metrics(*[P] * 9, L), 90, Verdict.MARGINAL),
    ("3 of 4 pass: exactly the marginal mark", metrics(P, P, P, H), 75, Verdict.MARGINAL),
    ("7 of 10 pass", metrics(*[P] * 7, H, H, L), 70, Verdict.FAIL),
    ("a critical metric is high", [*metrics(*[P] * 9), judged(H, "errors", critical=True)], 0, Verdict.FAIL),
    ("a critical metric is low", [*metrics(*[P] * 9), judged(L, "orders", critical=True)], 0, Verdict.FAIL),
    ("a critical metric passes", [*metrics(*[P] * 9), judged(P, "errors", critical=True)], 100, Verdict.PASS),
    ("a heavy metric fails", [judged(H, "p99", weight=3), *metrics(P, P)], 40, Verdict.FAIL),
    ("a light metric fails", [judged(H, "cpu", weight=0.5), *metrics(*[P] * 10)], 100 * 10 / 10.5, Verdict.PASS),
    # NODATA counts neither for nor against the score, but never lets the bot advance.
    ("one of ten has no data", metrics(*[P] * 9, N), 100, Verdict.MARGINAL),
    ("a critical metric has no data", [*metrics(*[P] * 9), judged(N, "errors", critical=True)], 100, Verdict.NODATA),
    ("half have no data", metrics(P, P, N, N), 100, Verdict.NODATA),
    ("no data, and between the marks", metrics(*[P] * 8, H, N), 100 * 8 / 9, Verdict.MARGINAL),
    ("nothing has data", metrics(N, N, N), None, Verdict.NODATA),
    ("nothing to judge", [], None, Verdict.NODATA),
    # What data there is already fails: that outranks waiting for the rest.
    ("the one metric with data fails", metrics(H, N, N, N), 0, Verdict.FAIL),
    # Weights of 0.1: 0.9 of 1.2 is 74.99999999999999 in floats, and still the 75 mark.
    ("tenth weights at the marginal mark", [judged(o, f"m{i}", 0.1) for i, o in enumerate([P] * 9 + [H] * 3)], 75, Verdict.MARGINAL),
]
# fmt: on


@pytest.mark.parametrize(
    ("results", "value", "verdict"), [row[1:] for row in SCORE_TABLE], ids=[row[0] for row in SCORE_TABLE]
)
def test_score(results: list[MetricJudgement], value: float | None, verdict: Verdict) -> None:
    result = score(results)
    assert result.verdict is verdict, result.reason
    assert result.value == (None if value is None else pytest.approx(value))


def test_score_names_what_failed_and_what_had_no_data() -> None:
    result = score([judged(H, "p99 latency"), judged(N, "error rate"), *metrics(*[P] * 8)])
    assert result.failed == ("p99 latency",)
    assert result.nodata == ("error rate",)
    assert "p99 latency" in result.reason
    assert "error rate" in result.reason
    assert result.verdict is Verdict.MARGINAL


def test_thresholds_are_the_callers() -> None:
    assert score(metrics(*[P] * 9, H), pass_threshold=90).verdict is Verdict.PASS
    assert score(metrics(*[P] * 9, H), pass_threshold=99, marginal_threshold=95).verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("results", "options"),
    [
        ([judged(P, weight=0)], {}),
        ([judged(P, weight=-1)], {}),
        (metrics(P), {"pass_threshold": 70, "marginal_threshold": 80}),
        (metrics(P), {"pass_threshold": 101}),
    ],
)
def test_score_refuses_nonsense(results: list[MetricJudgement], options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        score(results, **options)
