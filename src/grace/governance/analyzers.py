"""Content analyzers: facts about what a request *contains*, found server-side.

:func:`analyze` walks the whole request (dict keys and values, lists, strings; numbers,
booleans and ``None`` only count next to an audit switch) and returns :class:`Finding`
values: the kind (the name the constitution tests in ``context.findings``), the safety
principle, a severity, the JSON path of the string, a redacted excerpt and a stable rule
id (all ids: :data:`RULE_IDS`).

Invariants:

* **Fail closed.** Content that was not inspected is itself a finding: more than
  ``max_chars`` characters, containers nested deeper than ``max_depth``, more than
  ``max_values`` values, or a value of an unknown type each yield one
  ``analysis_incomplete`` finding of severity high. The gate must treat that kind as a
  denial: what could not be inspected has not been shown harmless. :func:`analyze` does
  not raise on JSON-like input.
* **Evidence never carries a secret.** Secret rules show a masked token
  (``AKIA************WXYZ``), a PEM header, or ``password: ********``; every other excerpt
  is scrubbed of credentials and long random tokens, and clipped. Path segments that look
  like secrets are masked as well.
* **Linear time.** No pattern nests quantifiers over the same characters. Patterns that
  read "the rest of a shell command" match greedily up to a separator and leave the
  judgement to a Python check, so overlapping attempts cannot go quadratic.
* **Cheap when clean.** All strings are joined once; the words of that text (punctuation
  and quotes removed) select the few probes whose trigger words occur; each probe's regex
  leads with a literal so ``re`` can skip ahead. A probe's matches in the joined text are
  mapped back to their strings, and only those strings are checked again, for the paths.
  Most requests never reach the walk at all: their orjson serialisation, quotes turned
  into newlines, *is* the joined text (:func:`_clean_json` says when that holds), and a
  clean verdict there is final. Property tests pin both shortcuts to the string-by-string
  result.

Shell text is matched after normalisation: lowercased; quotes, backticks and backslash
escapes removed; ``${IFS}`` read as a space; argv lists also read joined. So
``r"m" -r -f /`` and ``["rm", "-rf", "/"]`` are both ``rm -rf /``. Encoded content
(base64 blobs and runs, ``\\x``/``\\u``/octal escapes) is decoded, a bounded prefix, and
scanned again, two levels deep.

Known limits (by design, to stay precise): SQL ``DELETE`` is recognised in upper or lower
case, not mixed; a command split across several fields (``{"cmd": "rm", "args": [...]}``)
is only read joined when it is one argv list.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as _dt
import decimal
import functools
import ipaddress
import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from pathlib import PurePath
from types import MappingProxyType
from typing import Final, TypeAlias

import orjson

from grace.governance.constitution import Principle, Severity

__all__ = [
    "DEFAULT_LIMITS",
    "PRINCIPLES",
    "RULE_IDS",
    "AnalyzerLimits",
    "Finding",
    "FindingKind",
    "Severity",
    "analyze",
]


class FindingKind(StrEnum):
    """What was found; the value is the name the constitution tests in ``context.findings``."""

    DESTRUCTIVE_COMMAND = "destructive_command"
    SECRET_EXPOSURE = "secret_exposure"  # noqa: S105 - a finding's name, not a secret
    PRIVILEGE_ESCALATION = "privilege_escalation"
    CODE_OBFUSCATION = "code_obfuscation"
    DATA_EXFILTRATION = "data_exfiltration"
    UNAUTHORIZED_NETWORK = "unauthorized_network"
    SELF_MODIFICATION = "self_modification"
    """Changes governance, policies, the ledger or verification."""
    DISABLES_AUDIT = "disables_audit"
    """Disables, deletes or bypasses the audit ledger."""
    MALWARE = "malware"
    ANALYSIS_INCOMPLETE = "analysis_incomplete"
    """Part of the request was not inspected (a limit, an unknown type): deny."""


PRINCIPLES: Final[Mapping[FindingKind, Principle]] = MappingProxyType(
    {
        FindingKind.DESTRUCTIVE_COMMAND: Principle.NO_DESTRUCTIVE_COMMANDS,
        FindingKind.SECRET_EXPOSURE: Principle.NO_SENSITIVE_DATA_EXPOSURE,
        FindingKind.PRIVILEGE_ESCALATION: Principle.NO_PRIVILEGE_ESCALATION,
        FindingKind.CODE_OBFUSCATION: Principle.NO_CODE_OBFUSCATION,
        FindingKind.DATA_EXFILTRATION: Principle.NO_DATA_EXFILTRATION,
        FindingKind.UNAUTHORIZED_NETWORK: Principle.NO_UNAUTHORIZED_NETWORK_ACCESS,
        FindingKind.SELF_MODIFICATION: Principle.NO_SELF_MODIFICATION_WITHOUT_APPROVAL,
        FindingKind.DISABLES_AUDIT: Principle.ACCOUNTABILITY,
        FindingKind.MALWARE: Principle.NO_MALWARE_GENERATION,
        # No safety principle says "uninspected"; what was not inspected is not shown
        # harmless, so it answers to "do no harm".
        FindingKind.ANALYSIS_INCOMPLETE: Principle.BENEFICENCE,
    }
)
"""The constitutional principle each kind of finding violates."""

_MAX_EVIDENCE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing found in a request: what, where and why, never the secret itself."""

    kind: FindingKind
    principle: Principle
    severity: Severity
    path: str
    """JSON path of the string, e.g. ``request.context.steps[2].cmd``; ``#key``: the key."""
    evidence: str
    """A short, redacted excerpt."""
    rule: str
    """Stable rule id, e.g. ``destructive.rm_recursive_root`` (see :data:`RULE_IDS`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FindingKind) or not isinstance(self.severity, Severity):
            raise TypeError("kind and severity must be FindingKind and Severity members")
        if self.principle is not PRINCIPLES[self.kind]:
            raise ValueError(f"a {self.kind} finding protects {PRINCIPLES[self.kind]}")
        if not self.path or not self.rule or len(self.evidence) > _MAX_EVIDENCE:
            raise ValueError("a finding needs a path, a rule id and evidence of ≤ 200 chars")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzerLimits:
    """Bounds of one analysis; content beyond them is reported, never silently skipped."""

    max_chars: int = 1 << 20
    """Characters of strings (keys included) scanned per request: 1 MiB."""
    max_depth: int = 64
    """Nesting of containers inspected."""
    max_values: int = 100_000
    """Values (keys, strings, numbers, containers) visited."""
    max_decoded_chars: int = 4096
    """Characters of one encoded payload decoded and scanned again."""
    max_decodes: int = 64
    """Encoded payloads decoded per request."""

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_depth", "max_values", "max_decoded_chars", "max_decodes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"AnalyzerLimits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = AnalyzerLimits()

# --------------------------------------------------------------------------------------
# Probes: a trigger, a regex over one form of the text, and a check that writes evidence.

_Check: TypeAlias = Callable[[re.Match[str], str], str | None]
"""``(match, original) -> evidence``, or ``None`` to reject the match. ``original`` is the
text before lowercasing at the same offsets, where there is one; else the matched text."""


class _Text(IntEnum):
    RAW = 0  # as given: case-sensitive secrets
    LOWER = 1  # lowercased, same offsets
    SHELL = 2  # lowercased, quotes and escapes removed: offsets differ


@dataclass(frozen=True, slots=True)
class _Probe:
    words: frozenset[str]  # trigger words (lowercase alphanumerics); empty: always run
    text: _Text
    pattern: re.Pattern[str]
    check: _Check


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    kind: FindingKind
    severity: Severity
    probes: tuple[_Probe, ...] = ()


_SEG = r"[^;&|\n)]*"  # the rest of one simple command
_PIPE = r"[^;&\n)]*"  # the rest of one pipeline


def _names(text: str) -> frozenset[str]:
    """A set of the whitespace-separated names in ``text``."""
    return frozenset(text.split())


def _lit(word: str, before: str = r"\w.-") -> str:
    """``word`` at a word start, still leading with a literal (``re`` skips ahead to it)."""
    w = re.escape(word)
    return f"{w}(?<![{before}]{w})"


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mask(token: str, keep: int = 4) -> str:
    """``AKIA************WXYZ``: a known prefix, at most 12 stars, the last four."""
    hidden = len(token) - keep - 4
    if hidden < 4:
        return token[: min(keep, len(token) // 2)] + "****"
    return token[:keep] + "*" * min(hidden, 12) + token[-4:]


_SCRUB_URL = re.compile(r"(://[^\s:/@]{0,64}):[^\s/@]{1,256}@")
_SCRUB_ASSIGN = re.compile(
    r"((?:password|passwd|passphrase|secret|token|api[_-]?key|authorization)[\"']?\s*[:=]\s*"
    r"[\"']?(?:bearer\s+|basic\s+)?)[^\s\"',;&]+",
    re.I,
)
_SCRUB_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.I)
_SCRUB_TOKEN = re.compile(r"[A-Za-z0-9+/=_~-]{20,}")


def _mask_token(m: re.Match[str]) -> str:
    token = m.group(0)
    digits = sum(c.isdigit() for c in token)
    if token[0] == "/" or digits < 2 or len(token) - digits < 2:
        return token
    return _mask(token)


def _scrub(text: str) -> str:
    """Mask credentials and long random-looking tokens in an excerpt."""
    text = _SCRUB_URL.sub(r"\1:****@", text)
    text = _SCRUB_ASSIGN.sub(r"\1****", text)
    text = _SCRUB_BEARER.sub(r"\1****", text)
    return _SCRUB_TOKEN.sub(_mask_token, text)


def _excerpt(m: re.Match[str], _original: str = "") -> str:
    return _clip(_scrub(m.group(0)[:400]))


def _probe(pattern: str, words: str, text: _Text, check: _Check, flags: int = 0) -> _Probe:
    return _Probe(frozenset(words.split()), text, re.compile(pattern, flags), check)


def _sh(pattern: str, words: str, check: _Check = _excerpt) -> _Probe:
    """A probe over shell-normalised text."""
    return _probe(pattern, words, _Text.SHELL, check)


def _lo(pattern: str, words: str, check: _Check = _excerpt) -> _Probe:
    """A probe over lowercased text."""
    return _probe(pattern, words, _Text.LOWER, check)


def _raw(pattern: str, words: str = "", check: _Check = _excerpt, flags: int = 0) -> _Probe:
    """A probe over the text as given."""
    return _probe(pattern, words, _Text.RAW, check, flags)


def _cmd(word: str, rest: str = r"\s" + _SEG, check: _Check = _excerpt) -> _Probe:
    """The shell command ``word`` followed by ``rest``, triggered by its own words."""
    return _sh(_lit(word) + rest, " ".join(re.findall(r"[a-z0-9]+", word)), check)


def _when(predicate: Callable[[list[str]], bool]) -> _Check:
    """A check on the matched command's whitespace-separated words."""

    def check(m: re.Match[str], _original: str) -> str | None:
        return _excerpt(m) if predicate(m.group(0).split()) else None

    return check


