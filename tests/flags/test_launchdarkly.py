"""The LaunchDarkly provider against the local stand-in of LaunchDarkly's REST API."""

from __future__ import annotations

from typing import Any

import pytest

from bot.flags import ApprovalRequired, FlagError
from bot.flags.launchdarkly import LaunchDarklyProvider
from tests.fakes.launchdarkly_api import FakeLaunchDarkly


def _provider(
    fake: FakeLaunchDarkly, *, token: str | None = None, environment: str = "production"
) -> LaunchDarklyProvider:
    return LaunchDarklyProvider(
        token or fake.token, project=fake.project, environment=environment, api_url=fake.url
    )


def _ids(flag: dict[str, Any]) -> tuple[str, str]:
    by_value = {v["value"]: v["_id"] for v in flag["variations"]}
    return by_value[True], by_value[False]


def test_set_percent_sends_weights_for_the_true_and_false_variations(fake_ld: FakeLaunchDarkly) -> None:
    flag = fake_ld.add_flag("checkout.v2")
    true_id, false_id = _ids(flag)
    state = _provider(fake_ld).set_percent("checkout.v2", 25)

    [patch] = fake_ld.patches()
    assert patch.headers["content-type"] == "application/json; domain-model=launchdarkly.semanticpatch"
    assert patch.headers["authorization"] == fake_ld.token
    assert patch.path == "/api/v2/flags/default/checkout.v2"
    assert patch.body == {
        "environmentKey": "production",
        "instructions": [
            {
                "kind": "updateFallthroughVariationOrRollout",
                "rolloutWeights": {true_id: 25_000, false_id: 75_000},
            },
            {"kind": "turnFlagOn"},
        ],
    }
    assert (state.exists, state.enabled, state.percent, state.strategy_id) == (
        True,
        True,
        25.0,
        "fallthrough",
    )
    stored = fake_ld.flag("checkout.v2")["environments"]
    assert stored["production"]["on"] and not stored["test"]["on"]


@pytest.mark.parametrize(
    ("percent", "true_weight"), [(0, 0), (1, 1_000), (2.5, 2_500), (33.333, 33_333), (100, 100_000)]
)
def test_weights_are_thousandths_and_sum_to_100000(
    fake_ld: FakeLaunchDarkly, percent: float, true_weight: int
) -> None:
    # The false variation comes first here, so an index mix-up would show.
    flag = fake_ld.add_flag("f", values=(False, True), on=True)
    true_id, false_id = _ids(flag)
    state = _provider(fake_ld).set_percent("f", percent)
    [patch] = fake_ld.patches()
    weights = patch.body["instructions"][0]["rolloutWeights"]
    assert weights == {true_id: true_weight, false_id: 100_000 - true_weight}
    assert state.percent == true_weight / 1000
    # Already on: no turnFlagOn.
    assert [i["kind"] for i in patch.body["instructions"]] == ["updateFallthroughVariationOrRollout"]


