"""JSON text read and written through orjson, with the standard library's results.

Profiles put the `json` module high in both processes: Bolt parsing a click's body (its whole
message), the JSON columns, slack_sdk's request bodies and answers. orjson does the same work
in compiled code (a 22 KB checklist click parsed in 95 µs of CPU instead of 149, a start's
JSON column values written in 160 µs instead of 259), but not by the same rules everywhere;
so each function here takes orjson's answer only where it is the stdlib's, and hands
everything else to `json` itself.

`loads(text)` is `json.loads(text)`: the same values (types included) for any input, and the
stdlib's own error where it has one, but for one: text nested deeper than the interpreter's
recursion limit allows from where it is called (about 1,000 levels less the caller's depth),
which the stdlib refuses with `RecursionError` and orjson reads up to 1,024 levels (only
Slack's signed bodies reach it; such a value then fails wherever it is next walked). orjson
differs on:
- NaN, Infinity, -Infinity, and numbers too large for a float (`1e400`): the stdlib reads them
  (as float infinities), orjson refuses them: refused, the stdlib reads the text.
- integers beyond 64 bits: orjson reads them as floats, silently. An integer token that long
  has at least 19 digits in a row, so text holding a run of 19 digits (anywhere, strings too)
  is read by the stdlib. Looking for one costs 22 µs of the 95 on that 22 KB click.
- lone surrogates (`"\\ud800"`, or in the str itself), a UTF-8 BOM before bytes, bytes the
  stdlib reads as UTF-16 or 32, nesting past orjson's 1024 levels: orjson refuses them all.
tests/storage/test_json_text.py compares the two on generated and odd inputs.

`dumps(value)` writes a value for the stdlib to read back as it reads `json.dumps(value)`
(the same value, keys in the same order), not the same characters: orjson's text is compact
and UTF-8 (no `\\uXXXX` for non-ASCII), which any JSON reader, the stdlib included, reads the
same. Where orjson would write or refuse differently, `json.dumps` writes it:
- anything orjson does not write natively (non-str dict keys, integers beyond 64 bits, lone
  surrogates, deeper than 254 levels) and datetimes, dates, times and dataclasses, which it
  would write but the stdlib refuses: `json.dumps` then converts (int keys to "1") or raises
  its own `TypeError`, as before.
- NaN and ±Infinity, which orjson writes as null: a text holding `null` anywhere is written
  again by `json.dumps` (so a value with a None in it costs both).
Left different: a `uuid.UUID` or a plain (non-str, non-int) `Enum` is written by orjson where
`json.dumps` raised `TypeError`. Nothing the bot writes holds one (its enums are StrEnums,
written as their strings either way; its uuids are written as strings).

Where it is used: SQLAlchemy's JSON columns (storage/db.py) and Slack's JSON in Bolt and
slack_sdk (bot/edge/json_bodies.py). Not for hashing (bot/edge/work_keys.py hashes
`json.dumps`' own text, which this does not reproduce) nor the log lines (see the README).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Every byte to "x" but the ASCII digits, which all become "0": a 19-digit run is then one
# `in` away (22 µs for 27 KB; `re.search(r"\d{19}")` took 330 µs, more than the stdlib's parse).
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x78 for i in range(256))
_LONG_NUMBER = b"0" * 19
_REFUSED_BY_STDLIB = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def loads(text: Any, **kwargs: Any) -> Any:
    """`json.loads(text)`, through orjson where that reads it the same."""
    if not kwargs:
        if type(text) is str:
            try:
                raw = text.encode()
            except UnicodeEncodeError:  # a lone surrogate in the str
                return json.loads(text)
        elif type(text) is bytes:
            raw = text
        else:
            return json.loads(text, **kwargs)
        if _LONG_NUMBER not in raw.translate(_DIGITS):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
    return json.loads(text, **kwargs)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is left to json.dumps")


def fast_dumps(value: Any) -> bytes | None:
    """orjson's UTF-8 text of `value` where the stdlib reads it back as it reads
    `json.dumps(value)`; None where only `json.dumps` can say (see the module's rules)."""
    try:
        text = orjson.dumps(value, default=_refuse, option=_REFUSED_BY_STDLIB)
    except TypeError:  # orjson.JSONEncodeError is one
        return None
    if b"null" in text:  # a None, or a NaN or infinity orjson wrote as null
        return None
    return text


def dumps(value: Any, **kwargs: Any) -> str:
    """What `json.dumps(value)` says, compact and in UTF-8 (a call with options is the
    stdlib's own)."""
    text = None if kwargs else fast_dumps(value)
    return json.dumps(value, **kwargs) if text is None else text.decode()