def _near(pattern: str, before: int, after: int) -> _Check:
    """A check that ``pattern`` occurs close to the match, in the same string."""
    near = re.compile(pattern)

    def check(m: re.Match[str], _original: str) -> str | None:
        window = m.string[max(0, m.start() - before) : m.end() + after]
        return _excerpt(m) if near.search(window) else None

    return check


# --- shell helpers --------------------------------------------------------------------

_SYSTEM_DIRS: Final = _names(
    "/bin /boot /dev /etc /home /lib /lib32 /lib64 /media /mnt /opt /proc /root /run /sbin "
    "/srv /sys /usr /var /usr/bin /usr/lib /usr/local /usr/sbin /var/lib /var/log"
)
_HOMES: Final = frozenset({"~", "$home", "${home}", "~root"})
_DRIVE = re.compile(r"[a-z]:\\?\*?")


def _critical_path(arg: str) -> bool:
    """``/``, ``/*``, ``~``, ``$HOME``, a top-level system directory."""
    arg = arg.rstrip(",;]")
    if arg.endswith("}") and "{" not in arg:
        arg = arg[:-1]
    a = arg.rstrip("*").rstrip("/")
    if not a:
        return arg.startswith("/")
    return a in _HOMES or a in _SYSTEM_DIRS


def _short_flags(args: Iterable[str]) -> str:
    return "".join(a[1:] for a in args if a.startswith("-") and not a.startswith("--"))


def _recursive_on_critical(args: list[str]) -> bool:
    rest = args[1:]
    if "--no-preserve-root" in rest:
        return True
    recursive = "--recursive" in rest or "r" in _short_flags(rest)
    return recursive and any(not a.startswith("-") and _critical_path(a) for a in rest)


def _find_delete(args: list[str]) -> bool:
    targets = [a for a in args[1:] if not a.startswith("-")]
    deletes = "-delete" in args or ("-exec" in args and "rm" in args)
    return deletes and bool(targets) and _critical_path(targets[0])


_DISK = re.compile(r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|mapper/)")


_PROTECTED_BRANCHES: Final = frozenset({"main", "master", "production", "prod", "release", "trunk"})


def _git_force_push_protected(args: list[str]) -> bool:
    if "push" not in args:
        return False
    rest = args[args.index("push") + 1 :]
    force = any(a.startswith(("--force", "+")) for a in rest) or "f" in _short_flags(rest)
    branches = {a.lstrip("+").rsplit(":", 1)[-1].rsplit("/", 1)[-1] for a in rest}
    every = "--all" in rest or "--mirror" in rest
    return force and (every or not branches.isdisjoint(_PROTECTED_BRANCHES))


_K8S_WIDE: Final = _names(
    "ns namespace namespaces node nodes pv crd crds clusterrole clusterrolebinding "
    "--all --all-namespaces"
)


def _removes_drive(args: list[str]) -> bool:
    return "-recurse" in args and any(_DRIVE.fullmatch(a) or _critical_path(a) for a in args)


_INTERPRETERS: Final = _names(
    "sh bash zsh ksh dash ash fish csh tcsh python python2 python3 perl ruby node php "
    "iex invoke-expression powershell pwsh source"
)
_WRAPPERS: Final = frozenset({"sudo", "doas", "env", "exec", "nohup", "time", "command"})


def _command(stage: str) -> str:
    """The program a pipeline stage runs (after sudo/env wrappers and assignments)."""
    for word in stage.split():
        if word in _WRAPPERS or word.startswith("-") or ("=" in word and word[0] != "="):
            continue
        return word.rsplit("/", 1)[-1].rstrip("0123456789.")
    return ""


def _pipes_to_interpreter(m: re.Match[str], _original: str) -> str | None:
    stages = m.group(0).split("||", 1)[0].split("|")
    if len(stages) > 1 and any(_command(s) in _INTERPRETERS for s in stages[1:]):
        return _excerpt(m)
    return None


def _decodes_to_interpreter(m: re.Match[str], original: str) -> str | None:
    first = m.group(0).split("|", 1)[0].split()
    decoding = "--decode" in first or not {"d", "r"}.isdisjoint(_short_flags(first[1:]))
    return _pipes_to_interpreter(m, original) if decoding else None


_RUNS_SUBSTITUTION = re.compile(r"(?:\b(?:ba|z|k|da)?sh|\beval|\bpython\d?)\s+(?:-c\s+)?$")


def _run_by_shell(m: re.Match[str], _original: str) -> str | None:
    before = m.string[max(0, m.start() - 24) : m.start()]
    return _excerpt(m) if _RUNS_SUBSTITUTION.search(before) else None


_LEADS: Final = _names("env exec nohup time command xargs nice then do else ! -c")


def _command_start(m: re.Match[str], _original: str) -> str | None:
    """Accept a command word only where a command starts (not ``-aG sudo``, not prose)."""
    before = m.string[max(0, m.start() - 200) : m.start()].rstrip(" \t")
    if not before or before[-1] in ";&|({[,:=\n$`!" or before.split()[-1] in _LEADS:
        return _excerpt(m)
    return None


_SENSITIVE = re.compile(
    r"/etc/(?:passwd|shadow|gshadow|sudoers|master\.passwd)\b|\.ssh/|(?<![\w-])id_(?:rsa|dsa"
    r"|ecdsa|ed25519)\b|(?<![\w.-])\.env\b|\.aws/(?:credentials|config)\b|\.kube/config\b"
    r"|\.netrc\b|\.git-credentials\b|\.npmrc\b|\.pypirc\b|\.docker/config\.json|\.(?:bash"
    r"|zsh)_history\b|/proc/(?:self|\d+)/environ\b|\bledger\.key\b|\.gnupg/|/etc/ssl/private"
)
_NET_TOOLS: Final = _names(
    "curl wget nc ncat netcat socat telnet ftp sftp tftp scp rsync ssh openssl "
    "invoke-webrequest iwr invoke-restmethod irm"
)
_IDENTITY = re.compile(r"(?:^|\s)-i\s*\S+|identityfile=\S+")
_SEPARATOR = re.compile(r";|\n|\(|&&|(?<![<>&])&(?![>&])")
_LOOK_BACK = 400


def _pipeline_before(text: str, pos: int) -> str:
    """The part of the pipeline before ``pos`` (``2>&1`` does not end a pipeline)."""
    start = max(0, pos - _LOOK_BACK)
    for m in _SEPARATOR.finditer(text, start, pos):
        start = m.end()
    return text[start:pos]


