"""Slack's JSON through orjson: the bodies Bolt parses, and what slack_sdk's clients send and
parse. The same values as the `json` module's, in each direction.

A click's body is its whole message as JSON (24 KB for a status message with its checklist),
and Bolt parses it with `json.loads` in `parse_body` (slack_bolt/request/internals.py), once in
the web process to ack it and again in the work process to run it. Then the work process
sends the message back with `chat.update` (slack_sdk's `json.dumps` of the blocks) and parses
Slack's answer, which holds the message again (`json.loads`). `install` gives those modules
a `json` whose `loads` and `dumps` are `storage.json_text`'s: `loads` is the stdlib's result
(orjson's where that is the same, the stdlib's own parse elsewhere: NaN, integers beyond 64
bits, lone surrogates; the one difference left, nesting near the recursion limit, is in
storage/json_text.py), `dumps` writes what the stdlib reads back as
it reads `json.dumps`' text (compact and in UTF-8, which the `charset=utf-8` slack_sdk sends
says; `json.dumps` itself wherever orjson would differ).

CPU per request, both ways on the same values: a 22 KB checklist click's parse 149 → 95 µs
(web_cpu.py's smaller click 50 → 30 µs); in the work process (work_costs.py) a click's
`chat.update` body 66 → 18 µs and its three parses (body, answers) 146 → 91 µs, a start's
bodies 71 → 23 µs and answers 53 → 37 µs, a status' response_url reply 39 → 13 µs.

tests/edge/test_json_bodies.py compares Bolt's bodies, and what reaches a Slack stand-in, with
the stdlib's.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from storage import json_text

log = logging.getLogger(__name__)

# What those modules see as `json`: the stdlib's names (`json.decoder.JSONDecodeError` too,
# which the stdlib's parse raises for text neither reads), `loads` and `dumps` the ones above.
SLACK_JSON = SimpleNamespace(**{name: getattr(json, name) for name in dir(json) if not name.startswith("_")})
SLACK_JSON.loads = json_text.loads
SLACK_JSON.dumps = json_text.dumps


def install() -> None:
    """Bolt's request parser (both processes parse every body) and slack_sdk's Web API and
    webhook clients (the work process's calls) use `SLACK_JSON`."""
    from slack_bolt.request import internals
    from slack_sdk.web import base_client
    from slack_sdk.webhook import client as webhook_client

    for module in (internals, base_client, webhook_client):
        # Only a module that reads the stdlib's `json` by that name: one that no longer does
        # (a new Bolt or slack_sdk) keeps its own way, said once, and nothing else changes.
        if getattr(module, "json", None) not in (json, SLACK_JSON):
            log.warning(
                "%s no longer reads JSON through `json`: its JSON stays the stdlib's", module.__name__
            )
            continue
        setattr(module, "json", SLACK_JSON)  # noqa: B010
