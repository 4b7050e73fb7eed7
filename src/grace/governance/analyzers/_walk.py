"""Walking a JSON-like value: every string with its path, bounded by the limits (what is
not inspected is recorded as incomplete).

Part of :mod:`grace.governance.analyzers` (its docstring states the invariants).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import ipaddress
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Final, TypeAlias

from grace.governance.analyzers._model import AnalyzerLimits
from grace.governance.analyzers._probes import _names

# --------------------------------------------------------------------------------------
# Walking the request

_Node: TypeAlias = "tuple[_Node, str | int | None] | None"
"""A path as (parent, segment): a key, an index, or ``None`` for "the key itself"."""

_B64_FULL = re.compile(r"[A-Za-z0-9+/_\-\r\n]{40,}={0,2}")
_HEX_FULL = re.compile(r"[0-9a-fA-F]+")
_AS_TEXT: Final[tuple[type, ...]] = (
    *(_dt.date, _dt.time, _dt.timedelta, uuid.UUID, PurePath),
    *(decimal.Decimal, ipaddress.IPv4Address, ipaddress.IPv6Address),
)
"""Types read as their ``str()``; anything else unknown is an ``unsupported_type`` finding."""


def _is_blob(s: str) -> bool:
    """The whole string is one long base64 value (not hex: digests stay digests)."""
    return (
        len(s) >= 40
        and " " not in s
        and _B64_FULL.fullmatch(s) is not None
        and _HEX_FULL.fullmatch(s) is None
    )


_SECRET, _AUDIT, _VERIFY, _MODE = 1, 2, 3, 4
_SECRET_SUFFIXES: Final = tuple(
    _names(
        "password passwd passphrase secret apikey accesskey privatekey secretkey authtoken "
        "accesstoken refreshtoken apitoken sessiontoken bearertoken idtoken"
    )
)
_AUDIT_KEYS: Final = _names("audit auditenabled auditing auditlog ledgerenabled")
_VERIFY_KEYS: Final = _names(
    "verification verificationenabled verifysignatures signatureverification governance "
    "governanceenabled governancegate enablegovernancegate enableavnimmune"
)
_MODE_KEYS: Final = _names("enforcementmode governancemode")
_KEY_NOISE: Final = {ord(c): None for c in "_-. "}


@functools.lru_cache(maxsize=4096)
def _key_class(key: str) -> int:
    """What a field's *name* says its value is: a secret, an audit or verification switch."""
    k = key.lower().translate(_KEY_NOISE)
    if k in ("token", "authorization") or k.endswith(_SECRET_SUFFIXES):
        return _SECRET
    if k in _AUDIT_KEYS:
        return _AUDIT
    if k in _VERIFY_KEYS:
        return _VERIFY
    return _MODE if k in _MODE_KEYS else 0


@dataclass(slots=True)
class _Walk:
    texts: list[str]
    paths: list[_Node]
    blobs: list[int]  # texts that are entirely base64
    fields: list[tuple[int, _Node, int, object]]  # (ordinal, path, key class, value)
    incomplete: dict[str, tuple[int, _Node, str]]


def _normalised(v: object) -> object:
    """A rare value as a str, dict or list; ``None`` to skip it; ``Ellipsis`` if unknown."""
    if v is None or isinstance(v, bool | int | float):
        return None
    if isinstance(v, str):
        return str(v)
    if isinstance(v, Mapping):
        return dict(v.items())
    if isinstance(v, list | tuple | set | frozenset):
        return list(v)
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, Enum):
        return _normalised(v.value)
    if isinstance(v, _AS_TEXT):
        return str(v)
    return ...


def _walk(value: object, limits: AnalyzerLimits) -> _Walk:
    """Every string with its path, iteratively (no recursion limit), within the limits.

    Strings are taken as their container is read; nested containers wait on a stack.
    """
    w = _Walk([], [], [], [], {})
    texts, paths, fields, blobs = w.texts, w.paths, w.fields, w.blobs
    budget, max_depth, max_values = limits.max_chars, limits.max_depth, limits.max_values
    seen = 0
    full: tuple[str, _Node] | None = None  # the string that did not fit
    stack: list[tuple[object, _Node, int]] = [(value, None, 0)]

    def stop(rule: str, node: _Node, evidence: str) -> None:
        w.incomplete.setdefault(rule, (len(texts), node, evidence))

    while stack and full is None:
        v, node, depth = stack.pop()
        t = type(v)
        if t is not dict and t is not list:
            v = _normalised(v) if t is not str else v
            if v is None:
                continue
            if v is ...:
                stop("incomplete.unsupported_type", node, f"a {t.__name__} value")
                continue
            if isinstance(v, str):
                s = v
                if len(s) > budget:
                    full = (s, node)
                    break
                budget -= len(s)
                texts.append(s)
                paths.append(node)
                if len(s) >= 40 and _is_blob(s):
                    blobs.append(len(texts) - 1)
                continue
            t = type(v)
        seen += 1
        if depth >= max_depth:
            stop("incomplete.too_deep", node, f"nested deeper than {max_depth}")
            continue
        later: list[tuple[object, _Node, int]] = []
        if t is dict:
            items: Iterable[tuple[object, object]] = v.items()  # type: ignore[attr-defined]
        else:
            seq: list[object] = v  # type: ignore[assignment]
            items = enumerate(seq)
            # An argv list, ["rm", "-rf", "/"], is also read as one command line.
            if 1 < len(seq) <= 256 and all(type(x) is str and x and " " not in x for x in seq):
                joined = " ".join(seq)  # type: ignore[arg-type]
                if len(joined) <= budget:
                    budget -= len(joined)
                    texts.append(joined)
                    paths.append(node)
        for k, item in items:
            seen += 1
            if seen > max_values:
                stop("incomplete.too_many_values", node, f"more than {max_values} values")
                stack.clear()
                break
            if type(k) is str:
                member: _Node = (node, k)
                if len(k) > budget:
                    full = (k, (member, None))
                    break
                budget -= len(k)
                texts.append(k)
                paths.append((member, None))
                cls = _key_class(k)
                if cls:
                    fields.append((len(texts), member, cls, item))
            else:
                member = (node, k if type(k) is int and t is list else repr(k))
            if type(item) is str:
                if len(item) > budget:
                    full = (item, member)
                    break
                budget -= len(item)
                texts.append(item)
                paths.append(member)
                if len(item) >= 40 and _is_blob(item):
                    blobs.append(len(texts) - 1)
            elif item is not None and type(item) not in (bool, int, float):
                later.append((item, member, depth + 1))
        stack.extend(reversed(later))
    if full is not None:
        s, node = full
        stop("incomplete.too_large", node, f"more than {limits.max_chars} characters")
        texts.append(s[:budget])
        paths.append(node)
    return w
