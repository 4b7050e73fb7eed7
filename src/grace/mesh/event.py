"""The trigger event: one immutable fact routed by the mesh, CloudEvents 1.0 on the wire.

Invariants of :class:`TriggerEvent` (checked in ``__post_init__``, so an invalid event
cannot be constructed; every failure is an :class:`~grace.errors.EventError` naming the
field):

* ``event_type`` is a literal subject (:func:`grace.mesh.patterns.validate_subject`);
* ``event_id`` is a UUIDv7 (RFC 9562 §5.7) in canonical lowercase text, so ids sort in
  time order; :func:`new_event_id` makes them;
* ``timestamp`` is timezone-aware and stored in UTC (an aware non-UTC time is converted,
  a naive one is refused);
* ``source`` and ``actor`` are non-empty; ``source`` has no whitespace (a CloudEvents
  ``source`` is a URI-reference); no text attribute holds control characters, lone
  surrogates or Unicode noncharacters (CloudEvents 1.0 §"Type System", String);
* ``payload`` is a JSON object made of JSON values only (``dict`` with ``str`` keys,
  ``list``, ``str``, ``int`` within 64 bits, finite ``float``, ``bool``, ``None``), at most
  :data:`MAX_PAYLOAD_DEPTH` containers deep; the top-level dict is copied, so the caller's
  dict can change without changing the event (nested values are shared: don't mutate);
* ``trust_score`` is ``None`` or a float within [0, 1]; ``priority`` is an
  :class:`EventPriority`; ``correlation_id``/``causation_id`` are ``None`` or non-empty.

Wire form (CloudEvents 1.0, JSON event format, structured mode): the core attributes
``specversion``, ``id``, ``source``, ``type``, ``time``, ``datacontenttype`` and ``data``
carry the event itself; the other fields travel as extension attributes, whose names
must be lowercase ASCII letters and digits only:

* ``graceactor``: actor (string);
* ``graceresource``: resource (string, omitted when empty);
* ``gracetrust``: trust_score as a string holding a JSON number, since CloudEvents has
  no floating-point type (omitted when None);
* ``gracevalidation``: requires_validation (boolean);
* ``gracepriority``: priority (``"normal"``, ``"high"`` or ``"critical"``);
* ``gracecorrelation`` and ``gracecausation``: correlation_id and causation_id
  (strings, omitted when None).

Decoding is strict: a missing or wrong ``specversion``, a bad ``time``, a non-object
``data``, ``data_base64``, a non-JSON ``datacontenttype``, an unknown ``grace*``
attribute or any field that breaks the invariants raises
:class:`~grace.errors.EventError` naming the attribute. Extension attributes of other
producers (``traceparent``, …) are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from grace.errors import EventError, PatternError
from grace.mesh.patterns import validate_subject
from grace.types import Clock

__all__ = ["MAX_PAYLOAD_DEPTH", "EventPriority", "TriggerEvent", "new_event_id"]

MAX_PAYLOAD_DEPTH: Final = 64
"""Most nested containers (objects and arrays) a payload may have, itself included."""

SPECVERSION: Final = "1.0"
DATACONTENTTYPE: Final = "application/json"

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MICROSECOND: Final = _dt.timedelta(microseconds=1)
_MIN_INT: Final = -(2**63)  # orjson writes signed and unsigned 64-bit integers
_MAX_INT: Final = 2**64 - 1

_UUID7_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)
# RFC 3339 §5.6 date-time; 'T' and 'Z' may be lowercase (§5.6 NOTE).
_RFC3339_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d must not match other scripts' digits, which int() would accept
)
_JSON_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
_ATTRIBUTE_NAME_RE: Final = re.compile(r"[a-z0-9]+")
# CloudEvents String: no control characters (C0, DEL, C1), surrogates or noncharacters.
_NONCHARACTERS: Final = "".join(
    chr(plane * 0x10000 + low) for plane in range(17) for low in (0xFFFE, 0xFFFF)
)
_BAD_TEXT_RE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + re.escape(_NONCHARACTERS) + "]"
)
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_WHITESPACE_RE: Final = re.compile(r"\s")

_GRACE_ATTRIBUTES: Final = frozenset(
    {
        "graceactor",
        "graceresource",
        "gracetrust",
        "gracevalidation",
        "gracepriority",
        "gracecorrelation",
        "gracecausation",
    }
)


class EventPriority(StrEnum):
    """How urgently an event is dispatched; ``high`` and ``critical`` take the fast lane."""

    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


def new_event_id(now: _dt.datetime) -> str:
    """A UUIDv7 (RFC 9562 §5.7) for an event created at ``now`` (aware, not before 1970).

    Layout: 48-bit Unix time in milliseconds, version ``0b0111``, 12 bits ``rand_a``,
    variant ``0b10``, 62 random bits ``rand_b`` from :mod:`secrets`. ``rand_a`` holds the
    sub-millisecond fraction of ``now`` (RFC 9562 §6.2, Method 3), so ids of events from
    different microseconds sort in time order without any shared counter; ids within one
    microsecond are ordered at random.
    """
    if not isinstance(now, _dt.datetime) or now.utcoffset() is None:
        raise EventError(f"event id time must be a timezone-aware datetime, got {now!r}")
    micros = (now - _EPOCH) // _ONE_MICROSECOND
    unix_ms, sub_ms_us = divmod(micros, 1000)
    if not 0 <= unix_ms < 1 << 48:
        raise EventError(f"event id time {now.isoformat()} is outside the UUIDv7 range")
    rand_a = (sub_ms_us << 12) // 1000  # 0..4091, strictly increasing with the microsecond
    value = (
        unix_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | secrets.randbits(62)
    )  # RFC 9562 §5.7 field layout
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerEvent:
    """One event routed by the mesh; build with :meth:`create` or :meth:`child`."""

    event_type: str
    source: str
    """Who published it. The mesh overwrites it with the verified publisher identity."""
    actor: str
    """On whose behalf it happened (a user, a service principal, a component)."""
    resource: str = ""
    payload: dict[str, Any] = field(default_factory=dict, hash=False)
    event_id: str
    timestamp: _dt.datetime
    trust_score: float | None = None
    requires_validation: bool = False
    priority: EventPriority = EventPriority.NORMAL
    correlation_id: str | None = None
    """Id shared by every event of one causal chain (the first event's id by default)."""
    causation_id: str | None = None
    """Id of the event that directly caused this one."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _event_type(self.event_type, "TriggerEvent.event_type")
        _text(self.source, "TriggerEvent.source", source=True)
        _text(self.actor, "TriggerEvent.actor")
        _text(self.resource, "TriggerEvent.resource", empty_ok=True)
        set_(self, "payload", _payload(self.payload, "TriggerEvent.payload"))
        set_(self, "event_id", _event_id(self.event_id, "TriggerEvent.event_id"))
        set_(self, "timestamp", _timestamp(self.timestamp, "TriggerEvent.timestamp"))
        set_(self, "trust_score", _trust(self.trust_score, "TriggerEvent.trust_score"))
        if type(self.requires_validation) is not bool:
            raise EventError(
                "TriggerEvent.requires_validation must be a bool, "
                f"got {type(self.requires_validation).__name__}"
            )
        set_(self, "priority", _priority(self.priority, "TriggerEvent.priority"))
        for name in ("correlation_id", "causation_id"):
            value = getattr(self, name)
            if value is not None:
                _text(value, f"TriggerEvent.{name}")

    @classmethod
    def create(
        cls,
        event_type: str,
        *,
        source: str,
        actor: str,
        clock: Clock,
        payload: Mapping[str, Any] | None = None,
        resource: str = "",
        trust_score: float | None = None,
        requires_validation: bool = False,
        priority: EventPriority = EventPriority.NORMAL,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> TriggerEvent:
        """A new event stamped with a fresh id and the clock's current time (read once)."""
        now = clock.now()
        return cls(
            event_type=event_type,
            source=source,
            actor=actor,
            resource=resource,
            payload=dict(payload) if payload is not None else {},
            event_id=new_event_id(now),
            timestamp=now,
            trust_score=trust_score,
            requires_validation=requires_validation,
            priority=priority,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def child(
        self,
        event_type: str,
        *,
        source: str,
        clock: Clock,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        resource: str | None = None,
        requires_validation: bool = False,
        priority: EventPriority = EventPriority.NORMAL,
    ) -> TriggerEvent:
        """A new event caused by this one, in the same correlation chain.

        ``correlation_id`` is this event's correlation id (or its own id when it starts
        the chain) and ``causation_id`` is this event's id. ``actor`` and ``resource``
        default to this event's; trust is not inherited (the mesh scores each publisher).
        """
        return TriggerEvent.create(
            event_type,
            source=source,
            actor=self.actor if actor is None else actor,
            clock=clock,
            payload=payload,
            resource=self.resource if resource is None else resource,
            requires_validation=requires_validation,
            priority=priority,
            correlation_id=self.correlation_id or self.event_id,
            causation_id=self.event_id,
        )

    def with_source(self, source: str) -> TriggerEvent:
        """A copy whose ``source`` is replaced (the mesh stamps the verified publisher).

        Only the new source is checked: every other field is already valid, and this runs
        once per emitted event.
        """
        _text(source, "TriggerEvent.source", source=True)
        copy = object.__new__(TriggerEvent)
        for name in _FIELD_NAMES:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "source", source)
        return copy

    # -- CloudEvents 1.0, JSON event format ------------------------------------------

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvents 1.0 object (``data`` is a copy of the payload)."""
        envelope = self._envelope()
        envelope["data"] = dict(self.payload)
        return envelope

    def to_json(self) -> bytes:
        """The CloudEvents 1.0 JSON bytes (``application/cloudevents+json``)."""
        try:
            return orjson.dumps(self._envelope())
        except orjson.JSONEncodeError as e:  # only if a nested payload value was mutated
            raise EventError(f"TriggerEvent.payload is no longer JSON: {e}") from e

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> TriggerEvent:
        """Decode CloudEvents 1.0 JSON; :class:`EventError` names what is wrong."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise EventError(f"CloudEvent JSON is malformed: {e}") from e
        return cls.from_cloudevent(obj)

    @classmethod
    def from_cloudevent(cls, obj: Mapping[str, Any]) -> TriggerEvent:
        """Decode a CloudEvents 1.0 structured-mode object, strictly."""
        if not isinstance(obj, Mapping):
            raise EventError(f"a CloudEvent must be a JSON object, got {type(obj).__name__}")
        specversion = _attribute(obj, "specversion", required=True)
        if specversion != SPECVERSION:
            raise EventError(
                f"CloudEvent attribute 'specversion' must be {SPECVERSION!r}, got {specversion!r}"
            )
        for name in obj:
            _check_member_name(name)
        content_type = _attribute(obj, "datacontenttype")
        if content_type is not None and not _is_json_media_type(content_type):
            raise EventError(
                "CloudEvent attribute 'datacontenttype' must be 'application/json', "
                f"got {content_type!r}"
            )
        for optional in ("dataschema", "subject"):
            value = _attribute(obj, optional)
            if value is not None:
                _text(value, _where(optional))
        data = _attribute(obj, "data")
        trust = _attribute(obj, "gracetrust")
        validation = _attribute(obj, "gracevalidation")
        if validation is not None and type(validation) is not bool:
            raise EventError(
                f"CloudEvent attribute 'gracevalidation' must be a JSON boolean, got {validation!r}"
            )
        priority = _attribute(obj, "gracepriority")
        correlation = _attribute(obj, "gracecorrelation")
        causation = _attribute(obj, "gracecausation")
        resource = _attribute(obj, "graceresource")
        return cls(
            event_type=_event_type(_attribute(obj, "type", required=True), _where("type")),
            source=_text(_attribute(obj, "source", required=True), _where("source"), source=True),
            actor=_text(_attribute(obj, "graceactor", required=True), _where("graceactor")),
            resource="" if resource is None else _text(resource, _where("graceresource")),
            payload={} if data is None else _payload(data, _where("data")),
            event_id=_event_id(_attribute(obj, "id", required=True), _where("id")),
            timestamp=_parse_time(_attribute(obj, "time", required=True)),
            trust_score=None if trust is None else _parse_trust(trust),
            requires_validation=bool(validation),
            priority=(
                EventPriority.NORMAL
                if priority is None
                else _priority(priority, _where("gracepriority"))
            ),
            correlation_id=(
                None if correlation is None else _text(correlation, _where("gracecorrelation"))
            ),
            causation_id=(
                None if causation is None else _text(causation, _where("gracecausation"))
            ),
        )

    def _envelope(self) -> dict[str, Any]:
        """The CloudEvent with ``data`` referring to the payload itself (not copied)."""
        envelope: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.event_id,
            "source": self.source,
            "type": self.event_type,
            "time": _format_time(self.timestamp),
            "datacontenttype": DATACONTENTTYPE,
            "graceactor": self.actor,
            "gracevalidation": self.requires_validation,
            "gracepriority": self.priority.value,
        }
        if self.resource:
            envelope["graceresource"] = self.resource
        if self.trust_score is not None:
            envelope["gracetrust"] = repr(self.trust_score)  # shortest round-trip digits
        if self.correlation_id is not None:
            envelope["gracecorrelation"] = self.correlation_id
        if self.causation_id is not None:
            envelope["gracecausation"] = self.causation_id
        envelope["data"] = self.payload
        return envelope


