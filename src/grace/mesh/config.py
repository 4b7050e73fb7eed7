"""The trigger mesh routing file: which events exist, who may publish them, who hears them.

The file is YAML and is treated as untrusted input: it is parsed with a safe loader that
also rejects duplicate keys and aliases, then validated into frozen pydantic
models that forbid unknown keys and refuse type coercion of scalars. Every problem
raises :class:`~grace.errors.MeshConfigError` naming the file, the key path (for example
``events[3].min_trust_score``), its line where known, and what is wrong.

Invariants of a :class:`MeshConfig` that loaded:

- event types are dot-separated subjects of ``[a-z0-9_]+`` tokens, declared once each;
- routing rules and trust requirements are exact event types or NATS-style patterns
  (``*`` is one whole token, ``>`` the rest and only last), and each names or matches
  at least one declared event, because one that matches nothing is almost surely a typo;
- every ``group:<name>`` subscriber names a declared subscriber group;
- the publisher ``"*"`` (any registered component) appears only alone, and only on
  *unprotected* events: no constitutional validation and an effective minimum trust of 0.
  Protected events always have an explicit allow-list of publishers (default deny).

The effective minimum trust of an event is the maximum of its ``min_trust_score`` and
every ``trust_requirements`` pattern that matches it.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple, Self, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from grace.errors import MeshConfigError, PatternError
from grace.mesh.patterns import matches, validate_pattern, validate_subject

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "MAX_CONFIG_BYTES",
    "EventSpec",
    "MeshConfig",
    "RoutingRules",
    "load_mesh_config",
    "parse_mesh_config",
]

DEFAULT_CONFIG_NAME: Final = "default_config.yaml"
MAX_CONFIG_BYTES: Final = 1 << 20
"""A routing file is a few kilobytes; anything near this is a mistake or an attack."""

ANY_PUBLISHER: Final = "*"
GROUP_PREFIX: Final = "group:"

_TOKEN = re.compile(r"[a-z0-9_]+")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_CROSS_CHECK: Final = "mesh_cross_check"

_Loc = tuple[str | int, ...]
_T = TypeVar("_T")


# --- subjects and patterns ------------------------------------------------------------


def _token_problem(value: str) -> str | None:
    """Config names use a narrower alphabet than the mesh accepts: ``[a-z0-9_]+`` tokens."""
    for token in value.split("."):
        if token not in ("*", ">") and not _TOKEN.fullmatch(token):
            return f"{value!r}: token {token!r} must match [a-z0-9_]+"
    return None


def _check_event_type(value: str) -> str:
    try:
        validate_subject(value)
    except PatternError as e:
        raise ValueError(str(e)) from None
    if problem := _token_problem(value):
        raise ValueError(problem)
    return value


def _check_pattern(value: str) -> str:
    try:
        validate_pattern(value)
    except PatternError as e:
        raise ValueError(str(e)) from None
    if problem := _token_problem(value):
        raise ValueError(problem)
    return value


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} must match [a-z][a-z0-9_]*")
    return value


def _check_publisher(value: str) -> str:
    return value if value == ANY_PUBLISHER else _check_name(value)


def _check_subscriber(value: str) -> str:
    if value.startswith(GROUP_PREFIX):
        _check_name(value.removeprefix(GROUP_PREFIX))
        return value
    return _check_name(value)


def _is_pattern(value: str) -> bool:
    return any(token in ("*", ">") for token in value.split("."))


EventType = Annotated[str, Field(strict=True), AfterValidator(_check_event_type)]
"""A dot-separated subject of ``[a-z0-9_]+`` tokens, without wildcards."""
SubjectPattern = Annotated[str, Field(strict=True), AfterValidator(_check_pattern)]
"""An event type or a NATS-style pattern (``*`` one token, ``>`` the rest)."""
ComponentId = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
"""A registered component identity such as ``immune_kernel``."""
Publisher = Annotated[str, Field(strict=True), AfterValidator(_check_publisher)]
"""A component id, or ``"*"`` for any registered component (unprotected events only)."""
Subscriber = Annotated[str, Field(strict=True), AfterValidator(_check_subscriber)]
"""A component id, or ``group:<name>`` naming an entry of ``subscriber_groups``."""
Trust = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
"""A trust score in [0, 1]."""


def _non_empty(values: tuple[_T, ...]) -> tuple[_T, ...]:
    # An after-validator rather than ``min_length``, which would also fire (as noise)
    # when the items themselves failed validation.
    if not values:
        raise ValueError("must not be empty")
    return values


def _no_duplicates(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


# --- models ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Strict):
    """One entry of ``events``: an event type, who may publish it and who receives it."""

    event_type: EventType
    description: Annotated[str, Field(strict=True, min_length=1)]
    publishers: Annotated[tuple[Publisher, ...], AfterValidator(_non_empty)]
    subscribers: tuple[Subscriber, ...] = ()
    requires_constitutional_validation: StrictBool = False
    min_trust_score: Trust = 0.0
    audit: StrictBool = False

    @field_validator("publishers")
    @classmethod
    def _any_publisher_stands_alone(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if ANY_PUBLISHER in value and len(value) > 1:
            raise ValueError("'*' (any registered component) must be the only publisher")
        return _no_duplicates(value)

    @field_validator("subscribers")
    @classmethod
    def _subscribers_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value)

    @property
    def any_publisher(self) -> bool:
        """Whether any registered component may publish this event."""
        return self.publishers == (ANY_PUBLISHER,)


class RoutingRules(_Strict):
    """``routing_rules``: event types or patterns that get priority, audit or alerting."""

    priority_events: Annotated[tuple[SubjectPattern, ...], AfterValidator(_no_duplicates)] = ()
    audit_events: Annotated[tuple[SubjectPattern, ...], AfterValidator(_no_duplicates)] = ()
    alert_events: Annotated[tuple[SubjectPattern, ...], AfterValidator(_no_duplicates)] = ()


class _Route(NamedTuple):
    subscribers: tuple[str, ...]
    priority: bool
    audit: bool
    alert: bool
    min_trust: float


class MeshConfig(_Strict):
    """The whole routing file; lookups accept any event type and match patterns."""

    events: Annotated[tuple[EventSpec, ...], AfterValidator(_non_empty)]
    routing_rules: RoutingRules = RoutingRules()
    subscriber_groups: Mapping[
        Annotated[str, Field(strict=True), AfterValidator(_check_name)],
        Annotated[
            tuple[ComponentId, ...], AfterValidator(_non_empty), AfterValidator(_no_duplicates)
        ],
    ] = Field(default_factory=dict)
    trust_requirements: Mapping[SubjectPattern, Trust] = Field(default_factory=dict)

    _specs: dict[str, EventSpec] = PrivateAttr(default_factory=dict)
    _routes: dict[str, _Route] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems = self._problems()
        if problems:
            summary = "; ".join(f"{_key_path(loc)}: {message}" for loc, message in problems)
            raise PydanticCustomError(
                _CROSS_CHECK, "{summary}", {"summary": summary, "problems": tuple(problems)}
            )
        self._specs = {spec.event_type: spec for spec in self.events}
        self._routes = {t: self._compute_route(t) for t in self._specs}
        return self

    def _problems(self) -> list[tuple[_Loc, str]]:
        problems: list[tuple[_Loc, str]] = []
        first_index: dict[str, int] = {}
        for i, spec in enumerate(self.events):
            if spec.event_type in first_index:
                problems.append(
                    (
                        ("events", i, "event_type"),
                        f"duplicate event type {spec.event_type!r} "
                        f"(already declared at events[{first_index[spec.event_type]}])",
                    )
                )
            else:
                first_index[spec.event_type] = i
            for k, subscriber in enumerate(spec.subscribers):
                group = subscriber.removeprefix(GROUP_PREFIX)
                if subscriber.startswith(GROUP_PREFIX) and group not in self.subscriber_groups:
                    known = ", ".join(sorted(self.subscriber_groups)) or "none"
                    problems.append(
                        (
                            ("events", i, "subscribers", k),
                            f"unknown subscriber group {group!r} (declared groups: {known})",
                        )
                    )
            if spec.any_publisher:
                problems.extend(self._open_publisher_problems(i, spec))

        declared = list(first_index)
        rules = self.routing_rules
        for rule, entries in (
            ("priority_events", rules.priority_events),
            ("audit_events", rules.audit_events),
            ("alert_events", rules.alert_events),
        ):
            for k, entry in enumerate(entries):
                if problem := _unmatched(entry, declared):
                    problems.append((("routing_rules", rule, k), problem))
        problems.extend(
            (("trust_requirements", pattern), problem)
            for pattern in self.trust_requirements
            if (problem := _unmatched(pattern, declared))
        )
        return problems

    def _open_publisher_problems(self, i: int, spec: EventSpec) -> list[tuple[_Loc, str]]:
        loc: _Loc = ("events", i, "publishers", 0)
        if spec.requires_constitutional_validation:
            return [
                (
                    loc,
                    "'*' (any registered component) may only publish unprotected events, "
                    f"but {spec.event_type!r} requires constitutional validation; "
                    "list the components allowed to publish it",
                )
            ]
        trust, source = spec.min_trust_score, "min_trust_score"
        for pattern, minimum in self.trust_requirements.items():
            if minimum > trust and matches(pattern, spec.event_type):
                trust, source = minimum, f"trust_requirements[{pattern!r}]"
        if trust > 0:
            return [
                (
                    loc,
                    "'*' (any registered component) may only publish unprotected events, "
                    f"but {spec.event_type!r} requires trust >= {trust} (from {source}); "
                    "list the components allowed to publish it",
                )
            ]
        return []

    def _compute_route(self, event_type: str) -> _Route:
        def hit(patterns: tuple[str, ...]) -> bool:
            return any(matches(p, event_type) for p in patterns)

        spec = self._specs.get(event_type)
        minimum = spec.min_trust_score if spec is not None else 0.0
        for pattern, required in self.trust_requirements.items():
            if matches(pattern, event_type):
                minimum = max(minimum, required)
        subscribers: dict[str, None] = {}  # ordered, without duplicates
        for subscriber in spec.subscribers if spec is not None else ():
            if subscriber.startswith(GROUP_PREFIX):
                group = self.subscriber_groups[subscriber.removeprefix(GROUP_PREFIX)]
                subscribers.update(dict.fromkeys(group))
            else:
                subscribers[subscriber] = None
        rules = self.routing_rules
        return _Route(
            subscribers=tuple(subscribers),
            priority=hit(rules.priority_events),
            audit=(spec is not None and spec.audit) or hit(rules.audit_events),
            alert=hit(rules.alert_events),
            min_trust=minimum,
        )

    def _route(self, event_type: str) -> _Route:
        # Declared types are precomputed; others (which the mesh rejects anyway) are
        # computed on demand and not cached, so arbitrary input cannot grow memory.
        route = self._routes.get(event_type)
        return route if route is not None else self._compute_route(event_type)

    def spec(self, event_type: str) -> EventSpec | None:
        """The declared spec of ``event_type``, or None if the file does not declare it."""
        return self._specs.get(event_type)

    def may_publish(self, event_type: str, publisher: str) -> bool:
        """Whether the component ``publisher`` may publish ``event_type`` (default deny).

        ``publisher`` must be an identity the mesh issued, never an event's self-declared
        ``source``; ``"*"`` in the file admits any such identity.
        """
        spec = self._specs.get(event_type)
        if spec is None:
            return False
        return spec.any_publisher or publisher in spec.publishers

    def subscribers_of(self, event_type: str) -> tuple[str, ...]:
        """Component ids that receive ``event_type``, groups expanded, in file order, once each."""
        return self._route(event_type).subscribers

    def subscriptions_of(self, component_id: str) -> tuple[str, ...]:
        """Event types whose subscribers include ``component_id`` (directly or by group)."""
        return tuple(
            spec.event_type
            for spec in self.events
            if component_id in self._route(spec.event_type).subscribers
        )

    def rule_count(self) -> int:
        """The seed's ``routing_rules`` statistic: the number of declared event routes."""
        return len(self.events)

    def is_priority(self, event_type: str) -> bool:
        """Whether ``event_type`` matches an entry of ``routing_rules.priority_events``."""
        return self._route(event_type).priority

    def is_audit(self, event_type: str) -> bool:
        """Whether ``event_type`` is audited (its spec says so or it matches audit_events)."""
        return self._route(event_type).audit

    def is_alert(self, event_type: str) -> bool:
        """Whether ``event_type`` matches an entry of ``routing_rules.alert_events``."""
        return self._route(event_type).alert

    def min_trust(self, event_type: str) -> float:
        """The effective minimum trust: max of min_trust_score and matching requirements."""
        return self._route(event_type).min_trust


