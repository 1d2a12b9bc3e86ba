"""`storage.json_text`: `loads` is `json.loads` for any input (the same values, of the same
types, or the stdlib's own error), and what `dumps` writes reads back as `json.dumps`' text
does, or fails as it fails."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storage.json_text import dumps, fast_dumps, loads

SETTINGS = settings(max_examples=400, deadline=None, database=None)  # no .hypothesis/ folder


def typed(value: Any) -> Any:
    """`value` with its types spelled out (1 is not 1.0 nor True, NaN is NaN, -0.0 is not 0.0,
    dict keys in their order), for comparing two parses exactly."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, value)


def outcome(parse: Any, text: Any) -> Any:
    try:
        return typed(parse(text))
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return ("error", type(error), str(error))


def assert_reads_as_stdlib(text: str | bytes) -> None:
    assert outcome(loads, text) == outcome(json.loads, text), text


def assert_reads_as_stdlib_as_text_and_bytes(text: str) -> None:
    """As a str, and as the UTF-8 bytes of it (lone surrogates kept)."""
    assert_reads_as_stdlib(text)
    assert_reads_as_stdlib(text.encode("utf-8", "surrogatepass"))


# Every kind of JSON value, with what orjson would read differently: integers beyond 64 bits,
# NaN and infinities, lone surrogates, non-ASCII, long digit runs in strings.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**66)
    | st.integers(min_value=-(2**66), max_value=-(2**62))
    | st.floats()
    | st.text(st.characters(exclude_categories=()))  # surrogates too
    | st.text()
    | st.sampled_from(["1234567890123456789", "é✅", "\u2028", "\x00", "null", ""])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)
# The stdlib's text, as it writes it in each way: escaped or not, indented or not.
STYLES = st.sampled_from(
    [{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":"), "ensure_ascii": False}]
)


@SETTINGS
@given(VALUES, STYLES)
def test_it_reads_any_json_text_as_the_stdlib_does(value: Any, style: dict[str, Any]) -> None:
    assert_reads_as_stdlib_as_text_and_bytes(json.dumps(value, **style))


TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    '"a"',
    "1",
    "-",
    "0",
    "9" * 19,
    "9" * 18,
    ".5",
    "e",
    "E+",
    "e400",
]
TOKENS += ["NaN", "Infinity", "-Infinity", "true", "nul", "null", " ", "\t", "\n", "\r", "\x0c", "\\", "\\u"]
TOKENS += [
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\ud800",
    "\ufeff",
    "é",
    "\x00",
    "\x1f",
    "\x7f",
    "\\n",
    "\\x41",
]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=25))
def test_it_reads_odd_text_as_the_stdlib_does(pieces: list[str]) -> None:
    assert_reads_as_stdlib_as_text_and_bytes("".join(pieces))


ODD = [
    "NaN",
    "[Infinity, -Infinity]",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",  # orjson reads this one as a float
    "-9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 400,
    '{"n": 123456789012345678901234567890}',
    "1.7976931348623157e308",
    "4.9e-324",
    "0.30000000000000004",
    "9007199254740993",
    "-0",
    "-0.0",
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"',
    '"\ud800"',
    "\ufeff{}",
    '{"a": 1, "b": 2, "a": 3}',
    "[" * 1100 + "]" * 1100,
    "[" * 900 + "]" * 900,
    "",
    " ",
    "[1,]",
    "01",
    '"\x1f"',
    '"\\u0000"',
]


@pytest.mark.parametrize("text", ODD)
def test_the_inputs_orjson_reads_differently(text: str) -> None:
    assert_reads_as_stdlib(text)
    assert_reads_as_stdlib(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf{}",
        '{"a": 1}'.encode("utf-16"),
        '{"a": 1}'.encode("utf-32-le"),
        b"\xed\xa0\x80",
        b'"\xff"',
    ],
)
def test_bytes_the_stdlib_decodes_itself(raw: bytes) -> None:
    assert_reads_as_stdlib(raw)


def test_other_calls_go_to_the_stdlib() -> None:
    assert loads(bytearray(b'{"a": 1}')) == {"a": 1}
    assert loads('{"a": 1.5}', parse_float=Decimal) == {"a": Decimal("1.5")}
    with pytest.raises(TypeError):
        loads(None)


def written(write: Any, value: Any) -> Any:
    """What the stdlib reads back from `write(value)`, or the error writing it raised."""
    try:
        text = write(value)
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return ("error", type(error))
    assert isinstance(text, str)
    return typed(json.loads(text))


# Dict keys of every type the stdlib converts (orjson refuses them: the stdlib writes those).
KEYS = st.text(max_size=4) | st.integers() | st.floats() | st.booleans() | st.none()
WRITTEN = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(KEYS, inner, max_size=5)
    ),
    max_leaves=30,
)


@SETTINGS
@given(WRITTEN)
@example({"headers": {"content-type": ["application/x-www-form-urlencoded"], "x-slack-retry-num": ["1"]}})
@example([float("nan"), float("inf"), -0.0, 1e16, "é✅\u2028"])
@example({"big": 2**64, 1: "int key", "lone": "\ud800"})
def test_what_it_writes_reads_back_as_the_stdlibs_text(value: Any) -> None:
    assert written(dumps, value) == written(json.dumps, value)


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"at": datetime(2026, 1, 2, tzinfo=UTC)},
        [date(2026, 1, 2)],
        [time(12, 0)],
        Point(1),
        {1, 2},
        b"bytes",
        Decimal("1.5"),
        object(),
        {(1, 2): "tuple key"},
    ],
    ids=repr,
)
def test_what_the_stdlib_refuses_it_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        dumps(value)


def test_a_circular_value_fails_as_in_the_stdlib() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(loop)


def test_its_text_is_compact_utf8_with_the_keys_in_order() -> None:
    value = {"z": ["é", 1, 2.5, True], "a": {"✅": "x"}}
    assert dumps(value) == '{"z":["é",1,2.5,true],"a":{"✅":"x"}}'
    assert fast_dumps({"a": None}) is None  # null: the stdlib's text, in case it was a NaN
    assert dumps({"a": None, "b": float("nan")}) == '{"a": null, "b": NaN}'
