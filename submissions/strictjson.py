"""The one JSON parser for submission content (prediction lines, `.json` predictions, manifests).

Python's `json.loads` accepts what a scorer must not: `NaN` / `Infinity`, duplicate keys (the
last silently wins), integers of any length (a 5,000-digit one raises a bare ValueError on
conversion), nesting deep enough to raise RecursionError, and `\\ud800` escapes that become lone
surrogates (which crash later, when the text is encoded to be stored or shown). `loads` refuses
all of them with a `JSONLimitError` (a `ValueError`) whose message says what was wrong.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

MAX_DEPTH = 32           # a prediction line is an object of strings; a manifest is two levels deep
MAX_NUMBER_CHARS = 40    # digits (plus sign, dot, exponent) of one number


_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONLimitError(ValueError):
    """Valid JSON syntax outside what a submission may contain."""


def _number(text: str, convert):
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONLimitError(f"number with {len(text)} characters (limit {MAX_NUMBER_CHARS})")
    value = convert(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise JSONLimitError(f"number {text} is out of range")
    return value


def _constant(name: str):
    raise JSONLimitError(f"{name} is not allowed (JSON numbers are finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONLimitError(f"duplicate key {_show(key)}")
        out[key] = value
    return out


def _show(text: str) -> str:
    return ascii(text[:40])


def _check(value: Any, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise JSONLimitError(f"nested deeper than {max_depth} levels")
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise JSONLimitError(f"string {_show(value)} holds a lone surrogate (invalid Unicode)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1, max_depth)
            _check(item, depth + 1, max_depth)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1, max_depth)


_local = threading.local()


def _decoder() -> json.JSONDecoder:
    """This thread's decoder (made once: `json.loads` with hooks builds one per call, which costs
    more than parsing a prediction line)."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = json.JSONDecoder(
            parse_int=lambda s: _number(s, int), parse_float=lambda s: _number(s, float),
            parse_constant=_constant, object_pairs_hook=_object)
    return decoder


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `text` strictly (see the module doc); raises `json.JSONDecodeError` for bad syntax
    and `JSONLimitError` for what is refused."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        value = _decoder().decode(text)
    except RecursionError:
        raise JSONLimitError(f"nested deeper than {max_depth} levels") from None
    if not _flat_and_plain(value, text):
        _check(value, 0, max_depth)
    return value


def _flat_and_plain(value: Any, text: str) -> bool:
    """True when `value` needs no walk: an object of scalars (no depth to check) parsed from text
    that cannot hold a surrogate (no \\u escape, and ASCII or no surrogate character). The common
    prediction line, checked fast (`isascii` costs nothing)."""
    if not isinstance(value, dict) or any(isinstance(v, (dict, list)) for v in value.values()):
        return False
    return "\\u" not in text and (text.isascii() or not _SURROGATE.search(text))
