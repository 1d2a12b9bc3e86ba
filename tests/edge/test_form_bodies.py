"""The fast form decoder gives what `urllib.parse.parse_qsl` gives, for any body."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl, quote, urlencode

from slack_bolt import BoltRequest

from bot.edge import form_bodies

PIECES = ["a", "Z", "0", " ", "+", "%", "%2", "%zz", "%41", "%e2%9c%85", "%E2%9C", "%ff", "%5C", "%5Cx41"]
PIECES += ["\\", "\\x41", "é", "✅", "=", "&", "&&", "==", "%26", "%3D", "%0A", "payload", '"', "%25"]


def test_the_same_pairs_as_parse_qsl_for_any_body() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        body = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
        for keep in (True, False):
            assert form_bodies.parse_qsl(body, keep) == parse_qsl(body, keep), body


def test_slack_bodies_as_they_come() -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": "U1", "name": "ann"},
        "actions": [{"action_id": "toggle", "action_ts": "1.2", "selected_options": [{"value": "7"}]}],
        "message": {
            "blocks": [{"type": "section", "text": {"text": 'Ship *it* ✅ "now" & 100% \\o/ + more'}}]
        },
    }
    click = urlencode({"payload": json.dumps(payload)})
    command = urlencode({"command": "/rollout", "text": "start café-é 50% a+b", "trigger_id": "1.2.3"})
    for body in (click, command, "payload=" + quote(json.dumps(payload), safe=""), "a=&b&=c"):
        assert form_bodies.parse_qsl(body, keep_blank_values=True) == parse_qsl(body, keep_blank_values=True)
    form_bodies.install()
    request = BoltRequest(body=click, headers={"content-type": ["application/x-www-form-urlencoded"]})
    assert request.body == payload
    assert request.context.user_id == "U1"


def test_other_calls_go_to_parse_qsl() -> None:
    assert form_bodies.parse_qsl("a=1&b=2", True, max_num_fields=5) == [("a", "1"), ("b", "2")]
    assert form_bodies.parse_qsl(b"a=%41", True) == [(b"a", b"A")]