_FIELD_NAMES: Final = tuple(f.name for f in dataclasses.fields(TriggerEvent))

# -- field checks: each names where the value came from ------------------------------


def _where(attribute: str) -> str:
    return f"CloudEvent attribute {attribute!r}"


def _attribute(obj: Mapping[str, Any], name: str, *, required: bool = False) -> Any:
    """The member ``name``; JSON ``null`` counts as absent (CloudEvents JSON format §2.4)."""
    value = obj.get(name)
    if value is None and required:
        raise EventError(f"{_where(name)} is missing")
    return value


def _check_member_name(name: object) -> None:
    if not isinstance(name, str):
        raise EventError(f"CloudEvent member names must be strings, got {name!r}")
    if name == "data":
        return
    if name == "data_base64":
        raise EventError(f"{_where('data_base64')}: binary data is not accepted, send JSON 'data'")
    if not _ATTRIBUTE_NAME_RE.fullmatch(name):
        raise EventError(
            f"CloudEvent attribute name {name!r} is invalid: "
            "only lowercase ASCII letters and digits are allowed"
        )
    if name.startswith("grace") and name not in _GRACE_ATTRIBUTES:
        raise EventError(f"{_where(name)} is not a Grace attribute")


def _is_json_media_type(value: object) -> bool:
    if not isinstance(value, str):
        return False
    return value.split(";", 1)[0].strip().lower() == DATACONTENTTYPE


