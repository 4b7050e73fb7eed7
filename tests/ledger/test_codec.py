"""Canonical bytes: the fast path and the spliced entry equal RFC 8785 exactly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.errors import EntryRejected
from grace.ledger._codec import (
    canonical_json,
    encode_template,
    es6_number,
    format_timestamp,
    splice,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=25,
)
fields = st.text(min_size=1, max_size=40)


@settings(max_examples=500)
@given(json_values)
def test_canonical_json_equals_rfc8785_for_any_json_value(value: Any) -> None:
    """Whichever path is taken, the bytes are exactly RFC 8785's."""
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(
    st.dictionaries(st.text(), json_values, max_size=6),
    fields,
    fields,
    fields,
    st.text(max_size=40),
    st.text(max_size=40),
    st.integers(1, 2**40),
    st.binary(min_size=32, max_size=32),
)
def test_spliced_entry_equals_rfc8785_of_the_whole_entry(
    payload: dict[str, Any],
    subsystem: str,
    actor: str,
    action: str,
    resource: str,
    result: str,
    seq: int,
    prev: bytes,
) -> None:
    """Composing an entry from canonical pieces gives the JCS bytes of the full object."""
    ts = format_timestamp(dt.datetime(2026, 5, 4, 3, 2, 1, 123, tzinfo=dt.UTC))
    template = encode_template(
        subsystem=subsystem,
        actor=actor,
        action=action,
        resource=resource,
        result=result,
        payload=payload,
        max_payload_bytes=1 << 20,
    )
    whole: dict[str, Any] = {
        "seq": seq,
        "timestamp": ts,
        "subsystem": subsystem,
        "actor": actor,
        "action": action,
        "resource": resource,
        "result": result,
        "payload": payload,
        "prev_hash": prev.hex(),
    }
    assert splice(template, prev.hex().encode(), seq, ts.encode()) == rfc8785.dumps(whole)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"x": float("nan")}, "nan"),
        ({"x": [1, {"y": float("inf")}]}, "inf"),
        ({"x": -float("inf")}, "inf"),
        ({"x": object()}, "not JSON-serialisable"),
        ({"x": {1, 2}}, "not JSON-serialisable"),
        ({"x": b"bytes"}, "not JSON-serialisable"),
        ({1: "non-string key"}, "not JSON-serialisable"),
        ({"x": 2**60}, "not JSON-serialisable"),
        ({"x": "\ud800"}, "surrogate"),
    ],
)
def test_non_json_values_are_rejected_with_the_problem_named(value: Any, fragment: str) -> None:
    """NaN, Infinity, non-JSON types, huge integers and lone surrogates raise EntryRejected."""
    with pytest.raises(EntryRejected, match="payload") as info:
        canonical_json(value, what="payload")
    assert fragment.lower() in str(info.value).lower()


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_es6_number_matches_rfc8785_for_any_finite_float(value: float) -> None:
    """Float layout (integers, exponents, tiny and huge values, -0) is exactly JCS's."""
    assert es6_number(value).encode() == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value", [1.0, -0.0, 1e21, 1e20, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 123.456]
)
def test_es6_number_boundaries(value: float) -> None:
    """The layout switch points of ECMAScript's Number::toString agree with rfc8785."""
    assert es6_number(value).encode() == rfc8785.dumps(value)


@settings(max_examples=3000)
@given(
    st.floats(min_value=1e-4, max_value=1e15, exclude_max=True)
    | st.floats(min_value=-1e15, max_value=-1e-4, exclude_min=True)
)
def test_orjson_passthrough_range_matches_rfc8785(value: float) -> None:
    """Floats that skip pre-formatting (non-integral, 1e-4 <= |x| < 1e15) still match JCS."""
    assert canonical_json({"x": value}) == rfc8785.dumps({"x": value})
