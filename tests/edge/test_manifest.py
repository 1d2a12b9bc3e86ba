"""The Slack app manifests ask for exactly the scopes the code needs.

The code under bot/ is scanned for the Slack Web API methods it calls (`client.chat_update(`,
`say(` …), the slash commands it registers and the events it listens to; a table below says
which bot scope each needs. The test fails when the code calls a method the table does not
know (add it), when a needed scope is missing from manifest.yml, and when the manifest asks
for a scope no code uses.

PyYAML is not a dependency, so the manifests are read by `read_manifest`, a small reader for
the plain block YAML they are written in; it refuses anything outside that subset rather
than guess.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

ROOT = Path(__file__).resolve().parent.parent.parent
HTTP_MANIFEST = ROOT / "manifest.yml"
SOCKET_MANIFEST = ROOT / "manifest.socket.yml"
REQUEST_URL = "https://YOUR-HOST/slack/events"

# Web API method -> the bot scopes it needs (https://docs.slack.dev/reference/methods/<name>).
# An empty tuple: no scope (modals need only interactivity; a permalink needs none).
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat_postMessage": ("chat:write",),
    "chat_update": ("chat:write",),
    "chat_postEphemeral": ("chat:write",),
    "chat_delete": ("chat:write",),
    "chat_getPermalink": (),
    "conversations_join": ("channels:join",),
    # The outbox reads back recent messages to avoid a duplicate post, in public channels
    # and in private ones the bot was invited to.
    "conversations_history": ("channels:history", "groups:history"),
    "conversations_replies": ("channels:history", "groups:history"),
    "users_info": ("users:read",),
    "views_open": (),
    "views_update": (),
    "views_push": (),
    "views_publish": (),
    "files_upload_v2": ("files:write",),
    "auth_test": (),
}
# Bolt's say() posts with chat.postMessage; respond() uses the response_url, which needs none.
HELPER_SCOPES = {"say": ("chat:write",), "respond": ()}
# Events the app subscribes to -> the scope without which Slack will not send them.
EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "app_mention": ("app_mentions:read",),
    "app_home_opened": (),
}
COMMAND_SCOPE = "commands"

WEB_API_METHODS = frozenset(
    name for name in dir(WebClient) if not name.startswith("_") and callable(getattr(WebClient, name))
)
# `.chat_postMessage(`: a call of a snake_case attribute; kept only if WebClient has it.
METHOD_CALL = re.compile(r"\.([a-z]+(?:_[A-Za-z0-9]+)+)\(")
# `client.api_call("chat.postMessage", …)`: the same method called by its dotted name.
API_CALL = re.compile(r"\bapi_call\(\s*[\"']([a-z]+(?:\.[A-Za-z0-9]+)+)[\"']")
HELPER_CALL = re.compile(r"(?<![.\w])(say|respond)\(")
COMMAND = re.compile(r"\bapp\.command\(\s*[\"'](/[\w-]+)[\"']")
EVENT = re.compile(r"\bapp\.event\(\s*[\"']([a-z_.]+)[\"']")


# --- the YAML subset reader -------------------------------------------------------------------

KEY = re.compile(r"^(?P<key>[A-Za-z_][\w.-]*):(?:\s+(?P<value>.*))?$")
# Plain values YAML would read as something else (flow collections, anchors, block scalars…).
UNSUPPORTED_START = tuple("[{&*!|>%@`")


class UnsupportedYaml(ValueError):
    pass


def read_manifest(text: str) -> Any:
    """Reads block mappings, block lists and scalars (quoted or plain strings, true/false,
    integers), two spaces a level. Raises UnsupportedYaml on anything else."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise UnsupportedYaml(f"line {number}: tab")
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            lines.append((len(raw) - len(raw.lstrip(" ")), stripped, number))
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise UnsupportedYaml(f"line {lines[end][2]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        return _list(lines, i, indent)
    return _mapping(lines, i, indent)


def _mapping(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        _, text, number = lines[i]
        match = KEY.match(text)
        if not match or match["key"] in out:
            raise UnsupportedYaml(f"line {number}: expected a new `key: value`, got {text!r}")
        if match["value"]:
            out[match["key"]] = _scalar(match["value"], number)
            i += 1
            continue
        if i + 1 == len(lines) or lines[i + 1][0] < indent:
            raise UnsupportedYaml(f"line {number}: `{match['key']}:` has no value")
        child = lines[i + 1][0]
        if child == indent and not lines[i + 1][1].startswith("- "):
            raise UnsupportedYaml(f"line {number}: `{match['key']}:` has no value")
        out[match["key"]], i = _block(lines, i + 1, child)
    if i < len(lines) and lines[i][0] > indent:
        raise UnsupportedYaml(f"line {lines[i][2]}: unexpected indentation")
    return out, i


def _list(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
        item, number = lines[i][1][2:].strip(), lines[i][2]
        if KEY.match(item):  # "- key: value" opens a mapping whose keys line up with `key`
            lines[i] = (indent + 2, item, number)
            value, i = _mapping(lines, i, indent + 2)
            out.append(value)
        else:
            out.append(_scalar(item, number))
            i += 1
    return out, i


def _scalar(text: str, number: int) -> Any:
    if text.startswith('"'):
        return json.loads(text)  # the manifests only use JSON-compatible escapes
    if text.startswith("'"):
        if not (len(text) > 1 and text.endswith("'")):
            raise UnsupportedYaml(f"line {number}: unclosed quote")
        return text[1:-1].replace("''", "'")
    if text.startswith(UNSUPPORTED_START) or " #" in text or ": " in text:
        raise UnsupportedYaml(f"line {number}: quote this value: {text!r}")
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.lower() in ("yes", "no", "on", "off", "null", "~", "True", "False"):
        raise UnsupportedYaml(f"line {number}: ambiguous plain value {text!r}; quote it")
    return text


# --- what the code uses ---------------------------------------------------------------------


def _code() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted((ROOT / "bot").rglob("*.py"))}


def methods_called() -> dict[str, set[str]]:
    """Web API method (snake_case) -> the files that call it."""
    found: dict[str, set[str]] = {}
    for path, source in _code().items():
        names = [m for m in METHOD_CALL.findall(source) if m in WEB_API_METHODS]
        names += [dotted.replace(".", "_") for dotted in API_CALL.findall(source)]
        for name in names:
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def helpers_used() -> set[str]:
    return {name for source in _code().values() for name in HELPER_CALL.findall(source)}


def commands_registered() -> set[str]:
    return {name for source in _code().values() for name in COMMAND.findall(source)}


def events_handled() -> set[str]:
    return {name for source in _code().values() for name in EVENT.findall(source)}


def scopes_needed() -> dict[str, set[str]]:
    """Scope -> why (method, helper, command or event) the code needs it."""
    needed: dict[str, set[str]] = {}
    reasons: list[tuple[str, tuple[str, ...]]] = [(f"{m}()", METHOD_SCOPES[m]) for m in methods_called()]
    reasons += [(f"{h}()", HELPER_SCOPES[h]) for h in helpers_used()]
    reasons += [(command, (COMMAND_SCOPE,)) for command in commands_registered()]
    reasons += [(f"event {e}", EVENT_SCOPES[e]) for e in events_handled() if e in EVENT_SCOPES]
    for why, scopes in reasons:
        for scope in scopes:
            needed.setdefault(scope, set()).add(why)
    return needed


@pytest.fixture(scope="module")
def http() -> dict[str, Any]:
    return read_manifest(HTTP_MANIFEST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def socket() -> dict[str, Any]:
    return read_manifest(SOCKET_MANIFEST.read_text(encoding="utf-8"))


# --- the manifests ----------------------------------------------------------------------------


def test_the_http_manifest_sends_commands_events_and_interactivity_to_slack_events(http):
    settings = http["settings"]
    assert [c["url"] for c in http["features"]["slash_commands"]] == [REQUEST_URL]
    assert settings["event_subscriptions"]["request_url"] == REQUEST_URL
    assert settings["interactivity"] == {"is_enabled": True, "request_url": REQUEST_URL}
    assert settings["socket_mode_enabled"] is False


def test_the_socket_manifest_is_the_same_app_without_request_urls(http, socket):
    assert socket["settings"]["socket_mode_enabled"] is True

    def without_urls(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_urls(v) for k, v in value.items() if k not in ("url", "request_url")}
        if isinstance(value, list):
            return [without_urls(v) for v in value]
        return value

    assert "YOUR-HOST" not in SOCKET_MANIFEST.read_text(encoding="utf-8")
    expected = without_urls(http)
    expected["settings"]["socket_mode_enabled"] = True
    assert socket == expected


def test_the_manifest_shape(http):
    assert http["display_information"]["name"] == "Rollout Bot"
    assert len(http["display_information"]["description"]) <= 140
    assert http["features"]["bot_user"]["display_name"]
    assert http["features"]["app_home"]["home_tab_enabled"] is True
    # Read-only Messages tab: where the bot can still tell a person something when a channel
    # refuses it (bot/listeners/replies.py).
    assert http["features"]["app_home"]["messages_tab_enabled"] is True
    assert http["features"]["app_home"]["messages_tab_read_only_enabled"] is True
    for command in http["features"]["slash_commands"]:
        assert command["should_escape"] is True  # bot/parsing.py reads <@U123|ana> mentions
        assert command["description"]


def test_every_slash_command_the_code_registers_is_in_the_manifest(http):
    in_manifest = {c["command"] for c in http["features"]["slash_commands"]}
    assert commands_registered() == in_manifest


def test_every_web_api_method_the_code_calls_is_in_the_scope_table():
    unknown = {m: files for m, files in methods_called().items() if m not in METHOD_SCOPES}
    assert not unknown, f"add these to METHOD_SCOPES with the scopes they need: {unknown}"


def test_every_scope_the_code_needs_is_in_the_manifest(http):
    granted = set(http["oauth_config"]["scopes"]["bot"])
    missing = {scope: why for scope, why in scopes_needed().items() if scope not in granted}
    assert not missing, f"add to oauth_config.scopes.bot in both manifests: {missing}"


def test_the_manifest_asks_for_no_scope_the_code_does_not_use(http):
    granted = http["oauth_config"]["scopes"]["bot"]
    assert len(granted) == len(set(granted))
    unused = set(granted) - set(scopes_needed())
    assert not unused, f"no code needs these; remove them from both manifests: {unused}"


def test_events_the_code_handles_are_subscribed_and_their_scopes_granted(http):
    subscribed = set(http["settings"]["event_subscriptions"]["bot_events"])
    assert events_handled() <= subscribed
    assert subscribed <= set(EVENT_SCOPES), "add the new event to EVENT_SCOPES"
    granted = set(http["oauth_config"]["scopes"]["bot"])
    for event in subscribed:
        assert set(EVENT_SCOPES[event]) <= granted, event


def test_the_scan_sees_what_the_code_calls():
    # Guards the scan itself: these calls are in bot/ today; if the scan stopped finding them
    # the scope tests above would pass for the wrong reason.
    assert {"chat_postMessage", "chat_update", "views_open"} <= set(methods_called())
    assert "/rollout" in commands_registered()
    assert "app_mention" in events_handled()


# --- the reader -----------------------------------------------------------------------------


def test_the_reader_reads_the_subset():
    text = (
        "# a comment\n"
        "a:\n"
        "  b: plain text\n"
        '  c: "quoted: yes"\n'
        "  d: true\n"
        "  e: 3\n"
        "  list:\n"
        "    - one:two\n"
        "    - name: x\n"
        "      url: https://h/p\n"
        "  same_indent_list:\n"
        "  - z\n"
    )
    assert read_manifest(text) == {
        "a": {
            "b": "plain text",
            "c": "quoted: yes",
            "d": True,
            "e": 3,
            "list": ["one:two", {"name": "x", "url": "https://h/p"}],
            "same_indent_list": ["z"],
        }
    }


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2]\n",
        "a: {b: c}\n",
        "a: &anchor x\n",
        "a: |\n  text\n",
        "a: yes\n",
        "a: x # comment\n",
        "a: x: y\n",
        "a:\n\tb: c\n",
        "a: 1\na: 2\n",
        "a:\n  b: 1\n    c: 2\n",
        "a:\nb: 1\n",
    ],
)
def test_the_reader_refuses_what_it_does_not_read(text):
    with pytest.raises(UnsupportedYaml):
        read_manifest(text)
