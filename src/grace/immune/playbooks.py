"""Playbooks: which healing steps answer which anomalies, validated from YAML.

A playbook file is untrusted input: it is read with a safe YAML loader that also refuses
duplicate keys and aliases, validated by pydantic models that forbid unknown keys, then
turned into frozen dataclasses. Every problem raises :class:`~grace.errors.PlaybookError`
naming the file, the playbook and the key (``default.yaml: playbook 'restart':
steps[0].verify.kind: ...``).

Shape (see ``default_playbooks.yaml``)::

    version: 1
    playbooks:
      - name: restart-unhealthy-service          # unique, [a-z0-9_-]
        match: {types: [service_down], min_severity: low, resource: "*"}
        max_attempts: 1                          # healing runs per incident
        cooldown_s: 120                          # between runs on one resource
        steps:                                   # tried in order
          - action: restart_service              # one of the 12 healing actions
            executor: restart_process            # how; defaulted for some actions
            params: {process: "{resource}"}      # placeholders: see PLACEHOLDERS
            timeout_s: 30
            disruption: 3                        # cost; defaulted per action
            verify: {kind: health, target: "{resource}", timeout_s: 60}
            on_success: stop                     # stop | continue (a preparatory step)
            on_failure: next                     # next | rollback | escalate
            rollback: {action: ..., executor: ..., params: ...}   # run on_failure: rollback

Invariants: a step always has an executor (given, or the action's default — an action
without a default and without an executor is refused, because "do nothing and report
success" is exactly what playbooks must not do); ``on_failure: rollback`` needs a
``rollback`` step; ``verify.kind: control`` only follows the actions on Grace itself
whose effect Grace can check directly; placeholders are the four known names only.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import re
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grace.errors import PlaybookError
from grace.immune.taxonomy import AnomalyType, HealingAction, Severity

__all__ = [
    "DEFAULT_DISRUPTION",
    "DEFAULT_EXECUTORS",
    "DEFAULT_PLAYBOOKS_NAME",
    "PLACEHOLDERS",
    "Match",
    "OnFailure",
    "OnSuccess",
    "Playbook",
    "PlaybookSet",
    "PlaybookStep",
    "Verification",
    "VerifyKind",
    "load_playbooks",
    "parse_playbooks",
    "render",
]

DEFAULT_PLAYBOOKS_NAME: Final = "default_playbooks.yaml"
MAX_FILE_BYTES: Final = 1 << 20
PLACEHOLDERS: Final = frozenset({"resource", "anomaly_type", "severity", "incident_id"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

DEFAULT_EXECUTORS: Final[Mapping[HealingAction, str]] = {
    HealingAction.RESTART_SERVICE: "restart_process",
    HealingAction.CIRCUIT_BREAKER: "circuit_breaker",
    HealingAction.RATE_LIMIT: "rate_limit",
    HealingAction.QUARANTINE_COMPONENT: "quarantine_component",
    HealingAction.ESCALATE_TO_HUMAN: "escalate_to_human",
}
"""Executors for actions that have an obvious one; the rest must name theirs."""

DEFAULT_DISRUPTION: Final[Mapping[HealingAction, int]] = {
    HealingAction.ESCALATE_TO_HUMAN: 0,
    HealingAction.GARBAGE_COLLECT: 1,
    HealingAction.CLEAR_CACHE: 1,
    HealingAction.SCALE_UP: 1,
    HealingAction.RATE_LIMIT: 2,
    HealingAction.KILL_CONNECTION: 2,
    HealingAction.SCALE_DOWN: 2,
    HealingAction.CIRCUIT_BREAKER: 3,
    HealingAction.RESTART_SERVICE: 3,
    HealingAction.HARDEN_SECURITY: 3,
    HealingAction.ROLLBACK: 4,
    HealingAction.QUARANTINE_COMPONENT: 4,
}
"""How disruptive each action is (0 none … 5 most); a step may override its own."""

_CONTROL_ACTIONS: Final = frozenset(
    {HealingAction.CIRCUIT_BREAKER, HealingAction.RATE_LIMIT, HealingAction.QUARANTINE_COMPONENT}
)


class VerifyKind(StrEnum):
    """How a step's effect is checked."""

    HEALTH = "health"
    """Re-probe a health check until it passes ``consecutive`` times, within the timeout."""
    METRIC = "metric"
    """Watch a metric series stay within ``factor`` x its baseline for ``window_s``."""
    CONTROL = "control"
    """The ingress control or quarantine the step set is in force (actions on Grace)."""
    NONE = "none"
    """Not verified: the step can never resolve an incident by itself."""