def _unmatched(entry: str, declared: list[str]) -> str | None:
    """Why a routing entry is an error: an undeclared type, or a pattern matching none."""
    if not _is_pattern(entry):
        return None if entry in declared else f"event type {entry!r} is not declared in events"
    if any(matches(entry, subject) for subject in declared):
        return None
    return f"pattern {entry!r} matches no declared event type"


# --- loading --------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also rejects duplicate keys and aliases (``*name``).

    A duplicate key silently overrides the first in plain YAML, which hides typos in a
    security-relevant file; aliases let a small file expand into a huge validation job.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark if isinstance(event.start_mark, yaml.error.Mark) else None
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed here", mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeConstructor reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_DATA_KEYED: Final = frozenset({"subscriber_groups", "trust_requirements"})
"""Sections whose keys are names from the file, shown as ``section['key']``."""


def _key_path(loc: _Loc) -> str:
    """``("events", 3, "min_trust_score")`` → ``events[3].min_trust_score``."""
    path = ""
    for i, item in enumerate(loc):
        if isinstance(item, int):
            path += f"[{item}]"
        elif item == "[key]":
            path += " (key)"
        elif item.isidentifier() and not (i == 1 and loc[0] in _DATA_KEYED):
            path += f".{item}" if path else item
        else:
            path += f"[{item!r}]"
    return path or "(top level)"


