"""Canonical bytes of ledger entries (RFC 8785, JSON Canonicalization Scheme).

Invariants:

* An entry's bytes are exactly ``rfc8785.dumps`` of the object with the nine fields
  ``action, actor, payload, prev_hash, resource, result, seq, subsystem, timestamp``.
* Those bytes are composed from pieces: JCS of an object with fixed ASCII keys is ``{`` +
  the members in key order + ``}``, so the caller canonicalises its own fields once
  (:func:`encode_template`) and the single writer only splices in ``prev_hash``, ``seq``
  and ``timestamp``. A property test checks the composition against ``rfc8785.dumps``.
* ``canonical_json`` takes a fast path through orjson only where its output is identical
  to JCS: I-JSON integers, ASCII object keys (so UTF-8 and UTF-16 key order agree), exact
  built-in types, and floats pre-formatted as ECMAScript numbers (:func:`es6_number`).
  Everything else goes through ``rfc8785``. Property tests compare both with ``rfc8785``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from typing import Any, NamedTuple

import orjson
import rfc8785

from grace.errors import EntryRejected

__all__ = [
    "GENESIS_HASH_HEX",
    "EntryTemplate",
    "canonical_json",
    "encode_template",
    "es6_number",
    "format_timestamp",
    "parse_timestamp",
    "splice",
]

GENESIS_HASH_HEX = b"0" * 64
"""``prev_hash`` of the first entry."""

_MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493 §2.2), required by RFC 8785 §3.2.2.3
_MAX_FIELD_CHARS = 1024
_SORT = orjson.OPT_SORT_KEYS
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def es6_number(value: float) -> str:
    """ECMAScript ``Number::toString`` of a finite float (RFC 8785 §3.2.2.3).

    Python's ``repr`` already yields the shortest round-tripping digits; only the layout
    differs (ES6 prints ``1`` for ``1.0``, ``1e+21`` for ``1e21``, plain digits up to 1e21).
    """
    if value == 0:
        return "0"  # also for -0.0
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    all_digits = whole + frac
    stripped = all_digits.lstrip("0")
    # value = 0.<stripped> x 10**n  (ES6's n), k = number of significant digits
    n = len(whole) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        out = (
            digits[0]
            + ("." + digits[1:] if k > 1 else "")
            + ("e+" if e > 0 else "e-")
            + str(abs(e))
        )
    return sign + out


_PLAIN, _FLOATS, _SLOW = 0, 1, 2
_ORJSON_FLOAT_LOW = 1e-4
_ORJSON_FLOAT_HIGH = 1e15


def _classify(value: object) -> int:
    """_PLAIN: orjson output is JCS as is; _FLOATS: after formatting floats; _SLOW: neither."""
    found = _PLAIN
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:  # type: ignore[operator]
                continue
            return _SLOW
        if t is float:
            # orjson prints non-integral floats in [1e-4, 1e15) exactly as ECMAScript does.
            if _ORJSON_FLOAT_LOW <= abs(v) < _ORJSON_FLOAT_HIGH and v != int(v):  # type: ignore[arg-type, call-overload]
                continue
            if not math.isfinite(v):  # type: ignore[arg-type]
                return _SLOW
            found = _FLOATS
            continue
        if t is dict:
            for k in v:  # type: ignore[attr-defined]
                if type(k) is not str or not k.isascii():
                    return _SLOW
            stack.extend(v.values())  # type: ignore[attr-defined]
            continue
        if t is list:
            stack.extend(v)  # type: ignore[arg-type]
            continue
        return _SLOW  # subclasses, tuples, anything else: let rfc8785 decide
    return found


def _with_number_fragments(value: Any) -> Any:
    """A copy of ``value`` whose floats orjson would print differently are pre-serialised."""
    t = type(value)
    if t is float:
        if _ORJSON_FLOAT_LOW <= abs(value) < _ORJSON_FLOAT_HIGH and value != int(value):
            return value
        return orjson.Fragment(es6_number(value).encode())
    if t is dict:
        return {k: _with_number_fragments(v) for k, v in value.items()}
    if t is list:
        return [_with_number_fragments(v) for v in value]
    return value


def _describe_float_problem(value: object) -> str | None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return f"{v!r} is not allowed in JSON (NaN and Infinity have no JSON form)"
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return None


def canonical_json(value: Any, *, what: str = "value") -> bytes:
    """RFC 8785 canonical bytes of a JSON value; :class:`EntryRejected` names what is wrong."""
    kind = _classify(value)
    if kind != _SLOW:
        try:
            if kind == _FLOATS:
                value = _with_number_fragments(value)
            return orjson.dumps(value, option=_SORT)
        except orjson.JSONEncodeError as e:  # lone surrogates, nesting deeper than 254
            raise EntryRejected(f"{what} cannot be encoded as JSON: {e}") from e
    try:
        return bytes(rfc8785.dumps(value))
    except rfc8785.CanonicalizationError as e:
        problem = _describe_float_problem(value) or str(e)
        raise EntryRejected(f"{what} is not JSON-serialisable: {problem}") from e
    except RecursionError as e:
        raise EntryRejected(f"{what} is nested too deeply to be encoded as JSON") from e
    except (UnicodeError, TypeError, ValueError) as e:
        raise EntryRejected(f"{what} is not JSON-serialisable: {e}") from e


def _field(name: str, value: str, *, required: bool) -> bytes:
    """JCS bytes of one string field, validated."""
    if required and not value:
        raise EntryRejected(f"entry field {name!r} must not be empty")
    if len(value) > _MAX_FIELD_CHARS:
        raise EntryRejected(
            f"entry field {name!r} is {len(value)} characters; the limit is {_MAX_FIELD_CHARS}"
        )
    try:
        return orjson.dumps(str(value))
    except orjson.JSONEncodeError as e:
        raise EntryRejected(f"entry field {name!r} cannot be encoded as JSON: {e}") from e


# Actors, actions and subsystems repeat: the canonical bytes around the payload are
# remembered per combination (validation errors are raised, never cached).
@functools.lru_cache(maxsize=4096)
def _prefix(action: str, actor: str) -> bytes:
    return b"".join(
        (
            b'{"action":',
            _field("action", action, required=True),
            b',"actor":',
            _field("actor", actor, required=True),
            b',"payload":',
        )
    )


@functools.lru_cache(maxsize=4096)
def _middle(resource: str, result: str) -> bytes:
    return b"".join(
        (
            b'","resource":',
            _field("resource", resource, required=False),
            b',"result":',
            _field("result", result, required=False),
            b',"seq":',
        )
    )


@functools.lru_cache(maxsize=256)
def _suffix(subsystem: str) -> bytes:
    return b',"subsystem":' + _field("subsystem", subsystem, required=True) + b',"timestamp":"'


class EntryTemplate(NamedTuple):
    """An entry's canonical bytes minus ``prev_hash``, ``seq`` and ``timestamp``.

    The entry is ``prefix + payload + ',"prev_hash":"' + <hex> + middle + <seq> + suffix
    + <timestamp> + '"}'`` — members in JCS key order (RFC 8785 §3.2.3), all keys ASCII.
    """

    prefix: bytes
    payload: bytes
    middle: bytes
    suffix: bytes


def encode_template(
    *,
    subsystem: str,
    actor: str,
    action: str,
    resource: str,
    result: str,
    payload: Any,
    max_payload_bytes: int,
) -> EntryTemplate:
    """Validate and canonicalise the caller-supplied fields of an entry."""
    for name, value in (
        ("subsystem", subsystem),
        ("actor", actor),
        ("action", action),
        ("resource", resource),
        ("result", result),
    ):
        if not isinstance(value, str):
            raise EntryRejected(
                f"entry field {name!r} must be a string, got {type(value).__name__}"
            )
    if not isinstance(payload, dict):
        raise EntryRejected(f"payload must be a JSON object (dict), got {type(payload).__name__}")
    body = canonical_json(payload, what="payload")
    if len(body) > max_payload_bytes:
        raise EntryRejected(
            f"payload is {len(body)} bytes as canonical JSON; the limit is {max_payload_bytes}"
        )
    return EntryTemplate(
        _prefix(action, actor), body, _middle(resource, result), _suffix(subsystem)
    )


def splice(t: EntryTemplate, prev_hash_hex: bytes, seq: int, timestamp: bytes) -> bytes:
    """The full canonical entry bytes."""
    return b"".join(
        (
            t.prefix,
            t.payload,
            b',"prev_hash":"',
            prev_hash_hex,
            t.middle,
            str(seq).encode(),
            t.suffix,
            timestamp,
            b'"}',
        )
    )


def format_timestamp(when: _dt.datetime) -> str:
    """Fixed-width UTC timestamp (sorts as text): ``2026-01-01T00:00:00.000000Z``."""
    if when.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return when.astimezone(_dt.UTC).strftime(_TS_FORMAT)


def parse_timestamp(text: str) -> _dt.datetime:
    """Inverse of :func:`format_timestamp`."""
    return _dt.datetime.strptime(text, _TS_FORMAT).replace(tzinfo=_dt.UTC)