class OnSuccess(StrEnum):
    """After a verified step."""

    STOP = "stop"
    CONTINUE = "continue"


class OnFailure(StrEnum):
    """After a step that failed, was not verified, or was not allowed."""

    NEXT = "next"
    ROLLBACK = "rollback"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """How to check a step worked."""

    kind: VerifyKind
    target: str = "{resource}"
    """The health check or metric series (placeholders allowed)."""
    timeout_s: float = 30.0
    interval_s: float = 1.0
    consecutive: int = 2
    window_s: float = 10.0
    factor: float = 1.5
    min_samples: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybookStep:
    """One governed healing action and what follows it."""

    action: HealingAction
    executor: str
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    disruption: int = 0
    verify: Verification = field(default_factory=lambda: Verification(kind=VerifyKind.NONE))
    on_success: OnSuccess = OnSuccess.STOP
    on_failure: OnFailure = OnFailure.NEXT
    rollback: PlaybookStep | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """Which incidents a playbook answers."""

    types: frozenset[AnomalyType] | None = None
    """None: every type."""
    min_severity: Severity = Severity.INFO
    max_severity: Severity = Severity.CRITICAL
    resource: str = "*"
    """A shell-style pattern over the resource name."""

    def matches(self, anomaly_type: AnomalyType, severity: Severity, resource: str) -> bool:
        """Whether an incident of this type, severity and resource is answered."""
        return (
            (self.types is None or anomaly_type in self.types)
            and self.min_severity.rank <= severity.rank <= self.max_severity.rank
            and fnmatch.fnmatchcase(resource, self.resource)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Playbook:
    """An ordered list of healing steps for the incidents it matches."""

    name: str
    steps: tuple[PlaybookStep, ...]
    match: Match = field(default_factory=Match)
    description: str = ""
    max_attempts: int = 1
    cooldown_s: float = 300.0
    source: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"playbook {self.name!r} has no steps")
        if self.max_attempts < 1 or self.cooldown_s < 0:
            raise ValueError(f"playbook {self.name!r}: max_attempts >= 1 and cooldown_s >= 0")


def render(value: Any, variables: Mapping[str, str]) -> Any:
    """Substitute ``{name}`` placeholders in every string of ``value`` (recursively).

    Only whole known names are replaced — no format specs, attributes or indexing — so a
    template cannot reach anything but the four incident variables.
    """
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, Mapping):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, variables) for v in value]
    return value


def _check_placeholders(value: Any) -> Any:
    if isinstance(value, str):
        for name in _PLACEHOLDER.findall(value):
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} in {value!r}; "
                    f"known: {', '.join(sorted('{' + p + '}' for p in PLACEHOLDERS))}"
                )
    elif isinstance(value, Mapping):
        for v in value.values():
            _check_placeholders(v)
    elif isinstance(value, list):
        for v in value:
            _check_placeholders(v)
    return value


# --- the YAML schema (untrusted input) -------------------------------------------------

_Seconds = Annotated[float, Field(gt=0, le=86_400)]
_Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Verify(_Model):
    kind: VerifyKind
    target: str = Field(default="{resource}", min_length=1, max_length=256)
    timeout_s: _Seconds = 30.0
    interval_s: _Seconds = 1.0
    consecutive: int = Field(default=2, ge=1, le=100)
    window_s: _Seconds = 10.0
    factor: float = Field(default=1.5, ge=1.0, le=1000.0)
    min_samples: int = Field(default=3, ge=1, le=10_000)

    @field_validator("target")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        return _check_placeholders(value)  # type: ignore[no-any-return]


