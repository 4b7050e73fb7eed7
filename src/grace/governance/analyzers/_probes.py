"""Probes (a trigger, a regex over one form of the text, a check that writes evidence) and
the shell and secret helpers their checks use.

Part of :mod:`grace.governance.analyzers` (its docstring states the invariants).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeAlias

from grace.governance.analyzers._model import FindingKind
from grace.governance.constitution import Severity

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
