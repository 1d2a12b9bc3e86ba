"""Names that look alike are one name; names that would fool a reader are refused."""

from __future__ import annotations

import pytest

from bot.domain.names import (
    MAX_STAKEHOLDERS,
    BadName,
    check_service,
    check_stakeholders,
    clean_feature,
    feature_key,
)

SAME_AS_CHECKOUT = [
    "checkout-v2",
    "Checkout-V2",
    "check\u200bout-v2",  # a zero-width space inside
    "\ufeffcheckout-v2\u200d",  # byte-order mark and zero-width joiner around it
    "\uff43\uff48\uff45\uff43\uff4b\uff4f\uff55\uff54-v2",  # full-width letters
    "checkout\u2011v2",  # non-breaking hyphen
    "checkout\u2013v2",  # en dash
    "checkout\u2212v2",  # minus sign
    "checkout\u202e-v2",  # a bidi override
    "  checkout-v2  ",
]


@pytest.mark.parametrize("name", SAME_AS_CHECKOUT)
def test_look_alikes_are_one_feature(name: str) -> None:
    assert feature_key(clean_feature(name)) == feature_key("checkout-v2")


def test_cafe_typed_either_way_is_one_name() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert clean_feature(composed) == clean_feature(decomposed) == "caf\u00e9"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("\u0441heckout-v2", "mixes Cyrillic and Latin"),  # Cyrillic es, then Latin
        ("p\u0430yments", "mixes Cyrillic and Latin"),  # Cyrillic a
        ("\u200b\u200c\u2060", "only of invisible characters"),
        ("", "empty"),
        ("a\nb", "on one line"),
        ("x" * 81, "the limit is 80"),
    ],
)
def test_names_that_would_fool_a_reader_are_refused(name: str, why: str) -> None:
    with pytest.raises(BadName, match=why):
        clean_feature(name)


def test_a_name_in_one_other_script_is_fine() -> None:
    assert clean_feature("выкатка-2") == "выкатка-2"


@pytest.mark.parametrize("service", ["checkout", "api-gateway", "team/payments:v2", "svc_1.eu"])
def test_service_names_datadog_takes(service: str) -> None:
    assert check_service(service) == service


@pytest.mark.parametrize("service", ["a,b", "x} OR service:*", "x y", "1abc", "a" * 101, "*"])
def test_service_names_that_would_change_the_query_are_refused(service: str) -> None:
    with pytest.raises(BadName, match="not a service name"):
        check_service(service)


def test_stakeholders_are_capped_and_deduplicated() -> None:
    assert check_stakeholders(("C1", "C2", "C1")) == ("C1", "C2")
    with pytest.raises(BadName, match=f"the limit is {MAX_STAKEHOLDERS}"):
        check_stakeholders(tuple(f"C{i}" for i in range(MAX_STAKEHOLDERS + 1)))


def test_a_plan_whose_texts_would_not_fit_a_rollout_is_refused_at_import() -> None:
    from bot.domain.plans.catalog import MAX_STEP_LABEL, get_template, plan_problems
    from bot.domain.plans.model import Phase, Plan, Step

    fine = get_template("standard")
    assert plan_problems(fine) == []
    long_label = Plan(
        name="x", title="X", phases=(Phase(name="P", steps=(Step(1, label="l" * (MAX_STEP_LABEL + 1)),)),)
    )
    assert any("a label is at most 32 characters" in p for p in plan_problems(long_label))