class _Rollback(_Model):
    action: HealingAction
    executor: _Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: _Seconds = 30.0
    disruption: int | None = Field(default=None, ge=0, le=10)
    verify: _Verify | None = None

    @field_validator("params")
    @classmethod
    def _known_placeholders(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_placeholders(value)  # type: ignore[no-any-return]


class _Step(_Rollback):
    on_success: OnSuccess = OnSuccess.STOP
    on_failure: OnFailure = OnFailure.NEXT
    rollback: _Rollback | None = None


class _Match(_Model):
    types: list[AnomalyType] | None = Field(default=None, min_length=1)
    min_severity: Severity = Severity.INFO
    max_severity: Severity = Severity.CRITICAL
    resource: str = Field(default="*", min_length=1, max_length=256)


class _Playbook(_Model):
    name: _Name
    description: str = Field(default="", max_length=1000)
    match: _Match = Field(default_factory=_Match)
    steps: list[_Step] = Field(min_length=1, max_length=20)
    max_attempts: int = Field(default=1, ge=1, le=100)
    cooldown_s: float = Field(default=300.0, ge=0, le=86_400 * 7)


class _File(_Model):
    version: Literal[1]
    playbooks: list[_Playbook] = Field(max_length=1000)


def _step(raw: _Rollback, where: str) -> PlaybookStep:
    executor = raw.executor or DEFAULT_EXECUTORS.get(raw.action)
    if executor is None:
        raise ValueError(
            f"{where}.executor: action {raw.action} has no default executor; name one "
            "(restart_process, http_webhook, shell_command, python_callable, …)"
        )
    verify = raw.verify
    if verify is None:
        kind = (
            VerifyKind.CONTROL
            if raw.action in _CONTROL_ACTIONS
            else VerifyKind.NONE
            if raw.action is HealingAction.ESCALATE_TO_HUMAN
            else VerifyKind.HEALTH
        )
        verification = Verification(kind=kind)
    else:
        if verify.kind is VerifyKind.CONTROL and executor not in (
            "circuit_breaker",
            "rate_limit",
            "quarantine_component",
        ):
            raise ValueError(
                f"{where}.verify.kind: control verification needs the circuit_breaker, "
                f"rate_limit or quarantine_component executor, not {executor!r}"
            )
        verification = Verification(**verify.model_dump())
    step = raw if isinstance(raw, _Step) else None
    rollback = None
    if step is not None and step.rollback is not None:
        rollback = _step(step.rollback, f"{where}.rollback")
    if step is not None and step.on_failure is OnFailure.ROLLBACK and rollback is None:
        raise ValueError(f"{where}.on_failure: 'rollback' needs a rollback step")
    return PlaybookStep(
        action=raw.action,
        executor=executor,
        params=dict(raw.params),
        timeout_s=raw.timeout_s,
        disruption=raw.disruption if raw.disruption is not None else DEFAULT_DISRUPTION[raw.action],
        verify=verification,
        on_success=step.on_success if step is not None else OnSuccess.STOP,
        on_failure=step.on_failure if step is not None else OnFailure.NEXT,
        rollback=rollback,
    )


class PlaybookSet:
    """Playbooks in file order; the first that matches an incident answers it."""

    def __init__(self, playbooks: Iterable[Playbook] = ()) -> None:
        self.playbooks = tuple(playbooks)
        names = [p.name for p in self.playbooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PlaybookError(f"duplicate playbook names: {', '.join(duplicates)}")
        self._by_name = {p.name: p for p in self.playbooks}

    def select(
        self, anomaly_type: AnomalyType, severity: Severity, resource: str
    ) -> Playbook | None:
        """The first playbook matching the incident, or None."""
        for playbook in self.playbooks:
            if playbook.match.matches(anomaly_type, severity, resource):
                return playbook
        return None

    def get(self, name: str) -> Playbook | None:
        """A playbook by name."""
        return self._by_name.get(name)

    def check_executors(self, known: Collection[str]) -> None:
        """Raise PlaybookError if a step names an executor that is not registered."""
        for playbook in self.playbooks:
            for i, step in enumerate(playbook.steps):
                for where, s in ((f"steps[{i}]", step), (f"steps[{i}].rollback", step.rollback)):
                    if s is not None and s.executor not in known:
                        raise PlaybookError(
                            f"{playbook.source or '<playbooks>'}: playbook {playbook.name!r}: "
                            f"{where}.executor: {s.executor!r} is not registered "
                            f"(known: {', '.join(sorted(known)) or 'none'})"
                        )

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks)

    def __len__(self) -> int:
        return len(self.playbooks)

    @classmethod
    def default(cls) -> PlaybookSet:
        """The packaged default playbooks."""
        return load_playbooks(None)


# --- loading ----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that also refuses aliases and duplicate keys (both hide mistakes)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark if isinstance(event.start_mark, yaml.error.Mark) else None
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "(top level)"


def _problem(source: str, data: Any, loc: tuple[str | int, ...], message: str) -> str:
    """``file: playbook 'name': key.path: message`` from a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "playbooks" and isinstance(loc[1], int):
        playbooks = data.get("playbooks") if isinstance(data, dict) else None
        name: Any = None
        if isinstance(playbooks, list) and loc[1] < len(playbooks):
            entry = playbooks[loc[1]]
            name = entry.get("name") if isinstance(entry, dict) else None
        label = repr(name) if isinstance(name, str) else f"#{loc[1]}"
        return f"{source}: playbook {label}: {_path(loc[2:])}: {message}"
    return f"{source}: {_path(loc)}: {message}"


def parse_playbooks(text: str, *, source: str) -> PlaybookSet:
    """Parse and validate playbook YAML; ``source`` names the file in errors."""
    try:
        loader = _StrictLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PlaybookError(f"{source}: malformed YAML{where}: {e}") from e
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: expected a mapping with 'version' and 'playbooks'")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        given = first.get("input")
        if first["type"] != "extra_forbidden" and isinstance(given, str | int | float | bool):
            message += f" (got {str(given)[:60]!r})"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise PlaybookError(_problem(source, data, tuple(first["loc"]), message) + more) from e
    playbooks: list[Playbook] = []
    for i, raw in enumerate(parsed.playbooks):
        steps: list[PlaybookStep] = []
        for j, step in enumerate(raw.steps):
            try:
                steps.append(_step(step, f"steps[{j}]"))
            except ValueError as e:
                raise PlaybookError(_problem(source, data, ("playbooks", i), str(e))) from e
        if raw.match.min_severity.rank > raw.match.max_severity.rank:
            raise PlaybookError(
                _problem(source, data, ("playbooks", i, "match"), "min_severity > max_severity")
            )
        playbooks.append(
            Playbook(
                name=raw.name,
                description=raw.description,
                match=Match(
                    types=None if raw.match.types is None else frozenset(raw.match.types),
                    min_severity=raw.match.min_severity,
                    max_severity=raw.match.max_severity,
                    resource=raw.match.resource,
                ),
                steps=tuple(steps),
                max_attempts=raw.max_attempts,
                cooldown_s=raw.cooldown_s,
                source=source,
            )
        )
    try:
        return PlaybookSet(playbooks)
    except PlaybookError as e:
        raise PlaybookError(f"{source}: {e}") from e


def load_playbooks(path: Path | None = None) -> PlaybookSet:
    """Load playbooks from ``path``, or the packaged defaults when ``path`` is None."""
    if path is None:
        resource = importlib.resources.files("grace.immune") / DEFAULT_PLAYBOOKS_NAME
        return parse_playbooks(resource.read_text(encoding="utf-8"), source=str(resource))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise PlaybookError(f"{path}: cannot read playbooks: {e.strerror or e}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise PlaybookError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlaybookError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from e
    return parse_playbooks(text, source=str(path))