def _text(value: object, where: str, *, empty_ok: bool = False, source: bool = False) -> str:
    if not isinstance(value, str):
        raise EventError(f"{where} must be a string, got {type(value).__name__}")
    if not value:
        if empty_ok:
            return value
        raise EventError(f"{where} must not be empty")
    bad = _BAD_TEXT_RE.search(value)
    if bad:
        raise EventError(
            f"{where} contains the forbidden character {bad.group()!r} at index {bad.start()}"
        )
    if source and _WHITESPACE_RE.search(value):
        raise EventError(f"{where} must not contain whitespace, got {value!r}")
    return value


def _event_type(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise EventError(f"{where} must be a string, got {type(value).__name__}")
    try:
        return validate_subject(value)
    except PatternError as e:
        raise EventError(f"{where} is not a valid event type: {e}") from e


def _event_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not _UUID7_RE.fullmatch(value):
        raise EventError(f"{where} must be a UUIDv7 in canonical text form, got {value!r}")
    return value.lower()


def _timestamp(value: object, where: str) -> _dt.datetime:
    if not isinstance(value, _dt.datetime):
        raise EventError(f"{where} must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise EventError(f"{where} must be timezone-aware (UTC), got naive {value.isoformat()}")
    if value.tzinfo is _dt.UTC:
        return value
    try:
        return value.astimezone(_dt.UTC)
    except OverflowError as e:
        raise EventError(f"{where} {value.isoformat()} is outside the UTC range") from e


def _trust(value: object, where: str) -> float | None:
    return None if value is None else _trust_number(value, where)


def _trust_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(f"{where} must be a number in [0, 1], got {value!r}")
    score = float(value)
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise EventError(f"{where} must be within [0, 1], got {value!r}")
    return score


def _priority(value: object, where: str) -> EventPriority:
    if isinstance(value, EventPriority):
        return value
    if isinstance(value, str):
        try:
            return EventPriority(value)
        except ValueError:
            pass
    choices = ", ".join(p.value for p in EventPriority)
    raise EventError(f"{where} must be one of {choices}; got {value!r}")


def _payload(value: object, where: str) -> dict[str, Any]:
    """A shallow copy of ``value`` after checking it is a JSON object of JSON values."""
    if not isinstance(value, dict):
        raise EventError(f"{where} must be a JSON object, got {type(value).__name__}")
    if not _plain_json(value, 1):
        _explain_payload(value, where)  # raises, unless only subclasses (StrEnum, ...) failed
    return dict(value)


def _plain_json(container: dict[Any, Any] | list[Any], depth: int) -> bool:
    """Fast check on exact built-in types; False means "look closer", not "invalid"."""
    if depth > MAX_PAYLOAD_DEPTH:
        return False
    if type(container) is dict:
        for key in container:
            if type(key) is not str or (not key.isascii() and _SURROGATE_RE.search(key)):
                return False
        values: Any = container.values()
    else:
        values = container
    for item in values:
        kind = type(item)
        if kind is str:
            if not item.isascii() and _SURROGATE_RE.search(item):
                return False
        elif kind is int:
            if not _MIN_INT <= item <= _MAX_INT:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict or kind is list:
            if not _plain_json(item, depth + 1):
                return False
        elif not (item is None or kind is bool):
            return False
    return True


def _explain_payload(value: dict[Any, Any], where: str) -> None:
    """Walk ``value`` again, accepting subclasses, and raise naming the first bad value.

    Subclasses of ``str``, ``int``, ``dict`` and ``list`` (``StrEnum``, ``IntEnum``,
    ``OrderedDict``) are accepted: orjson writes them as their base type, so they decode
    as equal plain values.
    """
    # Iterative walk: (value, path, depth); depth counts containers including this one.
    stack: list[tuple[object, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE_RE.search(item):
                raise EventError(f"{where}{path} holds a string with a lone surrogate")
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not _MIN_INT <= item <= _MAX_INT:
                raise EventError(f"{where}{path} holds an integer beyond 64 bits")
        elif type(item) is float:  # orjson encodes subclasses of str, int, dict, list only
            if not math.isfinite(item):
                raise EventError(f"{where}{path} holds {item!r}, which is not a JSON number")
        elif isinstance(item, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                raise EventError(
                    f"{where}{path} nests deeper than {MAX_PAYLOAD_DEPTH} objects/arrays"
                )
            if isinstance(item, list):
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
                continue
            for key, v in item.items():
                if not isinstance(key, str):
                    raise EventError(f"{where}{path} has a non-string key {key!r}")
                if not key.isascii() and _SURROGATE_RE.search(key):
                    raise EventError(f"{where}{path} has a key with a lone surrogate")
                stack.append((v, f"{path}[{key!r}]", depth + 1))
        else:
            raise EventError(
                f"{where}{path} holds a {type(item).__name__}, which is not a JSON value"
            )


def _format_time(when: _dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds and 'Z': ``2026-01-01T00:00:00.000000Z``."""
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_time(value: object) -> _dt.datetime:
    where = _where("time")
    match = _RFC3339_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise EventError(f"{where} must be an RFC 3339 date-time, got {value!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))  # finer than microseconds: truncated
    try:
        if zulu:
            tz = _dt.UTC
        else:
            if int(off_m) > 59:
                raise ValueError(f"offset minutes {off_m} out of range")
            offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
            tz = _dt.timezone(-offset if sign == "-" else offset)
        when = _dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
        return when.astimezone(_dt.UTC)
    except (ValueError, OverflowError) as e:
        raise EventError(f"{where} is not a valid date-time: {value!r} ({e})") from e


def _parse_trust(value: object) -> float:
    where = _where("gracetrust")
    if not isinstance(value, str) or not _JSON_NUMBER_RE.fullmatch(value):
        raise EventError(f"{where} must be a string holding a number in [0, 1], got {value!r}")
    return _trust_number(float(value), where)