def test_read_reports_the_fallthrough_rollout(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag(
        "r",
        on=True,
        fallthrough={
            "rollout": {
                "variations": [{"variation": 0, "weight": 12_500}, {"variation": 1, "weight": 87_500}]
            }
        },
    )
    fake_ld.add_flag("fixed-true", fallthrough={"variation": 0})
    fake_ld.add_flag("fixed-false")
    provider = _provider(fake_ld)
    rolled = provider.read("r")
    assert (rolled.exists, rolled.enabled, rolled.percent) == (True, True, 12.5)
    assert provider.read("fixed-true").percent == 100
    assert provider.read("fixed-false").percent == 0
    # The read asks for the one environment only.
    assert fake_ld.requests[-1].query == {"env": ["production"]}


def test_approval_required_is_its_own_error(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag("guarded")
    fake_ld.require_approval("production")
    provider = _provider(fake_ld)
    with pytest.raises(ApprovalRequired) as raised:
        provider.set_percent("guarded", 25)
    assert raised.value.reason == (
        "LaunchDarkly requires an approval to change guarded in production; request it in LaunchDarkly"
    )
    assert raised.value.approval_required and not raised.value.retryable and raised.value.status == 405
    assert isinstance(raised.value, FlagError)
    assert not fake_ld.flag("guarded")["environments"]["production"]["on"]
    assert "changes there require approval" in provider.check()
    # Another environment without approvals takes the change.
    assert _provider(fake_ld, environment="test").set_percent("guarded", 25).percent == 25


def test_a_missing_flag_reads_missing_and_cannot_be_set(fake_ld: FakeLaunchDarkly) -> None:
    provider = _provider(fake_ld)
    assert not provider.read("nope").exists
    with pytest.raises(FlagError) as raised:
        provider.set_percent("nope", 5)
    assert raised.value.reason == "flag nope does not exist in LaunchDarkly project default"
    assert not raised.value.retryable and raised.value.status == 404
    assert fake_ld.patches() == []


def test_turn_off_keeps_team_rules_on(fake_ld: FakeLaunchDarkly) -> None:
    rule = {
        "_id": "r1",
        "clauses": [{"attribute": "email", "op": "endsWith", "values": ["@example.com"]}],
        "variation": 0,
    }
    flag = fake_ld.add_flag("ruled", on=True, rules=[rule])
    true_id, false_id = _ids(flag)
    provider = _provider(fake_ld)
    provider.set_percent("ruled", 50)
    state = provider.turn_off("ruled")
    last = fake_ld.patches()[-1].body["instructions"]
    assert last == [
        {"kind": "updateFallthroughVariationOrRollout", "rolloutWeights": {true_id: 0, false_id: 100_000}}
    ]
    assert state.enabled and state.percent == 0
    assert fake_ld.flag("ruled")["environments"]["production"]["rules"] == [rule]


def test_turn_off_without_team_targeting_turns_the_flag_off(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag("plain")
    provider = _provider(fake_ld)
    provider.set_percent("plain", 50)
    state = provider.turn_off("plain")
    assert [i["kind"] for i in fake_ld.patches()[-1].body["instructions"]] == [
        "updateFallthroughVariationOrRollout",
        "turnFlagOff",
    ]
    assert not state.enabled and state.percent == 0


@pytest.mark.parametrize(
    ("status", "retryable", "words"),
    [
        (400, False, "rejected the change"),
        (403, False, "may not change"),
        (409, True, "conflicting change"),
        (429, True, "rate limiting"),
        (500, True, "failed with 500"),
        (503, True, "failed with 503"),
    ],
)
def test_http_errors_map_to_reasons(
    fake_ld: FakeLaunchDarkly, status: int, retryable: bool, words: str
) -> None:
    fake_ld.add_flag("f")
    fake_ld.fail(status, method="PATCH", times=1, headers={"Retry-After": "7"} if status == 429 else None)
    with pytest.raises(FlagError) as raised:
        _provider(fake_ld).set_percent("f", 5)
    assert raised.value.retryable is retryable
    assert raised.value.status == status
    assert words in raised.value.reason
    if status == 429:
        assert "retry after 7 s" in raised.value.reason


def test_a_wrong_token_is_not_retryable(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag("f")
    with pytest.raises(FlagError) as raised:
        _provider(fake_ld, token="api-wrong").read("f")
    assert not raised.value.retryable and raised.value.status == 401
    assert "LD_API_TOKEN" in raised.value.reason


def test_a_non_boolean_flag_is_refused(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag("colour", values=("red", "green", "blue"))
    provider = _provider(fake_ld)
    assert provider.read("colour").percent is None
    with pytest.raises(FlagError, match="not a true/false flag"):
        provider.set_percent("colour", 10)
    assert fake_ld.patches() == []


def test_an_unknown_environment_is_a_clear_error(fake_ld: FakeLaunchDarkly) -> None:
    fake_ld.add_flag("f")
    provider = _provider(fake_ld, environment="staging")
    with pytest.raises(FlagError, match="no environment 'staging'"):
        provider.set_percent("f", 1)
    with pytest.raises(FlagError, match="LD_PROJECT, LD_ENVIRONMENT"):
        provider.check()


def test_link_is_the_flag_page_in_the_environment() -> None:
    provider = LaunchDarklyProvider("t", project="web", environment="production")
    assert provider.link("checkout.v2") == "https://app.launchdarkly.com/web/production/features/checkout.v2"
