"""What a name may be: feature names, service names, stakeholder lists.

A feature name is how people find a rollout, and two rollouts of one feature must not run
at once, so names that *look* the same are the same name:

- the name is kept in Unicode NFKC form (full-width `ｃｈｅｃｋｏｕｔ` is `checkout`, `café`
  typed either way is one name), without invisible characters (zero-width spaces and joiners,
  bidi controls, soft hyphens: every format character, category Cf), with every dash
  look-alike (non-breaking hyphen, en/em dashes, minus sign…) folded to `-` and runs of white
  space to one space;
- a name whose letters mix scripts (Latin `checkout` with a Cyrillic `с`) is refused: it
  would look like another name; a name in one script (`выкатка`) is fine;
- a name with nothing visible left is refused;
- uniqueness compares the folded name case-insensitively (`feature_key`).

Service names go into Datadog queries as tag values, so they keep to the characters Datadog
allows in tags (letters, digits, `_ - : . /`). A rollout tells at most MAX_STAKEHOLDERS
channels: each gets every milestone, and the list must fit in one line of the status message.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FEATURE_LEN = 80
MAX_SERVICE_LEN = 100
MAX_STAKEHOLDERS = 20

_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d\u2e3a\u2e3b"), "-"
)
_SERVICE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/\-]*$")


class BadName(ValueError):
    """What is wrong with a name, in words for the person who typed it."""


def _script(ch: str) -> str | None:
    """The script of a letter, read from its Unicode name ("CYRILLIC SMALL LETTER ES")."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else None


def clean_feature(raw: str) -> str:
    """The name as it is stored and shown, or BadName."""
    folded = unicodedata.normalize("NFKC", raw).translate(_DASHES)
    if any(unicodedata.category(ch) == "Cc" for ch in folded):
        raise BadName("the feature name must be on one line, without control characters")
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    name = " ".join(visible.split())
    if not name:
        invisible = folded.strip() != ""
        raise BadName(
            "the feature name is made only of invisible characters"
            if invisible
            else "the feature name is empty"
        )
    if len(name) > MAX_FEATURE_LEN:
        raise BadName(f"the feature name is {len(name)} characters; the limit is {MAX_FEATURE_LEN}")
    scripts = {s for s in map(_script, name) if s is not None}
    if len(scripts) > 1:
        raise BadName(
            f"the feature name mixes {' and '.join(sorted(s.title() for s in scripts))} letters, "
            "so it would look like another name; type it in one script"
        )
    return name


def feature_key(feature: str) -> str:
    """Names are unique case-insensitively and by how they look: "Checkout-V2", "checkout‑v2"
    (a non-breaking hyphen) and "ｃｈｅｃｋｏｕｔ-v2" are one feature."""
    folded = unicodedata.normalize("NFKC", feature).translate(_DASHES)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return " ".join(visible.casefold().split())


def check_service(raw: str) -> str:
    name = raw.strip()
    if len(name) > MAX_SERVICE_LEN or not _SERVICE_RE.match(name):
        raise BadName(
            f"`{name[:MAX_SERVICE_LEN]}` is not a service name Datadog accepts as a tag: start with a "
            f"letter, then letters, digits, _ - : . / (up to {MAX_SERVICE_LEN})"
        )
    return name


def check_stakeholders(channels: tuple[str, ...]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(channels))
    if len(unique) > MAX_STAKEHOLDERS:
        raise BadName(f"{len(unique)} stakeholder channels is too many; the limit is {MAX_STAKEHOLDERS}")
    return unique
