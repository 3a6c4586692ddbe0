"""Strict JSON, the one decoder for request bodies and token segments.

Strict means: no duplicate member, no ``NaN`` or ``Infinity`` (written, or a number
such as ``1e400`` too large to be anything else), and (for bodies)
no integer longer than ``MAX_INT_DIGITS`` digits and no lone surrogate. A body's
refusal names the field it was found in, never its value; a token segment's
refusal is a bare ``ValueError``, since every bad token gets one answer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from shared import errors

MAX_INT_DIGITS = 20
# Only short plain names are repeated in errors: anything longer (a pasted key, say) is never echoed.
SANE_FIELD = re.compile(r"(?!apk)[A-Za-z0-9_]{1,32}")


def is_sane_field(name: str) -> bool:
    """Whether a field name may be repeated in an error (it cannot carry an attacker's payload)."""
    return SANE_FIELD.fullmatch(name) is not None


# ---------------------------------------------------------------- token segments: fail fast


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate member")
    return found


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number too large to be finite")
    return value


# One prebuilt decoder: json.loads with hooks would build a new one per call (a hot-path cost).
_STRICT = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite)


def object_of(data: bytes | str) -> dict[str, Any] | None:
    """The JSON object in ``data``, None for any other JSON value; ``ValueError`` for text that is not strict JSON."""
    try:
        found = _STRICT.decode(data.decode("utf-8") if isinstance(data, bytes) else data)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return found if type(found) is dict else None


# ---------------------------------------------------------------- request bodies: name the field


@dataclass(frozen=True)
class _Marked:
    """Stands where the parser met a value it refuses, so the refusal can name the field it sits in."""

    reason: str


def _marked_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        result[key] = _Marked("duplicate key") if key in result else value
    return result


def _marked_constant(_: str) -> _Marked:
    return _Marked("NaN and Infinity are not JSON numbers")


def _finite_or_marked(text: str) -> float | _Marked:
    value = float(text)
    return value if math.isfinite(value) else _Marked("number too large")


def _bounded_int(text: str) -> int | _Marked:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Marked("integer too large")
    return int(text)


def _first_refusal(data: Any) -> str | None:
    """``"<field>: <reason>"`` for the first refused value, or None. Iterative: bodies may nest deeply."""
    stack: list[tuple[str, Any]] = [("body", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _Marked):
            return f"{where}: {value.reason}"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate such as "\ud800": not text
                return f"{where}: not valid Unicode text"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = key if is_sane_field(key) else "a field"
                stack.append((name if where == "body" else f"{where}.{name}", item))
                stack.append((where, key))
        elif isinstance(value, list):
            stack.extend((where, item) for item in value)
    return None


def body_object(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body (empty means ``{}``); ``errors.BodyRefused`` naming the field otherwise."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_marked_members,
            parse_constant=_marked_constant,
            parse_int=_bounded_int,
            parse_float=_finite_or_marked,
        )
    except (UnicodeDecodeError, ValueError):
        raise errors.BodyRefused("body: not valid JSON") from None
    except RecursionError:
        raise errors.BodyRefused("body: nested too deeply") from None
    if not isinstance(data, dict):
        raise errors.BodyRefused("body: must be a JSON object")
    refusal = _first_refusal(data)
    if refusal is not None:
        raise errors.BodyRefused(refusal)
    return data