def _exfiltrates(m: re.Match[str], _original: str) -> str | None:
    """A secret-bearing file or the environment flows into a network tool."""
    pipeline = _pipeline_before(m.string, m.start()) + m.group(0)
    source = None
    for index, stage in enumerate(pipeline.split("||", 1)[0].split("|")):
        cmd = _command(stage)
        clean = _IDENTITY.sub(" ", stage) if cmd in ("ssh", "scp", "rsync", "sftp") else stage
        if source is None and (_SENSITIVE.search(clean) or cmd in ("env", "printenv")):
            source = index
        if cmd in _NET_TOOLS and source is not None:
            return _clip(_scrub(pipeline[:400]))
    return None


def _remote_copy(args: list[str]) -> bool:
    targets = [a for a in args[1:] if not a.startswith("-")]
    return len(targets) >= 2 and re.match(r"(?:[\w.-]+@)?[\w.-]+:", targets[-1]) is not None


def _shell_on_socket(args: list[str]) -> bool:
    rest = args[1:]
    named = {"--exec", "--sh-exec", "--lua-exec"}
    return not named.isdisjoint(rest) or not {"e", "c"}.isdisjoint(_short_flags(rest))


_INTERACTIVE_SHELL = re.compile(r"(?:^|[\s/])(?:ba|z|k|da)?sh\s+-i\b")


def _socket_shell(m: re.Match[str], original: str) -> str | None:
    before = _pipeline_before(m.string, m.start())
    if "|" in before and _INTERACTIVE_SHELL.search(before):
        return _clip(_scrub(before + m.group(0)))
    return _when(_shell_on_socket)(m, original)


def _ssh_forwards(args: list[str]) -> bool:
    """``-R``/``-D`` before the destination (ssh has no ``-r``/``-d``, so lowercase is safe)."""
    flags, after_flag = "", False
    for a in args[1:]:
        if a.startswith("-"):
            flags, after_flag = flags + a[1:], True
        elif after_flag:
            after_flag = False  # the flag's value
        else:
            break
    return not {"r", "d"}.isdisjoint(flags)


def _admin_group(args: list[str]) -> bool:
    groups = any(a in ("-g", "-ag", "-ga", "--groups", "--append") for a in args)
    return groups and any(re.search(r"\b(?:sudo|wheel|admin|root|docker)\b", a) for a in args[2:])


def _encoded_command(args: list[str]) -> bool:
    return any(
        re.fullmatch(r"[-/](?:e|ec|en|enc|enco|encod|encode|encoded|encodedc\w*)", a) for a in args
    )


def _compile_exec(m: re.Match[str], _original: str) -> str | None:
    return _excerpt(m) if re.search(r"[\"'](?:exec|eval|single)[\"']\s*$", m.group(0)) else None


def _touches_ledger(args: list[str]) -> bool:
    return any("ledger.db" in a or "ledger.key" in a or ".grace/" in a for a in args[1:])


# --- secret helpers ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"[*x•.…_-]*|<[^>]*>|\[[^\]]*\]|\{\{.*\}\}|\$\{[^}]*\}|\$\w+|%\(?\w*\)?s|null|none|nil"
    r"|undefined|true|false|redacted|masked|hidden|secret|password|passwd|pass|changeme|example"
    r"|placeholder|todo|tbd|your[\w-]*|my[_-]?(?:pass\w*|secret\w*|token\w*|key\w*|pwd)"
    r"|(?:env|getenv|os\.environ|process\.env)\b.*|[a-z_]\w*(?:\.[a-z_]\w*)+"
    r"|(?-i:[A-Z][A-Z0-9_]*)",
    re.I | re.S,
)


def _placeholder(value: str) -> bool:
    v = value.strip().strip("\"'")
    return not v or _PLACEHOLDER.fullmatch(v) is not None or "example" in v.lower()


def _strong(value: str) -> bool:
    """A value that reads like a credential rather than a word or a placeholder."""
    if len(value) < 6 or _placeholder(value):
        return False
    if len(value) >= 16 or any(c.isdigit() or not c.isalnum() for c in value):
        return True
    return value.lower() != value and value.upper() != value and not value.istitle()


def _token(keep: int, *, glued: str = "") -> _Check:
    """Mask a token; reject it when glued to a letter, a digit or a character of ``glued``."""

    def check(m: re.Match[str], _original: str) -> str | None:
        before = m.string[m.start() - 1] if m.start() else " "
        return None if before.isalnum() or before in glued else _mask(m.group(0), keep)

    return check


def _aws_key_id(m: re.Match[str], original: str) -> str | None:
    return None if "EXAMPLE" in m.group(0) else _token(4)(m, original)


def _original(m: re.Match[str], original: str, group: int = 0) -> str:
    text = original if len(original) == len(m.string) else m.string
    return text[m.start(group) : m.end(group)]


def _pem(m: re.Match[str], original: str) -> str:
    return _clip(_original(m, original)) + " …"


_NOT_SECRET_KEYS = re.compile(
    r"page|next|continuation|cursor|sync|resume|max|num|total|csrf|xsrf|idempot|count|length"
)


def _assignment(m: re.Match[str], original: str) -> str | None:
    start = m.start()
    while start and (m.string[start - 1].isalnum() or m.string[start - 1] in "_-."):
        start -= 1
    key = re.split(r"[\"'\s:=]", m.string[start : m.start(1)], maxsplit=1)[0]
    if _NOT_SECRET_KEYS.search(key) or not _strong(_original(m, original, 1)):
        return None
    return f"{_clip(key, 40)}: ********"


def _aws_secret(m: re.Match[str], original: str) -> str | None:
    value = _original(m, original, 1)
    return None if _placeholder(value) or len(set(value)) < 8 else "aws_secret_access_key: ****"


def _bearer(m: re.Match[str], original: str) -> str | None:
    if _placeholder(_original(m, original, 1)):
        return None
    return "authorization: ********" if m.group(0).startswith("auth") else "bearer ********"


def _url_credentials(m: re.Match[str], _original: str) -> str | None:
    start = m.start()
    while start and (m.string[start - 1].isalnum() or m.string[start - 1] in "+.-"):
        start -= 1
    scheme, user, password = m.string[start : m.start()], m.group(1), m.group(2)
    if not scheme or _placeholder(password):
        return None
    return f"{scheme}://{user if len(user) <= 16 else _mask(user)}:****@"


def _path_word(m: re.Match[str], _original: str) -> str:
    """The match widened left to the whole path it ends (``policies/base.cedar``)."""
    start = m.start()
    while start > m.start() - 60 and start and m.string[start - 1] not in " \t\n\"'=:,;([{<>|&":
        start -= 1
    return _clip(_scrub(m.string[start : m.end()]))


_OFF = r"[\"']?\s*[:=]\s*[\"']?(?:false|off|0|no|disabled?|none)\b"
_AUTH_TARGETS = (
    r"(?:authentication|authorization|authn|authz|auth|login|2fa|mfa|sso|access\s+controls?"
    r"|permission\s+checks?|rbac|security\s+checks?)\b"
)
_SQL_SP = r"(?:\s|/\*[^*]*\*/)+"  # whitespace, or a comment as whitespace

# --------------------------------------------------------------------------------------
# The rules: a table (hand-aligned; one probe or two per line).

_D = FindingKind.DESTRUCTIVE_COMMAND
_S = FindingKind.SECRET_EXPOSURE
_P = FindingKind.PRIVILEGE_ESCALATION
_O = FindingKind.CODE_OBFUSCATION
_X = FindingKind.DATA_EXFILTRATION
_N = FindingKind.UNAUTHORIZED_NETWORK
_M = FindingKind.SELF_MODIFICATION
_A = FindingKind.DISABLES_AUDIT
_W = FindingKind.MALWARE
_I = FindingKind.ANALYSIS_INCOMPLETE
_MEDIUM, _HIGH, _CRITICAL = Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL


def _rule(rule_id: str, kind: FindingKind, severity: Severity, *probes: _Probe) -> _Rule:
    return _Rule(rule_id, kind, severity, probes)


def _has(*words: str) -> Callable[[list[str]], bool]:
    """All of ``words`` are among the command's words."""
    return lambda args: all(w in args for w in words)