def _line_of(root: yaml.Node, loc: _Loc) -> int | None:
    """The 1-based line of the YAML node at ``loc``, as deep as the file goes."""
    node, line = root, root.start_mark.line + 1
    for item in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == item or key_node.value == str(item):
                    node, line = value_node, key_node.start_mark.line + 1
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int):
            if not 0 <= item < len(node.value):
                break
            node = node.value[item]
            line = node.start_mark.line + 1
        else:
            break
    return line


_PLAIN_MESSAGES: Final = {
    # pydantic speaks Python; the reader of this message is editing YAML.
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
}


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "value_error":  # our own validators, which quote the value
        return str((error.get("ctx") or {})["error"])
    message = _PLAIN_MESSAGES.get(error["type"], error["msg"])
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        shown = repr(value)
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return message


def _validation_problems(e: ValidationError) -> list[tuple[_Loc, str]]:
    problems: list[tuple[_Loc, str]] = []
    for error in e.errors():
        ctx = error.get("ctx") or {}
        if error["type"] == _CROSS_CHECK:
            problems.extend(ctx["problems"])
        else:
            problems.append((tuple(error["loc"]), _describe(error)))
    return problems


def _type_name(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def parse_mesh_config(text: str, *, source: str) -> MeshConfig:
    """Parse and validate routing YAML; ``source`` names the file in error messages."""
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # the reader already rejects control characters
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as e:
        where = ""
        if e.problem_mark is not None:
            where = f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}"
        context = f" ({e.context})" if e.context else ""
        raise MeshConfigError(
            f"{source}: malformed YAML{where}: {e.problem or 'unparsable'}{context}"
        ) from e
    except yaml.YAMLError as e:  # e.g. ReaderError for control characters
        raise MeshConfigError(f"{source}: malformed YAML: {e}") from e
    finally:
        if loader is not None:
            loader.dispose()

    if root is None or data is None:
        raise MeshConfigError(f"{source}: empty file; expected a mapping with an 'events' list")
    if not isinstance(data, dict):
        raise MeshConfigError(
            f"{source}: the top level must be a mapping (events, routing_rules, "
            f"subscriber_groups, trust_requirements), got {_type_name(data)}"
        )
    try:
        return MeshConfig.model_validate(data)
    except ValidationError as e:
        details = []
        for loc, message in _validation_problems(e):
            line = _line_of(root, loc)
            details.append(f"{_key_path(loc)} (line {line}): {message}")
        raise MeshConfigError(f"{source}: " + "; ".join(details)) from e


def load_mesh_config(path: Path | None = None) -> MeshConfig:
    """Load the routing file at ``path``, or the packaged default when ``path`` is None."""
    if path is None:
        resource = importlib.resources.files(__package__ or "grace.mesh") / DEFAULT_CONFIG_NAME
        return parse_mesh_config(resource.read_text(encoding="utf-8"), source=str(resource))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise MeshConfigError(f"{path}: cannot read mesh config: {e.strerror or e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise MeshConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MeshConfigError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from e
    return parse_mesh_config(text, source=str(path))
