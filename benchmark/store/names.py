"""Entry and team names: one spelling shown, one key compared.

A name is stored NFKC-normalised (full-width letters, ligatures and compatibility forms become
their plain form) with its whitespace collapsed, and refused when it holds characters that draw
nothing or reorder what is drawn: control and format characters (zero-width space and joiners,
bidi overrides and marks), private-use, unassigned or surrogate code points (the last is what a
non-UTF-8 command-line argument turns into), and the "filler" letters that render as blank.
Two names are the same name when their keys (the NFKC form, case-folded) are equal: `Lab`,
`LAB` and `ｌａｂ` are one team, so a look-alike of another team's entry is refused and a case
variant of a team name counts against that team's daily limit.
"""

from __future__ import annotations

import re
import unicodedata

from benchmark.store.errors import StoreError

MAX_NAME = 200
_REFUSED_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting character (zero-width or bidi)",
                       "Cs": "bytes that are not valid UTF-8", "Co": "a private-use character",
                       "Cn": "an unassigned code point", "Zl": "a line separator", "Zp": "a paragraph separator"}
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f\u17b4\u17b5")
_SPACES = re.compile(r"\s+")


def normalise_name(kind: str, value: str | None) -> str:
    """`value` as it is stored and shown (see the module doc), or a `StoreError` saying why not."""
    raw = value or ""
    if any(unicodedata.category(c) == "Cs" for c in raw):
        raise StoreError(f"the {kind} name holds {_REFUSED_CATEGORIES['Cs']}; use UTF-8 text")
    name = unicodedata.normalize("NFKC", raw)
    for c in name:
        category = unicodedata.category(c)
        if category in _REFUSED_CATEGORIES or c in _FILLERS:
            what = _REFUSED_CATEGORIES.get(category, "a blank filler character")
            raise StoreError(f"{kind} name {ascii(name[:40])}: holds {what} (U+{ord(c):04X}); "
                             "use visible characters only")
    name = _SPACES.sub(" ", name).strip()
    if not name:
        raise StoreError(f"the {kind} name must not be empty")
    if len(name) > MAX_NAME:
        raise StoreError(f"{kind} name {name[:40]!r}...: longer than {MAX_NAME} characters")
    return name


def name_key(name: str) -> str:
    """What two names are compared by: equal keys are the same name."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