_EVAL = r"\s*\(\s*(?:[rbfu]{0,2}[\"'`]|[\w.\[\]]+\s*[)(\[.,+%])"  # eval(<code, not prose>
_ASSIGN = r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;&{}()\[\]<>]{1,200})"  # key = <value>
_DECODE_NEAR = _near(
    r"(?<![\w.])(?:eval|exec|function)\s*\(|\biex\b|invoke-expression|subprocess|os\.system"
    r"|popen",
    200,
    200,
)
_REMOTE_SCRIPT = (
    _cmd("curl", r"\s" + _PIPE, _pipes_to_interpreter),
    _cmd("wget", r"\s" + _PIPE, _pipes_to_interpreter),
    _sh(r"<\s*\(\s*(?:curl|wget)\s", "curl wget"),
    _sh(r"\$\(\s*(?:curl|wget)\s", "curl wget", _run_by_shell),
    *(
        _cmd(c, r"\s" + _PIPE, _pipes_to_interpreter)
        for c in ("iwr", "irm", "invoke-webrequest", "invoke-restmethod")
    ),
    _lo(r"downloadstring\s*\(", "downloadstring", _near(r"\biex\b|invoke-expression", 200, 200)),
)
_NET_HEADS = (
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "telnet",
    "ftp",
    "sftp",
    "scp",
    "rsync",
    "ssh",
    "openssl",
    "iwr",
    "irm",
)
_PASTE_SITES = (
    ("pastebin.com", "pastebin"),
    ("paste.ee", "paste"),
    ("hastebin", "hastebin"),
    ("ghostbin", "ghostbin"),
    ("termbin.com", "termbin"),
    ("transfer.sh", "transfer"),
    ("0x0.st", "0x0"),
    ("webhook.site", "webhook"),
    ("requestbin", "requestbin"),
    ("pipedream.net", "pipedream"),
    (".oast.", "oast"),
    ("interact.sh", "interact"),
    ("burpcollaborator.net", "burpcollaborator"),
    ("dnslog.cn", "dnslog"),
    ("requestcatcher.com", "requestcatcher"),
)
_METADATA = (
    ("169.254.169.254", "169"),
    ("169.254.170.2", "170"),
    ("fd00:ec2::254", "fd00"),
    ("metadata.google.internal", "metadata"),
    ("100.100.100.200", "200"),
    ("2852039166", "2852039166"),
    ("0xa9fea9fe", "0xa9fea9fe"),
)
_TUNNEL_SITES = (
    ("ngrok.io", "ngrok"),
    ("ngrok-free.app", "ngrok"),
    ("serveo.net", "serveo"),
    ("trycloudflare.com", "trycloudflare"),
)
_MINERS = (
    "xmrig",
    "minerd",
    "cpuminer",
    "cgminer",
    "bfgminer",
    "ethminer",
    "nbminer",
    "phoenixminer",
    "coinhive",
    "cryptonight",
)
_POOLS = ("nicehash.com", "minexmr.com", "supportxmr.com", "hashvault.pro")
_OFFENSIVE = (
    "mimikatz",
    "meterpreter",
    "msfvenom",
    "msfconsole",
    "cobaltstrike",
    "lazagne",
    "rubeus",
)
_DISABLE = "disable disables disabled disabling"
_END = r"(?![a-z0-9])"  # a word ends
_DISABL = _lit("disabl") + r"(?:e|es|ed|ing)"

