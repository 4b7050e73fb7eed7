"""Trigger events: valid by construction, UUIDv7 ids, strict CloudEvents 1.0 JSON both ways."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import OrderedDict
from enum import IntEnum, StrEnum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.errors import EventError, MeshError
from grace.mesh.event import MAX_PAYLOAD_DEPTH, EventPriority, TriggerEvent, new_event_id
from grace.testing import FakeClock

UTC = dt.UTC


def make_event(clock: FakeClock, **overrides: Any) -> TriggerEvent:
    """An ordinary event from the immune kernel, with any field overridden."""
    fields: dict[str, Any] = {
        "source": "immune_kernel",
        "actor": "immune_kernel",
        "payload": {"incident": 7},
        "clock": clock,
    }
    fields.update(overrides)
    return TriggerEvent.create("avn.healing_failed", **fields)


def wire(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    """A valid CloudEvent object with members changed (a value of ``...`` deletes one)."""
    obj = make_event(clock, resource="svc/api", trust_score=0.5).to_cloudevent()
    for name, value in changes.items():
        if value is ...:
            del obj[name]
        else:
            obj[name] = value
    return obj


# -- construction ----------------------------------------------------------------------


def test_create_fills_id_and_time_from_the_clock(clock: FakeClock) -> None:
    """The timestamp is the clock's now and the id is a UUIDv7 of the same millisecond."""
    clock.advance(1.234567)
    event = make_event(clock)
    assert event.timestamp == clock.now()
    parsed = uuid.UUID(event.event_id)
    assert parsed.version == 7
    assert int.from_bytes(parsed.bytes[:6], "big") == int(clock.now().timestamp() * 1000)
    assert event.priority is EventPriority.NORMAL
    assert event.requires_validation is False
    assert event.resource == ""
    assert event.correlation_id is None
    assert event.causation_id is None


def test_event_is_immutable(clock: FakeClock) -> None:
    """Fields cannot be reassigned once the event exists."""
    event = make_event(clock)
    with pytest.raises(AttributeError):
        event.source = "forged"  # type: ignore[misc]


def test_event_keeps_its_own_copy_of_the_payload(clock: FakeClock) -> None:
    """Changing the caller's dict after creation does not change the event."""
    payload: dict[str, Any] = {"k": 1}
    event = make_event(clock, payload=payload)
    payload["k"] = 2
    assert event.payload == {"k": 1}


def test_naive_timestamp_is_rejected(clock: FakeClock) -> None:
    """A timestamp without a time zone cannot be constructed."""
    event = make_event(clock)
    with pytest.raises(EventError, match=r"TriggerEvent\.timestamp must be timezone-aware"):
        TriggerEvent(
            event_type="a.b",
            source="s",
            actor="a",
            event_id=event.event_id,
            timestamp=dt.datetime(2026, 1, 1),  # naive on purpose
        )


def test_timestamp_must_be_a_datetime(clock: FakeClock) -> None:
    """A date, a number or text is not a timestamp."""
    with pytest.raises(EventError, match=r"TriggerEvent\.timestamp must be a datetime, got str"):
        TriggerEvent(
            event_type="a.b",
            source="s",
            actor="a",
            event_id=new_event_id(clock.now()),
            timestamp="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        )


def test_timestamp_that_has_no_utc_equivalent_is_rejected(clock: FakeClock) -> None:
    """An aware time whose UTC instant falls before year 1 cannot be stored in UTC."""
    plus_one = dt.timezone(dt.timedelta(hours=1))
    with pytest.raises(EventError, match="outside the UTC range"):
        TriggerEvent(
            event_type="a.b",
            source="s",
            actor="a",
            event_id=new_event_id(clock.now()),
            timestamp=dt.datetime(1, 1, 1, tzinfo=plus_one),
        )


def test_aware_non_utc_timestamp_is_stored_in_utc(clock: FakeClock) -> None:
    """An aware time in another zone is converted to the same instant in UTC."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    event = TriggerEvent(
        event_type="a.b",
        source="s",
        actor="a",
        event_id=new_event_id(clock.now()),
        timestamp=dt.datetime(2026, 1, 1, 2, 0, tzinfo=plus_two),
    )
    assert event.timestamp == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize("score", [-0.01, 1.0000001, float("nan"), float("inf"), 2])
def test_trust_score_out_of_range_is_rejected(clock: FakeClock, score: float) -> None:
    """Trust is a fraction in [0, 1]; anything else cannot be constructed."""
    with pytest.raises(EventError, match=r"TriggerEvent\.trust_score"):
        make_event(clock, trust_score=score)


@pytest.mark.parametrize("score", [0, 0.0, 0.5, 1, 1.0])
def test_trust_score_bounds_are_inclusive(clock: FakeClock, score: float) -> None:
    """0 and 1 are valid trust scores and are stored as floats."""
    event = make_event(clock, trust_score=score)
    assert event.trust_score == float(score)
    assert type(event.trust_score) is float


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"source": ""}, "source"),
        ({"source": "immune kernel"}, "source"),
        ({"actor": ""}, "actor"),
        ({"actor": "bad\x00actor"}, "actor"),
        ({"resource": "line\nbreak"}, "resource"),
        ({"payload": {"when": dt.datetime(2026, 1, 1, tzinfo=UTC)}}, "payload"),
        ({"payload": {"t": (1, 2)}}, "payload"),
        ({"payload": {1: "int key"}}, "payload"),
        ({"payload": {"nan": float("nan")}}, "payload"),
        ({"payload": {"big": 2**64}}, "payload"),
        ({"payload": {"s": "\ud800"}}, "payload"),
        ({"payload": {"\udfff": "key"}}, "payload"),
        ({"trust_score": "0.5"}, "trust_score"),
        ({"trust_score": True}, "trust_score"),
        ({"priority": 3}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"requires_validation": 1}, "requires_validation"),
        ({"correlation_id": ""}, "correlation_id"),
        ({"causation_id": ""}, "causation_id"),
    ],
)
def test_invalid_field_is_rejected_naming_the_field(
    clock: FakeClock, overrides: dict[str, Any], field_name: str
) -> None:
    """Every invariant is checked at construction and the error says which field broke it."""
    with pytest.raises(EventError, match=rf"TriggerEvent\.{field_name}"):
        make_event(clock, **overrides)


def test_payload_that_is_not_an_object_is_rejected(clock: FakeClock) -> None:
    """The payload must be a JSON object, not a list or a string."""
    with pytest.raises(EventError, match=r"TriggerEvent\.payload must be a JSON object"):
        TriggerEvent(
            event_type="a.b",
            source="s",
            actor="a",
            payload=["not", "an", "object"],  # type: ignore[arg-type]
            event_id=new_event_id(clock.now()),
            timestamp=clock.now(),
        )


def test_payload_error_names_the_path_to_the_bad_value(clock: FakeClock) -> None:
    """A non-JSON value deep in the payload is located precisely."""
    with pytest.raises(EventError, match=r"payload\['a'\]\[1\]\['b'\] holds a set"):
        make_event(clock, payload={"a": [0, {"b": {1}}]})


class Severity(StrEnum):
    """A string enum, as Grace code puts in payloads."""

    HIGH = "high"


class Level(IntEnum):
    """An integer enum."""

    TWO = 2


class Ratio(float):
    """A float subclass, which orjson cannot encode."""


def test_payload_may_hold_enums_and_container_subclasses(clock: FakeClock) -> None:
    """StrEnum, IntEnum and dict/list subclasses are JSON and decode as equal plain values."""
    payload = {
        "severity": Severity.HIGH,
        "level": Level.TWO,
        "map": OrderedDict(a=[1, None, True, 1.5]),
    }
    event = make_event(clock, payload=payload)
    decoded = TriggerEvent.from_json(event.to_json())
    assert decoded.payload == {"severity": "high", "level": 2, "map": {"a": [1, None, True, 1.5]}}
    assert type(decoded.payload["severity"]) is str


def test_payload_float_subclass_is_rejected(clock: FakeClock) -> None:
    """A float subclass would fail to encode later, so it is refused now."""
    with pytest.raises(EventError, match=r"payload\['r'\] holds a Ratio"):
        make_event(clock, payload={"r": Ratio(0.5)})


def is_json(value: object) -> bool:
    """Reference: plain JSON values only, written the obvious recursive way."""
    if value is None or isinstance(value, bool | str):
        return not isinstance(value, str) or "\ud800" not in value
    if isinstance(value, int):
        return -(2**63) <= value <= 2**64 - 1
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, list):
        return all(is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    return False


maybe_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats()
    | st.text(alphabet="ab\ud800", max_size=3)
    | st.sampled_from([(1, 2), {3}, b"bytes", object()])
)
maybe_json = st.recursive(
    maybe_json_leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=2) | st.integers(0, 2), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(st.dictionaries(st.text(max_size=3), maybe_json, max_size=4))
def test_payload_is_accepted_exactly_when_it_is_plain_json(payload: dict[str, Any]) -> None:
    """The fast and the explaining checks together accept precisely the JSON payloads."""
    clock = FakeClock()
    if is_json(payload):
        event = make_event(clock, payload=payload)
        assert TriggerEvent.from_json(event.to_json()).payload == payload
    else:
        with pytest.raises(EventError, match=r"TriggerEvent\.payload"):
            make_event(clock, payload=payload)


def test_payload_nested_deeper_than_the_limit_is_rejected(clock: FakeClock) -> None:
    """Over-deep payloads are refused before they can break a JSON encoder."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(MAX_PAYLOAD_DEPTH):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(EventError, match="nests deeper than"):
        make_event(clock, payload=deep)


def test_payload_at_the_depth_limit_is_accepted(clock: FakeClock) -> None:
    """Exactly MAX_PAYLOAD_DEPTH nested containers are allowed and round-trip."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(MAX_PAYLOAD_DEPTH - 1):
        node["x"] = {}
        node = node["x"]
    event = make_event(clock, payload=deep)
    assert TriggerEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize("event_type", ["", "a..b", "a.*", "a.>", "has space"])
def test_event_type_must_be_a_literal_subject(clock: FakeClock, event_type: str) -> None:
    """Wildcards, empty segments and whitespace are not event types."""
    with pytest.raises(EventError, match=r"TriggerEvent\.event_type is not a valid event type"):
        TriggerEvent.create(event_type, source="s", actor="a", clock=clock)


@pytest.mark.parametrize(
    "event_id",
    [
        "not-a-uuid",
        str(uuid.uuid4()),
        "0190f5c8-8a3b-7c4d-1e5f-0123456789ab",  # variant bits 0b00
        "",
    ],
)
def test_event_id_must_be_a_uuid7(clock: FakeClock, event_id: str) -> None:
    """Ids that are not time-ordered UUIDv7 cannot be constructed."""
    with pytest.raises(EventError, match=r"TriggerEvent\.event_id must be a UUIDv7"):
        TriggerEvent(
            event_type="a.b", source="s", actor="a", event_id=event_id, timestamp=clock.now()
        )


def test_uppercase_event_id_is_stored_in_canonical_lowercase(clock: FakeClock) -> None:
    """RFC 9562 ids compare case-insensitively; Grace keeps one canonical form."""
    event_id = new_event_id(clock.now())
    event = TriggerEvent(
        event_type="a.b", source="s", actor="a", event_id=event_id.upper(), timestamp=clock.now()
    )
    assert event.event_id == event_id


def test_priority_given_as_text_is_stored_as_the_enum(clock: FakeClock) -> None:
    """A priority spelled as its value becomes the EventPriority member."""
    event = make_event(clock, priority="critical")
    assert event.priority is EventPriority.CRITICAL


def test_event_error_is_a_mesh_error() -> None:
    """Callers can catch every mesh refusal with MeshError."""
    assert issubclass(EventError, MeshError)


# -- UUIDv7 ----------------------------------------------------------------------------


def test_uuid7_has_version_and_variant_bits_of_rfc_9562(clock: FakeClock) -> None:
    """Version nibble 0b0111 and variant 0b10, read back through the stdlib."""
    for _ in range(100):
        parsed = uuid.UUID(new_event_id(clock.now()))
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert (parsed.int >> 76) & 0xF == 0x7
        assert (parsed.int >> 62) & 0b11 == 0b10


def test_uuid7_holds_the_unix_millisecond_timestamp() -> None:
    """The top 48 bits are the Unix time in milliseconds (RFC 9562 §5.7 unix_ts_ms)."""
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    parsed = uuid.UUID(new_event_id(when))
    expected_ms = (when - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(milliseconds=1)
    assert parsed.int >> 80 == expected_ms


def test_uuid7_random_bits_differ_between_ids_of_the_same_instant(clock: FakeClock) -> None:
    """Ids made at one instant are still unique."""
    ids = {new_event_id(clock.now()) for _ in range(1000)}
    assert len(ids) == 1000


@settings(max_examples=200)
@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.just(UTC),
    ),
    st.integers(1, 10**12),
)
def test_uuid7_ids_sort_in_time_order(earlier: dt.datetime, gap_us: int) -> None:
    """An id made at least a microsecond later sorts after, as text and as a number."""
    try:
        later = earlier + dt.timedelta(microseconds=gap_us)
    except OverflowError:
        return
    first, second = new_event_id(earlier), new_event_id(later)
    assert first < second
    assert uuid.UUID(first).int < uuid.UUID(second).int


def test_ids_of_events_created_as_the_clock_advances_are_ordered(clock: FakeClock) -> None:
    """Events created one after another by a moving clock have increasing ids."""
    ids = []
    for _ in range(500):
        ids.append(make_event(clock).event_id)
        clock.advance(0.000001)
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),  # before the Unix epoch
        dt.datetime(2026, 1, 1),  # naive
    ],
)
def test_uuid7_refuses_times_it_cannot_encode(when: dt.datetime) -> None:
    """Naive times and times before the Unix epoch have no UUIDv7."""
    with pytest.raises(EventError, match="event id time"):
        new_event_id(when)


# -- derived events --------------------------------------------------------------------


def test_child_links_to_its_cause_and_the_chain(clock: FakeClock) -> None:
    """A child's causation is its parent; its correlation is the chain's first event."""
    root = make_event(clock)
    clock.advance(0.01)
    child = root.child("avn.rollback_required", source="healer", payload={"n": 1}, clock=clock)
    grandchild = child.child("loop.completed", source="loop", clock=clock)
    assert child.causation_id == root.event_id
    assert child.correlation_id == root.event_id
    assert grandchild.causation_id == child.event_id
    assert grandchild.correlation_id == root.event_id
    assert child.source == "healer"
    assert child.actor == root.actor
    assert child.payload == {"n": 1}
    assert child.timestamp == clock.now()
    assert child.event_id > root.event_id


def test_child_keeps_an_existing_correlation_id(clock: FakeClock) -> None:
    """An externally supplied correlation id (e.g. an HTTP request id) carries through."""
    root = make_event(clock, correlation_id="req-42")
    assert root.child("a.b", source="s", clock=clock).correlation_id == "req-42"


def test_with_source_replaces_only_the_source(clock: FakeClock) -> None:
    """The mesh stamps the verified publisher; everything else stays as it was."""
    event = make_event(clock, source="claimed_by_caller", trust_score=0.9)
    stamped = event.with_source("immune_kernel")
    assert stamped.source == "immune_kernel"
    assert event.source == "claimed_by_caller"
    assert stamped == TriggerEvent(
        **{
            name: getattr(event, name)
            for name in TriggerEvent.__dataclass_fields__
            if name != "source"
        },
        source="immune_kernel",
    )


def test_with_source_validates_the_new_source(clock: FakeClock) -> None:
    """A stamped source must still be a valid CloudEvents source."""
    with pytest.raises(EventError, match=r"TriggerEvent\.source"):
        make_event(clock).with_source("")


# -- CloudEvents 1.0 -------------------------------------------------------------------


def test_cloudevent_has_the_required_attributes_and_lowercase_extensions(
    clock: FakeClock,
) -> None:
    """The structured form carries the core attributes and valid extension names."""
    clock.advance(0.5)
    event = make_event(
        clock,
        resource="svc/api",
        trust_score=0.75,
        requires_validation=True,
        priority=EventPriority.HIGH,
        correlation_id="corr",
        causation_id="cause",
    )
    obj = event.to_cloudevent()
    assert obj == {
        "specversion": "1.0",
        "id": event.event_id,
        "source": "immune_kernel",
        "type": "avn.healing_failed",
        "time": "2026-01-01T00:00:00.500000Z",
        "datacontenttype": "application/json",
        "data": {"incident": 7},
        "graceactor": "immune_kernel",
        "graceresource": "svc/api",
        "gracetrust": "0.75",
        "gracevalidation": True,
        "gracepriority": "high",
        "gracecorrelation": "corr",
        "gracecausation": "cause",
    }
    for name in obj:
        assert name == "data" or (name.isascii() and name.isalnum() and name.islower())


def test_optional_extensions_are_omitted_when_unset(clock: FakeClock) -> None:
    """Empty resource, no trust and no correlation leave their attributes out."""
    obj = make_event(clock).to_cloudevent()
    for absent in ("graceresource", "gracetrust", "gracecorrelation", "gracecausation"):
        assert absent not in obj


def test_to_cloudevent_data_is_a_copy(clock: FakeClock) -> None:
    """Editing the exported object does not edit the event."""
    event = make_event(clock)
    event.to_cloudevent()["data"]["incident"] = 8
    assert event.payload == {"incident": 7}


def test_to_json_refuses_a_payload_mutated_into_non_json(clock: FakeClock) -> None:
    """Nested values are shared; if someone breaks them, encoding fails with EventError."""
    nested: list[Any] = [1]
    event = make_event(clock, payload={"list": nested})
    nested.append(object())
    with pytest.raises(EventError, match=r"TriggerEvent\.payload is no longer JSON"):
        event.to_json()


def test_to_json_is_the_cloudevent_as_json(clock: FakeClock) -> None:
    """The JSON bytes decode to exactly the structured object."""
    event = make_event(clock, trust_score=0.1)
    assert orjson.loads(event.to_json()) == event.to_cloudevent()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
cloudevent_text = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cs"),
        exclude_characters="".join(
            [chr(c) for c in range(0xFDD0, 0xFDF0)]
            + [chr(p * 0x10000 + low) for p in range(17) for low in (0xFFFE, 0xFFFF)]
        ),
    ),
    min_size=1,
    max_size=30,
)
events = st.builds(
    TriggerEvent,
    event_type=st.lists(segment, min_size=1, max_size=5).map(".".join),
    source=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:/.-0123456789", min_size=1),
    actor=cloudevent_text,
    resource=st.just("") | cloudevent_text,
    payload=st.dictionaries(st.text(), json_values, max_size=5),
    event_id=st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1), timezones=st.just(UTC)
    ).map(new_event_id),
    timestamp=st.datetimes(
        min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
    trust_score=st.none() | st.floats(0, 1),
    requires_validation=st.booleans(),
    priority=st.sampled_from(EventPriority),
    correlation_id=st.none() | cloudevent_text,
    causation_id=st.none() | cloudevent_text,
)


@settings(max_examples=300)
@given(events)
def test_any_event_round_trips_through_cloudevents_json(event: TriggerEvent) -> None:
    """Decoding the JSON of any valid event gives back an equal event."""
    assert TriggerEvent.from_json(event.to_json()) == event
    assert TriggerEvent.from_cloudevent(event.to_cloudevent()) == event


# -- strict decoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"specversion": ...}, "'specversion' is missing"),
        ({"specversion": "0.3"}, "'specversion' must be '1.0'"),
        ({"specversion": 1.0}, "'specversion' must be '1.0'"),
        ({"id": ...}, "'id' is missing"),
        ({"id": "42"}, "'id' must be a UUIDv7"),
        ({"source": ...}, "'source' is missing"),
        ({"source": ""}, "'source' must not be empty"),
        ({"source": "a b"}, "'source' must not contain whitespace"),
        ({"type": ...}, "'type' is missing"),
        ({"type": "a.*"}, "'type' is not a valid event type"),
        ({"type": 7}, "'type' must be a string"),
        ({"time": ...}, "'time' is missing"),
        ({"time": "yesterday"}, "'time' must be an RFC 3339 date-time"),
        ({"time": "2026-01-01T00:00:00"}, "'time' must be an RFC 3339 date-time"),
        ({"time": "2026-01-01"}, "'time' must be an RFC 3339 date-time"),
        ({"time": "2026-02-30T00:00:00Z"}, "'time' is not a valid date-time"),
        ({"time": "2026-01-01T24:00:00Z"}, "'time' is not a valid date-time"),
        ({"time": "2026-01-01T00:00:00+01:75"}, "'time' is not a valid date-time"),
        ({"time": "\u0662\u0660\u0662\u0666-01-01T00:00:00Z"}, "'time' must be an RFC 3339"),
        ({"time": 1767225600}, "'time' must be an RFC 3339 date-time"),
        ({"datacontenttype": "text/plain"}, "'datacontenttype' must be 'application/json'"),
        ({"data": [1, 2]}, "'data' must be a JSON object"),
        ({"data": "text"}, "'data' must be a JSON object"),
        ({"data_base64": "AAAA"}, "'data_base64'"),
        ({"graceactor": ...}, "'graceactor' is missing"),
        ({"graceactor": 5}, "'graceactor' must be a string"),
        ({"graceresource": ""}, "'graceresource' must not be empty"),
        ({"gracepriority": "urgent"}, "'gracepriority' must be one of normal, high, critical"),
        ({"gracetrust": "1.5"}, "'gracetrust' must be within [0, 1]"),
        ({"gracetrust": "-0.1"}, "'gracetrust' must be within [0, 1]"),
        ({"gracetrust": 0.5}, "'gracetrust' must be a string holding a number"),
        ({"gracetrust": "NaN"}, "'gracetrust' must be a string holding a number"),
        ({"gracetrust": "0x1"}, "'gracetrust' must be a string holding a number"),
        ({"gracevalidation": "true"}, "'gracevalidation' must be a JSON boolean"),
        ({"gracecorrelation": 3}, "'gracecorrelation' must be a string"),
        ({"gracecausation": ""}, "'gracecausation' must not be empty"),
        ({"gracetypo": "x"}, "'gracetypo' is not a Grace attribute"),
        ({"Bad_Name": "x"}, "attribute name 'Bad_Name' is invalid"),
        ({"subject": 5}, "'subject' must be a string"),
    ],
)
def test_malformed_cloudevent_is_rejected_naming_the_attribute(
    clock: FakeClock, changes: dict[str, Any], named: str
) -> None:
    """Each defect is reported with the CloudEvents attribute that carries it."""
    obj = wire(clock, **changes)
    with pytest.raises(EventError) as caught:
        TriggerEvent.from_cloudevent(obj)
    assert named in str(caught.value)
    with pytest.raises(EventError) as caught_json:
        TriggerEvent.from_json(orjson.dumps(obj))
    assert named in str(caught_json.value)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{not json", "CloudEvent JSON is malformed"),
        (b"", "CloudEvent JSON is malformed"),
        (b"\xff\xfe", "CloudEvent JSON is malformed"),
        (b"[1, 2]", "a CloudEvent must be a JSON object, got list"),
        (b'"text"', "a CloudEvent must be a JSON object, got str"),
    ],
)
def test_malformed_json_is_rejected(raw: bytes, named: str) -> None:
    """Bytes that are not a JSON object never become an event."""
    with pytest.raises(EventError, match=named):
        TriggerEvent.from_json(raw)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({1: "x"}, "member names must be strings"),
        ({"datacontenttype": 5}, "'datacontenttype' must be 'application/json'"),
    ],
)
def test_cloudevent_objects_with_non_json_shapes_are_rejected(
    clock: FakeClock, changes: dict[Any, Any], named: str
) -> None:
    """Objects handed over in Python (not parsed from JSON) are checked just as strictly."""
    obj: dict[Any, Any] = {**wire(clock), **changes}
    with pytest.raises(EventError, match=named):
        TriggerEvent.from_cloudevent(obj)


def test_null_optional_attributes_count_as_absent(clock: FakeClock) -> None:
    """JSON null for an optional attribute means the attribute is not set."""
    obj = wire(clock, graceresource=None, gracetrust=None, data=None, gracepriority=None)
    event = TriggerEvent.from_cloudevent(obj)
    assert event.resource == ""
    assert event.trust_score is None
    assert event.payload == {}
    assert event.priority is EventPriority.NORMAL


def test_minimal_cloudevent_takes_the_defaults(clock: FakeClock) -> None:
    """Without data and Grace's optional extensions an event still decodes, with defaults."""
    obj = {
        "specversion": "1.0",
        "id": new_event_id(clock.now()),
        "source": "https://example.com/sensor",
        "type": "health.degraded",
        "time": "2026-01-01T01:00:00+01:00",
        "graceactor": "sensor-7",
    }
    event = TriggerEvent.from_cloudevent(obj)
    assert event.timestamp == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert event.payload == {}
    assert event.requires_validation is False
    assert event.priority is EventPriority.NORMAL


def test_foreign_extensions_and_json_media_type_parameters_are_accepted(
    clock: FakeClock,
) -> None:
    """Other producers' extensions are ignored and 'application/json; charset=utf-8' is JSON."""
    plain = wire(clock)
    decorated = {
        **plain,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "datacontenttype": "application/json; charset=utf-8",
        "subject": "item-1",
    }
    assert TriggerEvent.from_cloudevent(decorated) == TriggerEvent.from_cloudevent(plain)


def test_time_with_nanoseconds_is_truncated_to_microseconds(clock: FakeClock) -> None:
    """Producers with finer clocks are accepted; Python keeps microseconds."""
    event = TriggerEvent.from_cloudevent(wire(clock, time="2026-01-01t00:00:00.123456789z"))
    assert event.timestamp == dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