# fmt: off
_RULES: Final[tuple[_Rule, ...]] = (
    # ---- destructive commands ------------------------------------------------------
    _rule("destructive.rm_recursive_root", _D, _CRITICAL,
          _cmd("rm", check=_when(_recursive_on_critical))),
    _rule("destructive.find_delete_root", _D, _HIGH, _cmd("find", check=_when(_find_delete))),
    _rule("destructive.disk_format", _D, _CRITICAL,
          _cmd("mkfs", r"(?:\.\w+)?\s+\S" + _SEG), _cmd("mke2fs", r"\s+\S" + _SEG),
          _cmd("wipefs", check=_when(lambda a: "-a" in a or "--all" in a)),
          _cmd("format", r"\s+[a-z]:(?:\s|$|/)"),
          _cmd("diskpart", r"\b" + _SEG, _when(_has("clean")))),
    _rule("destructive.disk_overwrite", _D, _CRITICAL,
          _cmd("dd", check=_when(lambda a: any(x.startswith("of=") and _DISK.match(x[3:])
                                                for x in a))),
          _sh(r">\s*/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d)", "dev"),
          _cmd("shred", check=_when(lambda a: any(_DISK.match(x) for x in a)))),
    _rule("destructive.sql_drop", _D, _CRITICAL,
          _cmd("drop", _SQL_SP + r"(?:database|table|schema|keyspace|collection)\b"),
          _cmd("dropdb", r"\s+\S" + _SEG), _lo(r"\.dropdatabase\s*\(", "dropdatabase")),
    _rule("destructive.sql_truncate", _D, _HIGH,
          _cmd("truncate", _SQL_SP + r"(?:table" + _SQL_SP + r"\S|[\w.]+\s*;)")),
    _rule("destructive.sql_delete_all", _D, _HIGH, *(
          _raw(f"{d}{_SQL_SP}{f}{_SQL_SP}" r"[\w.\"`\[\]]+(?:\s*;|\s*$|"
               f"{_SQL_SP}{w}{_SQL_SP}" r"(?:1\s*=\s*1|true|TRUE|'1'\s*=\s*'1')\s*(?:;|$))",
               "delete", flags=re.M)
          for d, f, w in (("DELETE", "FROM", "WHERE"), ("delete", "from", "where")))),
    _rule("destructive.git_reset_hard", _D, _HIGH,
          _cmd("git", check=_when(_has("reset", "--hard")))),
    _rule("destructive.git_force_push", _D, _HIGH,
          _cmd("git", check=_when(_git_force_push_protected))),
    _rule("destructive.power_off", _D, _HIGH,
          _cmd("shutdown", r"\s+(?:-[a-z]+|now\b|\+?\d+\b|/[srpf]\b)"),
          _cmd("systemctl", r"\s+(?:reboot|halt|poweroff|kexec)\b"),
          _cmd("sudo", r"\s+(?:-\S+\s+)*(?:reboot|halt|poweroff|init\s+[06])\b"),
          _sh(r"[;&|]\s*(?:reboot|halt|poweroff)\b", "reboot halt poweroff"),
          _sh(r"(?:reboot|halt|poweroff)\s+(?:-[a-z-]+|now)\b", "reboot halt poweroff"),
          _cmd("init", r"\s+[06]\s*(?:$|[;&|)])"),
          _lo(r"(?:stop|restart)-computer\b", "computer")),
    _rule("destructive.fork_bomb", _D, _CRITICAL, _raw(r"\(\s*\)\s*\{\s*([\w:.]+)\s*\|\s*\1\s*&")),
    _rule("destructive.recursive_permissions_root", _D, _HIGH,
          *(_cmd(c, check=_when(_recursive_on_critical)) for c in ("chmod", "chown", "chgrp"))),
    _rule("destructive.kubernetes_delete", _D, _HIGH,
          *(_cmd(c, check=_when(lambda a: "delete" in a and not _K8S_WIDE.isdisjoint(a)))
            for c in ("kubectl", "oc"))),
    _rule("destructive.infrastructure_destroy", _D, _HIGH,
          *(_cmd(c, check=_when(lambda a: "destroy" in a or "-destroy" in a))
            for c in ("terraform", "tofu")),
          _cmd("pulumi", r"\s+destroy\b"),
          _cmd("aws", r"\s+s3\s+(?:rm|rb)\s" + _SEG,
               _when(lambda a: "--recursive" in a or "--force" in a)),
          _cmd("gsutil", check=_when(lambda a: "rm" in a and "r" in _short_flags(a))),
          _cmd("gcloud", r"\s+projects\s+delete\b"), _cmd("az", r"\s+group\s+delete\b")),
    _rule("destructive.windows_wipe", _D, _CRITICAL,
          *(_cmd(c, check=_when(lambda a: any(_DRIVE.fullmatch(x) for x in a[1:])))
            for c in ("rd", "rmdir", "del")),
          _cmd("remove-item", check=_when(_removes_drive))),
    # ---- secrets ------------------------------------------------------------------------
    _rule("secret.private_key", _S, _CRITICAL,
          _lo(r"-----\s*begin\s+(?:[a-z0-9]+\s+){0,3}private\s+key(?:\s+block)?\s*-----",
              "private", _pem),
          _lo(r"putty-user-key-file-\d+:", "putty", _pem)),
    _rule("secret.aws_access_key", _S, _CRITICAL,
          _raw(r"A[KS]IA[A-Z2-7]{16}(?![A-Za-z0-9])", check=_aws_key_id)),
    _rule("secret.aws_secret_key", _S, _CRITICAL,
          _lo(r"aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?([a-z0-9/+]{40})"
              r"(?![a-z0-9/+])", "aws", _aws_secret)),
    _rule("secret.github_token", _S, _CRITICAL,
          _raw(r"gh[pousr]_[A-Za-z0-9]{36,}", "ghp gho ghu ghs ghr", _token(4)),
          _raw(r"github_pat_[A-Za-z0-9_]{22,}", "github", _token(11))),
    _rule("secret.slack_token", _S, _CRITICAL,
          _raw(r"xox[baprse]-[A-Za-z0-9-]{10,}", "xoxb xoxa xoxp xoxr xoxs xoxe", _token(5)),
          _raw(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]{8,}",
               "hooks", _token(26))),
    _rule("secret.google_api_key", _S, _CRITICAL,
          _raw(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", check=_token(4, glued="_-"))),
    _rule("secret.stripe_key", _S, _CRITICAL,
          _raw(r"[sr]k_live_[0-9A-Za-z]{16,}", "sk rk", _token(8))),
    _rule("secret.vendor_token", _S, _CRITICAL,
          _raw(r"glpat-[A-Za-z0-9_-]{20,}", "glpat", _token(6)),
          _raw(r"npm_[A-Za-z0-9]{36}", "npm", _token(4)),
          _raw(r"hf_[A-Za-z]{30,}", "hf", _token(3)),
          _raw(r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}", "sk", _token(3, glued="-_")),
          _raw(r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", "pypi", _token(5)),
          _raw(r"shpat_[a-fA-F0-9]{32}", "shpat", _token(6))),
    _rule("secret.jwt", _S, _HIGH,
          _raw(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", check=_token(4))),
    _rule("secret.bearer_credential", _S, _HIGH,
          _lo(r"authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot|digest)\s+"
              r"([a-z0-9._~+/=-]{8,})", "authorization", _bearer),
          _lo(_lit("bearer") + r"\s+([a-z0-9._~+/-]{20,}=*)", "bearer", _bearer)),
    _rule("secret.credential_assignment", _S, _HIGH, *(
          _lo(_lit(word, "a-z0-9") + _ASSIGN, trigger, _assignment)
          for word, trigger in (("password", "password"), ("passwd", "passwd"),
                                ("passphrase", "passphrase"), ("secret", "secret"),
                                ("api_key", "api"), ("api-key", "api"), ("apikey", "apikey"),
                                ("token", "token"), ("private_key", "private")))),
    _rule("secret.connection_string", _S, _CRITICAL,
          _raw(r"://([^\s:/@\"'<>]{0,128}):([^\s/@\"'<>]{1,256})@(?=[\w.\[-])",
               check=_url_credentials)),
    _rule("secret.named_field", _S, _HIGH),  # structural: a password/token/api_key field
    # ---- privilege escalation -------------------------------------------------------
    _rule("privilege.sudo", _P, _HIGH,
          *(_cmd(c, r"\s+\S" + _SEG, _command_start) for c in ("sudo", "doas", "pkexec")),
          _cmd("runas", r"\s+/user:" + _SEG, _command_start)),
    _rule("privilege.switch_user", _P, _HIGH,
          _cmd("su", r"(?:\s+-[a-z]?(?=\s|$)|\s+--login\b|\s+root\b)", _command_start)),
    _rule("privilege.setuid", _P, _HIGH,
          _cmd("chmod", r"\s+(?:-\S+\s+)*(?:[ugoa]*[+=][rwxt]*s|0?[2467][0-7]{3}\b)"),
          _lo(r"set(?:e|re|res)?[ug]id\s*\(\s*0\s*[,)]",
              "setuid seteuid setreuid setresuid setgid setegid setregid setresgid"),
          _cmd("setcap", check=_when(lambda a: any("cap_setuid" in x or "cap_sys_admin" in x
                                                    for x in a)))),
    _rule("privilege.chown_root", _P, _MEDIUM,
          _cmd("chown", r"\s+(?:-\S+\s+)*root(?::\w*)?(?:\s|$)")),
    _rule("privilege.admin_group", _P, _HIGH,
          _cmd("usermod", check=_when(_admin_group)),
          _cmd("gpasswd", r"\s+-a\s+\S+\s+(?:sudo|wheel|admin|docker)\b"),
          _cmd("adduser", r"\s+\S+\s+(?:sudo|wheel|admin)\b"),
          _cmd("useradd", check=_when(lambda a: "-o" in a or "--non-unique" in a)),
          _lo(r"net\s+localgroup\s+administrators\s+\S+\s+/add\b", "localgroup")),
    _rule("privilege.sudoers", _P, _CRITICAL,
          _sh(r"/etc/sudoers", "sudoers"), _cmd("nopasswd", r"\s*:")),
    _rule("privilege.credential_store", _P, _HIGH, _sh(r"/etc/g?shadow\b", "shadow gshadow")),
    _rule("privilege.container_escape", _P, _HIGH,
          _sh(r"--privileged\b", "privileged"), _sh(r"--pid[=\s]+host\b", "pid"),
          _sh(r"--cap-add[=\s]+(?:all|sys_admin|sys_ptrace|sys_module)\b", "cap"),
          _cmd("nsenter", check=_when(lambda a: "1" in a and ("-t" in a or "--target" in a))),
          _sh(r"/var/run/docker\.sock", "sock")),
    _rule("privilege.auth_bypass", _P, _HIGH,
          *(_lo(_lit(verb) + r"\s+(?:the\s+|all\s+|any\s+)?" + _AUTH_TARGETS, verb)
            for verb in ("bypass", "bypassing", "circumvent", "evade")),
          _lo(_DISABL + r"\s+(?:the\s+|all\s+)?(?:authentication|authorization|auth"
              r"|access\s+controls?|permission\s+checks?|rbac|security\s+checks?)\b", _DISABLE),
          _lo(_lit("turn") + r"(?:ing|s)?\s+off\s+(?:the\s+)?(?:authentication|authorization"
              r"|auth|access\s+controls?|permission\s+checks?)\b", "turn turning turns"),
          _lo(_lit("skip") + r"[_-](?:auth|authentication|authorization|permission_checks?)\b",
              "skip")),
    _rule("privilege.cluster_admin", _P, _HIGH,
          _sh(r"--clusterrole[=\s]+cluster-admin\b", "clusterrole")),
    _rule("privilege.security_disable", _P, _HIGH,
          _cmd("setenforce", r"\s+(?:0|permissive)\b"), _sh(r"selinux=disabled", "selinux"),
          _cmd("aa-teardown", r"(?:\s|$)")),
    _rule("privilege.authorized_keys", _P, _HIGH, _sh(r"authorized_keys2?\b", "authorized")),
    # ---- obfuscation --------------------------------------------------------------------
    _rule("obfuscation.dynamic_eval", _O, _HIGH,
          *(_lo(_lit(name, r"\w.$") + _EVAL, name) for name in ("eval", "exec", "execfile")),
          _lo(r"\|\s*iex\b", "iex"), _lo(_lit("iex") + r"\s*[($]", "iex"),
          _lo(_lit("invoke-expression") + r"\b", "invoke"),
          _lo(_lit("new") + r"\s+function\s*\(", "function")),
    _rule("obfuscation.compile_exec", _O, _HIGH,
          _lo(_lit("compile", r"\w.") + r"\s*\([^)\n]{0,2000}", "compile", _compile_exec)),
    _rule("obfuscation.dynamic_import", _O, _HIGH,
          _lo(r"__import__\s*\(", "import"),
          _lo(r"importlib\.import_module\s*\(\s*(?![\"'][\w.]+[\"']\s*[,)])", "importlib"),
          _lo(r"getattr\s*\(\s*__builtins__", "builtins"), _lo(r"__builtins__\s*\[", "builtins")),
    _rule("obfuscation.decode_and_run", _O, _CRITICAL,
          _cmd("base64", r"\s" + _PIPE, _decodes_to_interpreter),
          _cmd("xxd", r"\s" + _PIPE, _decodes_to_interpreter),
          *(_lo(name + r"\s*\(", name, _DECODE_NEAR)
            for name in ("b64decode", "decodebytes", "atob", "frombase64string"))),
    _rule("obfuscation.powershell_encoded", _O, _CRITICAL,
          *(_cmd(c, check=_when(_encoded_command))
            for c in ("powershell", "powershell.exe", "pwsh"))),
    _rule("obfuscation.char_codes", _O, _MEDIUM,
          _raw(r"\\x[0-9a-fA-F]{2}(?:\\x[0-9a-fA-F]{2}){3,}"),
          _raw(r"\\u00[0-9a-fA-F]{2}(?:\\u00[0-9a-fA-F]{2}){3,}"),
          _raw(r"\\[0-3][0-7]{2}(?:\\[0-3][0-7]{2}){3,}"),
          _lo(r"fromcharcode\s*\(\s*\d+\s*,", "fromcharcode"),
          _lo(_lit("chr") + r"\s*\(\s*\d+\s*\)\s*[+.]\s*chr\s*\(\s*\d+\s*\)\s*[+.]\s*chr\s*\(",
              "chr")),
    _rule("obfuscation.remote_script_exec", _O, _CRITICAL, *_REMOTE_SCRIPT),
    _rule("obfuscation.encoded_payload", _O, _HIGH),  # the decoders: encoding hides a finding
    # ---- exfiltration -------------------------------------------------------------------
    _rule("exfiltration.sensitive_transfer", _X, _CRITICAL,
          *(_cmd(tool, r"(?:\s" + _PIPE + r"|$)", _exfiltrates) for tool in _NET_HEADS)),
    _rule("exfiltration.reverse_shell", _X, _CRITICAL,
          _sh(r"/dev/(?:tcp|udp)/", "tcp udp"),
          *(_cmd(c, check=_socket_shell) for c in ("nc", "ncat", "netcat")),
          _cmd("socat", check=_when(lambda a: any(x.startswith(("exec:", "system:")) for x in a))),
          _cmd("mkfifo", r"\s", _near(r"\b(?:nc|ncat|netcat|telnet|openssl)\b", 0, 300)),
          _lo(r"dup2\s*\(", "dup2", _near(r"socket", 400, 400)),
          _lo(r"pty\.spawn\s*\(", "pty"),
          _lo(r"fsockopen\s*\(", "fsockopen",
              _near(r"exec|system|passthru|popen|/bin/sh", 0, 300))),
    _rule("exfiltration.remote_copy", _X, _MEDIUM,
          _cmd("scp", check=_when(_remote_copy)), _cmd("rsync", check=_when(_remote_copy))),
    _rule("exfiltration.paste_service", _X, _HIGH,
          *(_lo(re.escape(site) + r"\b", trigger) for site, trigger in _PASTE_SITES)),
    _rule("exfiltration.dns_tunnel", _X, _HIGH,
          *(_lo(_lit(c) + r"\s" + _SEG, c, _near(r"\$\(|\$\{|`|\$\w+\.", 0, 0))
            for c in ("dig", "nslookup", "host", "drill")),
          _lo(_lit("dnscat") + r"2?" + _END, "dnscat dnscat2"),
          _lo(_lit("iodine") + r"\s", "iodine")),
    # ---- network ------------------------------------------------------------------------
    _rule("network.remote_script_exec", _N, _HIGH, *_REMOTE_SCRIPT),
    _rule("network.cloud_metadata", _N, _CRITICAL,
          *(_lo(re.escape(address), trigger) for address, trigger in _METADATA)),
    _rule("network.port_scan", _N, _MEDIUM,
          *(_cmd(c, r"\s+\S" + _SEG) for c in ("nmap", "masscan", "zmap", "rustscan"))),
    _rule("network.tunnel", _N, _HIGH,
          _cmd("ssh", check=_when(_ssh_forwards)), _cmd("autossh", check=_when(_ssh_forwards)),
          _cmd("ngrok", r"\s+(?:http|tcp|tls|start)\b"),
          _cmd("chisel", r"\s+(?:client|server)\b"), _cmd("cloudflared", r"\s+tunnel\b"),
          _cmd("socat", check=_when(lambda a: any(x.startswith(("tcp-listen:", "tcp4-listen:"))
                                                  for x in a))),
          *(_lo(re.escape(site), trigger) for site, trigger in _TUNNEL_SITES)),
    _rule("network.firewall_disable", _N, _HIGH,
          _cmd("iptables", check=_when(lambda a: "-f" in a or "--flush" in a
                                       or ("-p" in a and "accept" in a))),
          _cmd("ufw", r"\s+disable\b"), _cmd("nft", r"\s+flush\s+ruleset\b"),
          _cmd("systemctl", r"\s+(?:stop|disable|mask)\s+(?:firewalld|ufw|iptables|nftables)\b"),
          _cmd("netsh", check=_when(lambda a: ("state" in a and "off" in a) or "disable" in a)),
          _lo(r"set-netfirewallprofile\b[^\n;|]{0,200}-enabled\s+\$?false", "netfirewallprofile")),
    _rule("network.listener", _N, _MEDIUM,
          *(_cmd(c, check=_when(lambda a: "l" in _short_flags(a[1:]) or "--listen" in a))
            for c in ("nc", "ncat", "netcat")),
          _lo(r"http\.server\b", "server"), _lo(r"simplehttpserver\b", "simplehttpserver")),
    # ---- self-modification and the audit ledger -----------------------------------------
    _rule("self_modification.governance_target", _M, _HIGH,
          _lo(r"\.cedar(?:schema)?\b", "cedar cedarschema", _path_word),
          _lo(r"grace\.toml\b", "grace", _path_word),
          _lo(r"grace[./]governance\b", "grace", _path_word),
          _lo(r"governance/(?:policies|constitution)", "governance", _path_word),
          _lo(r"ledger\.(?:db|key)\b", "ledger", _path_word),
          _lo(r"grace_governance__\w+", "grace")),
    _rule("self_modification.disable_verification", _M, _HIGH,
          _lo(_DISABL + r"[_\s-]?(?:the\s+)?(?:verification|governance(?:[_\s-]gate)?"
              r"|signature[_\s-]?checks?|immune(?:[_\s-]system)?)\b", _DISABLE),
          _lo(_lit("skip") + r"[_-](?:verification|verify|governance|signature[_-]?checks?)\b",
              "skip"),
          _lo(_lit("no", r"\w.") + r"-verify\b", "verify"),
          _lo(_lit("bypass") + r"[_\s-](?:the\s+)?(?:governance|verification)\b", "bypass"),
          *(_lo(_lit(name) + _OFF, trigger)
            for name, trigger in (("verification", "verification"), ("verify_signatures", "verify"),
                                  ("verification_enabled", "verification"),
                                  ("governance", "governance"),
                                  ("governance_enabled", "governance"),
                                  ("enable_governance_gate", "governance"),
                                  ("enable_avn_immune", "avn"))),
          *(_lo(_lit(name) + r"[\"']?\s*[:=]\s*[\"']?(?:off|log)\b", trigger)
            for name, trigger in (("enforcement_mode", "enforcement"),
                                  ("governance_mode", "governance")))),
    _rule("self_modification.disable_audit", _A, _CRITICAL,
          _lo(_DISABL + r"[_\s-]?(?:the\s+)?(?:audit(?:ing|[_\s-]log|[_\s-]trail)?|ledger)\b",
              _DISABLE),
          _lo(_lit("skip") + r"[_-]audit(?:ing)?\b", "skip"),
          _lo(_lit("no") + r"[_-]audit\b", "audit"),
          _lo(_lit("bypass") + r"[_\s-](?:the\s+)?(?:audit|ledger)\b", "bypass"),
          *(_lo(_lit(name) + _OFF, trigger)
            for name, trigger in (("audit", "audit"), ("audit_enabled", "audit"),
                                  ("audit_log", "audit"), ("auditing", "auditing"),
                                  ("ledger_enabled", "ledger"))),
          *(_cmd(c, check=_when(_touches_ledger)) for c in ("rm", "shred", "truncate", "unlink",
                                                             "mv")),
          _sh(r">\s*[^\s>]*ledger\.db", "ledger")),
    # ---- malware ------------------------------------------------------------------------
    _rule("malware.cryptominer", _W, _CRITICAL,
          *(_lo(_lit(name) + _END, name) for name in _MINERS),
          _lo(r"stratum2?\+(?:tcp|ssl|tls)://", "stratum stratum2"),
          *(_lo(re.escape(pool), pool.split(".", 1)[0]) for pool in _POOLS)),
    _rule("malware.offensive_tooling", _W, _HIGH,
          *(_lo(_lit(name) + _END, name) for name in _OFFENSIVE),
          _lo(r"cobalt\s+strike\b", "cobalt"), _lo(r"sekurlsa::", "sekurlsa")),
    _rule("malware.ransomware", _W, _CRITICAL,
          _cmd("vssadmin", r"(?:\.exe)?\s" + _SEG, _when(_has("delete", "shadows"))),
          _cmd("wmic", check=_when(_has("shadowcopy", "delete"))),
          _cmd("bcdedit", check=_when(_has("recoveryenabled", "no"))),
          _cmd("wbadmin", r"\s+delete\s+(?:catalog|systemstatebackup)\b"),
          _lo(r"your\s+(?:important\s+)?files\s+(?:have\s+been|are|were)\s+encrypted",
              "encrypted")),
    _rule("malware.keylogger", _W, _MEDIUM,
          _lo(_lit("keylogger") + r"s?" + _END, "keylogger keyloggers"),
          _lo(r"wh_keyboard_ll\b", "keyboard"),
          _lo(r"pynput\.keyboard\.listener", "pynput")),
    # ---- what could not be inspected ----------------------------------------------------
    _rule("incomplete.too_large", _I, _HIGH),
    _rule("incomplete.too_deep", _I, _HIGH),
    _rule("incomplete.too_many_values", _I, _HIGH),
    _rule("incomplete.unsupported_type", _I, _HIGH),
)
# fmt: on

_RULE_INDEX: Final = MappingProxyType({rule.id: i for i, rule in enumerate(_RULES)})
RULE_IDS: Final = frozenset(_RULE_INDEX)
"""Every rule id a finding can carry."""


def _index() -> tuple[dict[str, tuple[int, ...]], tuple[int, ...], tuple[tuple[int, _Probe], ...]]:
    """Probes by trigger word, the always-run probes, and every probe with its rule."""
    probes = tuple((r, p) for r, rule in enumerate(_RULES) for p in rule.probes)
    by_word: dict[str, list[int]] = {}
    for i, (_rule, probe) in enumerate(probes):
        for word in probe.words:
            if not word.isalnum() or word != word.lower():
                raise ValueError(f"trigger word {word!r} must be lowercase letters and digits")
            by_word.setdefault(word, []).append(i)
    always = tuple(i for i, (_rule, probe) in enumerate(probes) if not probe.words)
    return {w: tuple(ix) for w, ix in by_word.items()}, always, probes


_BY_WORD, _ALWAYS, _PROBES = _index()
_TRIGGER_WORDS: Final = frozenset(_BY_WORD)
_WORDS_TABLE: Final = {c: " " for c in range(128) if not chr(c).isalnum()} | {
    ord(q): None for q in "'\"`\\"
}
_SHELL_QUOTES: Final = str.maketrans("", "", "'\"`")
_BACKSLASH = re.compile(r"\\(?:\n|([ntr])|(.))", re.S)
_SHELL_NOISE = re.compile(r"\$\{ifs\}|\$ifs\b|\$[@*0-9]|\$\(\)")


def _unescape(m: re.Match[str]) -> str:
    return " " if m.group(1) else (m.group(2) or "")


def _lower(text: str) -> str:
    """Lowercase that keeps every offset (``İ``, alone in Unicode, lowercases to two chars)."""
    return (text.replace("\u0130", "I") if "\u0130" in text else text).lower()


def _shellish(low: str) -> str:
    """Lowercased text as a shell reads the words: quotes, escapes and IFS tricks gone."""
    if not any(c in low for c in "'\"`\\$"):
        return low
    s = low.translate(_SHELL_QUOTES)
    if "\\" in s:
        s = _BACKSLASH.sub(_unescape, s)
    if "$" in s:
        s = _SHELL_NOISE.sub(lambda m: " " if "ifs" in m.group(0) else "", s)
    return s


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


# --------------------------------------------------------------------------------------
# Scanning


@dataclass(slots=True)
class _Hit:
    ordinal: int
    rule: int
    node: _Node
    evidence: str


def _accepted(probe: _Probe, text: str, original: str) -> str | None:
    """Evidence of the first match the probe's check accepts, or ``None``."""
    pattern, check = probe.pattern, probe.check
    m = pattern.search(text)
    while m is not None:
        evidence = check(m, original)
        if evidence is not None:
            return evidence
        # Resume after the match, or after its first newline: a rejected match that ran on
        # into the next string must not hide that string's own match.
        newline = text.find("\n", m.start(), m.end())
        m = pattern.search(text, newline + 1 if newline >= 0 else max(m.end(), m.start() + 1))
    return None


class _Forms:
    """The raw, lowercased and shell-normalised forms of one string, made on demand."""

    __slots__ = ("forms", "original")

    def __init__(self, text: str) -> None:
        self.forms: list[str | None] = [text, _lower(text), None]
        self.original = text  # _lower keeps offsets: a lowercase match indexes the raw text

    def __call__(self, kind: _Text) -> str:
        form = self.forms[kind]
        if form is None:
            form = self.forms[kind] = _shellish(self(_Text.LOWER))
        return form

    def accepted(self, probes: list[_Probe]) -> str | None:
        """Evidence of the first probe that accepts a match in this string."""
        for probe in probes:
            base = self.original if probe.text is not _Text.SHELL else self(_Text.SHELL)
            evidence = _accepted(probe, self(probe.text), base)
            if evidence is not None:
                return evidence
        return None


def _candidates(probe: _Probe, blob: str, original: str, starts: list[int]) -> set[int]:
    """Indices of the strings where ``probe`` may match, from its matches in the joined text.

    The joined text puts a newline between strings, which every pattern and check treats as
    a string boundary; a match that runs past its string only marks the string for checking.
    """
    found: set[int] = set()
    pattern, check = probe.pattern, probe.check
    m = pattern.search(blob)
    while m is not None:
        i = bisect.bisect_right(starts, m.start()) - 1
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(blob)
        if m.end() > end or check(m, original) is not None:
            found.add(i)
            m = pattern.search(blob, end + 1)
        else:  # resume as _accepted does
            newline = blob.find("\n", m.start(), m.end())
            m = pattern.search(blob, newline + 1 if newline >= 0 else max(m.end(), m.start() + 1))
    return found


def _triggered(low: str) -> tuple[frozenset[str], list[int]]:
    """The trigger words in ``low``, and the probes they wake (with the always-run ones)."""
    words = _TRIGGER_WORDS.intersection(low.translate(_WORDS_TABLE).split())
    active = set(_ALWAYS)
    for word in words:
        active.update(_BY_WORD[word])
    return words, sorted(active)


def _matching(blob: str, low: str, active: list[int]) -> dict[int, list[_Probe]]:
    """Stage 1: the rules with an accepted match anywhere in the joined text (usually none)."""
    forms = [blob, low, ""]
    matched: dict[int, list[_Probe]] = {}
    for i in active:
        rule, probe = _PROBES[i]
        if rule in matched:
            continue
        kind = probe.text
        if kind is _Text.SHELL and not forms[2]:
            forms[2] = _shellish(low)
        original = blob if kind is not _Text.SHELL else forms[kind]
        if _accepted(probe, forms[kind], original) is not None:
            matched[rule] = []
    for i in active:  # stage 2 tries every woken probe of a matched rule
        rule, probe = _PROBES[i]
        if rule in matched:
            matched[rule].append(probe)
    return matched


def _scan(
    texts: list[str], paths: list[_Node], blobs: list[int], limits: AnalyzerLimits, nesting: int = 0
) -> list[_Hit]:
    """Hits of every probe over ``texts`` (and over what they decode to)."""
    if not texts:
        return []
    blob = "\n".join(texts)
    low = _lower(blob)
    words, active = _triggered(low)
    # A string ending in a backslash (maybe once quotes are gone) would be joined to the
    # next one as a line continuation: then each string is normalised on its own.
    joins = "\\" in low
    shell = "\n".join(_shellish(_lower(t)) for t in texts) if joins else _shellish(low)
    # Where each string starts in the joined text: the offsets hold for the raw and the
    # lowercased text, and for the shell text when normalising changed nothing.
    starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
    whole = [blob, low, shell]
    located = [True, True, shell is low]
    per_rule: dict[int, tuple[list[_Probe], set[int]]] = {}
    everywhere = set(range(len(texts)))
    for i in active:
        rule, probe = _PROBES[i]
        probes, where = per_rule.setdefault(rule, ([], set()))
        probes.append(probe)
        if where is everywhere:
            continue
        original = blob if probe.text is not _Text.SHELL else shell
        if located[probe.text]:
            where |= _candidates(probe, whole[probe.text], original, starts)
        elif _accepted(probe, whole[probe.text], original) is not None:
            per_rule[rule] = (probes, everywhere)
    hits: list[_Hit] = []
    forms: dict[int, _Forms] = {}
    for rule, (probes, where) in per_rule.items():
        for index in sorted(where):
            form = forms.get(index) or forms.setdefault(index, _Forms(texts[index]))
            evidence = form.accepted(probes)
            if evidence is not None:
                hits.append(_Hit(index, rule, paths[index], evidence))
    if nesting < 2:
        hits.extend(_rescan(texts, paths, blobs, words, blob, limits, nesting))
    return hits


# --- the fast path: a clean request read straight from its JSON --------------------------

_QUICK_MAX_BYTES = 64 * 1024
_QUICK_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_JSON_ARGV = re.compile(r'\["[^"]*"(?:,"[^"]*")+\]')
_JSON_BLOB = re.compile(r'"([A-Za-z0-9+/_\-\\]{40,}={0,2})"')  # \n, \r escapes included
# A key whose name may be a secret or an audit switch (see _key_class), matched at its end
# in the reversed JSON, lowercased and without ``_-. ``: ``"db_password":`` is
# ``:"drowssapbd"``, one attempt per key.
_JSON_FIELD = re.compile(
    r':"(?:drowssap|dwssap|esarhpssap|terces|yek|nekot|noitazirohtua|tidua|gnitidua|goltidua'
    r"|delbane(?:tidua|regdel|noitacifirev|ecnanrevog)|noitacifirev|serutangisyfirev"
    r"|ecnanrevog|etagecnanrevog|enumminva|edom(?:tnemecrofne|ecnanrevog))"
)


def _clean_json(value: object, limits: AnalyzerLimits) -> bool:
    """True only when ``value`` certainly has no finding; ``False`` means "walk it".

    With no JSON escapes but ``\\n``, ``\\t``, ``\\r``, every ``"`` of the serialised
    value delimits a string, so putting a newline for each gives exactly the walk's strings,
    one per line, each between newlines as in the walk's joined text (plus punctuation
    lines, and string lists joined as argv). Stage 1 over it therefore matches whenever any
    string would: no match there means none anywhere. Whatever else could produce a
    finding (a limit, a secret or audit field name, a base64 blob, a decoder's trigger
    word, escapes) sends the value to the full walk.
    """
    try:
        raw = orjson.dumps(value, option=_QUICK_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: a type the walk must judge
        return False
    limit = min(limits.max_chars, _QUICK_MAX_BYTES, limits.max_values)
    if len(raw) > limit or raw.count(b"[") + raw.count(b"{") >= limits.max_depth:
        return False
    text = raw.decode()
    if any(_HEX_FULL.fullmatch(m.group(1)) is None for m in _JSON_BLOB.finditer(text)):
        return False
    if _JSON_FIELD.search(text.lower().translate(_KEY_NOISE)[::-1]):
        return False
    if "\\" in text:
        escapes = text.count("\\n") + text.count("\\t") + text.count("\\r")
        if text.count("\\") != escapes:
            return False
        text = text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
    argv = [m.group(0)[2:-2].replace('","', " ") for m in _JSON_ARGV.finditer(text)]
    blob = "\n".join(["", text.replace('"', "\n"), *argv, ""])
    low = _lower(blob)
    words, active = _triggered(low)
    return _DECODE_WORDS.isdisjoint(words) and not _matching(blob, low, active)


_DECODE_WORDS: Final = _names(
    "base64 b64decode decodebytes atob frombase64string b64 enc encodedcommand powershell pwsh"
)
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{12,}={0,2}")
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[0-3][0-7]{2})")
_NONPRINT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_SCRIPTY = re.compile(
    r"^#!|\bimport\s+\w|(?<![\w.])(?:exec|eval)\s*\(|subprocess|os\.system|/bin/(?:ba)?sh\b"
    r"|powershell|invoke-expression|\biex\b|\b(?:wget|curl)\s|\bchmod\s|socket\."
)


def _as_text(raw: bytes) -> str | None:
    """Decoded bytes as text, or ``None`` when they are binary (an image, a digest…)."""
    if len(raw) >= 4 and raw[1::2].count(0) >= len(raw) // 2 * 0.8:  # UTF-16LE: PowerShell
        text = raw.decode("utf-16-le", "replace")
    else:
        text = raw.decode("utf-8", "replace")
    if not text.strip() or len(_NONPRINT.findall(text)) > len(text) // 50:
        return None
    return text


def _decode_base64(run: str, limit: int) -> str | None:
    s = run.rstrip("=")[:limit]
    s = s[: len(s) - len(s) % 4]
    urlsafe = "-" in s or "_" in s
    if len(s) < 12 or (urlsafe and ("+" in s or "/" in s)):
        return None
    try:
        raw = base64.b64decode(s, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(raw)


def _escape_char(m: re.Match[str]) -> str:
    code = m.group(0)[1:]
    return chr(int(code[1:], 16) if code[0] in "xu" else int(code, 8))


def _decode_escapes(text: str) -> str | None:
    return _as_text(_ESCAPE.sub(_escape_char, text).encode("utf-8", "replace"))


def _decoded(
    texts: list[str], blobs: list[int], words: frozenset[str], blob: str, limits: AnalyzerLimits
) -> list[tuple[int, str, str]]:
    """(text index, encoding, decoded text) of each encoded payload worth scanning again."""
    out: list[tuple[int, str, str]] = []
    candidates = set(blobs)
    if not _DECODE_WORDS.isdisjoint(words):
        candidates.update(i for i, t in enumerate(texts) if _B64_RUN.search(t))
    budget = limits.max_decodes
    for i in sorted(candidates):
        for m in _B64_RUN.finditer(texts[i]):
            if budget <= 0:
                return out
            budget -= 1
            text = _decode_base64(m.group(0), limits.max_decoded_chars)
            if text is not None:
                out.append((i, "base64", text))
    if "\\" in blob and _ESCAPE.search(blob):
        for i, t in enumerate(texts):
            if budget > 0 and len(_ESCAPE.findall(t, 0, limits.max_decoded_chars)) >= 2:
                budget -= 1
                text = _decode_escapes(t[: limits.max_decoded_chars])
                if text is not None:
                    out.append((i, "escapes", text))
    return out


_ENCODED = _RULE_INDEX["obfuscation.encoded_payload"]


def _rescan(
    texts: list[str],
    paths: list[_Node],
    blobs: list[int],
    words: frozenset[str],
    blob: str,
    limits: AnalyzerLimits,
    nesting: int,
) -> list[_Hit]:
    hits: list[_Hit] = []
    for i, how, text in _decoded(texts, blobs, words, blob, limits):
        inner = _scan([text], [paths[i]], [0] if _is_blob(text) else [], limits, nesting + 1)
        if inner or _SCRIPTY.search(text.lower()):
            evidence = _clip(f"{how} decodes to: {_scrub(text[:400])}")
            hits.append(_Hit(i, _ENCODED, paths[i], evidence))
        hits.extend(_Hit(i, h.rule, paths[i], _clip(f"{how}: {h.evidence}", 120)) for h in inner)
    return hits


# --- structural rules: what a field's *name* says about its value ----------------------

_FALSY_TEXT: Final = _names("false off no 0 disabled disable none")
_NAMED_SECRET = _RULE_INDEX["secret.named_field"]
_DISABLE_AUDIT = _RULE_INDEX["self_modification.disable_audit"]
_DISABLE_VERIFY = _RULE_INDEX["self_modification.disable_verification"]


def _named_secret(key: str, value: str) -> bool:
    """A non-empty value that is neither a placeholder, a mask nor a label ("Password")."""
    v = value.strip()
    if _placeholder(v):
        return False
    name, lowered = key.lower().translate(_KEY_NOISE), v.lower()
    if lowered.translate(_KEY_NOISE) == name:
        return False
    return not any(w in name and w in lowered for w in ("pass", "secret", "token", "key"))


def _switched_off(value: object, cls: int) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        return word in _FALSY_TEXT or (cls == _MODE and word == "log")
    return cls != _MODE and (value is None or value is False or value == 0)


def _structural(w: _Walk) -> list[_Hit]:
    hits: list[_Hit] = []
    for ordinal, node, cls, value in w.fields:
        key = node[1] if node is not None else ""
        shown = _clip(str(key), 40)
        if cls == _SECRET:
            if isinstance(value, str) and _named_secret(str(key), value):
                hits.append(_Hit(ordinal, _NAMED_SECRET, node, f"{shown}: ********"))
        elif _switched_off(value, cls):
            rule = _DISABLE_AUDIT if cls == _AUDIT else _DISABLE_VERIFY
            hits.append(_Hit(ordinal, rule, node, f"{shown}: {_clip(repr(value), 12)}"))
    return hits


# --------------------------------------------------------------------------------------
# Paths

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SECRET_PROBES: Final = tuple(p for rule in _RULES if rule.kind is _S for p in rule.probes)


def _looks_secret(key: str) -> bool:
    if _Forms(key).accepted(list(_SECRET_PROBES)) is not None:
        return True
    return _scrub(key) != key


@functools.lru_cache(maxsize=4096)
def _segment(seg: str | int | None) -> str:
    if seg is None:
        return "#key"
    if isinstance(seg, int):
        return f"[{seg}]"
    key = seg
    if _looks_secret(key):
        key = _mask(key)
    elif _IDENT.fullmatch(key):
        return "." + key
    key = _clip(key, 40).replace("\\", "\\\\").replace('"', '\\"')
    return '["' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in key) + '"]'


def _render(root: str, node: _Node) -> str:
    segments: list[str] = []
    while node is not None:
        node, seg = node
        segments.append(_segment(seg))
    return root + "".join(reversed(segments))


# --------------------------------------------------------------------------------------


def analyze(
    value: object, *, root: str = "request", limits: AnalyzerLimits = DEFAULT_LIMITS
) -> tuple[Finding, ...]:
    """Every finding in ``value``, one per rule and path, in document order.

    ``root`` names the value in paths (``request.context.steps[1].cmd``). Any
    ``analysis_incomplete`` finding means part of the value was not inspected: deny.
    """
    if not root:
        raise ValueError("root must name the value, e.g. 'request'")
    if _clean_json(value, limits):
        return ()
    w = _walk(value, limits)
    hits = _scan(w.texts, w.paths, w.blobs, limits)
    hits.extend(_structural(w))
    hits.extend(
        _Hit(ordinal, _RULE_INDEX[rule_id], node, evidence)
        for rule_id, (ordinal, node, evidence) in w.incomplete.items()
    )
    hits.sort(key=lambda h: (h.ordinal, h.rule))
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for hit in hits:
        path = _render(root, hit.node)
        if (hit.rule, path) in seen:
            continue
        seen.add((hit.rule, path))
        rule = _RULES[hit.rule]
        findings.append(
            Finding(
                kind=rule.kind,
                principle=PRINCIPLES[rule.kind],
                severity=rule.severity,
                path=path,
                evidence=hit.evidence[:_MAX_EVIDENCE],
                rule=rule.id,
            )
        )
    return tuple(findings)
