"""Grace's own AST rules for dangerous constructs, run in one pass over a parsed module.

Every rule has a stable id (``GR1xx``), a category (used to deduplicate against bandit:
two findings of one category on one line are one issue) and a CWE where one fits.

====== ===================== ===============================================================
id     name                  reports
====== ===================== ===============================================================
GR101  dynamic-code          ``eval``/``exec`` (critical unless the argument is a literal),
                             ``compile``
GR102  obfuscated-code       code execution fed by a decoder (base64, codecs, zlib, bz2,
                             lzma, binascii, ``bytes.fromhex``, marshal, ``chr`` joins,
                             reversed strings), ``eval``/``exec`` reached through an alias,
                             ``getattr`` or a subscript, code objects built by hand
GR103  dynamic-import        ``__import__``/``importlib.import_module`` with a computed name
GR104  shell-command         ``os.system``/``os.popen``/``getoutput``…, ``shell=True``
GR105  unsafe-deserialization pickle/marshal/shelve/dill/``yaml.load`` without a safe loader
GR106  file-deletion         ``os.remove``/``unlink``/``rmdir``, ``shutil.rmtree``,
                             ``Path.unlink`` (critical on system paths)
GR107  write-outside-workdir writes, copies, moves, links or permission changes to an
                             absolute, home-relative or ``..`` path (critical on system paths)
GR108  network-access        sockets (raw sockets: high), HTTP/FTP/SMTP/telnet clients,
                             servers
GR109  process-control       ``os.fork``/``exec*``/``spawn*``/``posix_spawn``/``kill``
GR110  native-code           ctypes and cffi
GR111  runtime-tampering     ``__subclasses__`` walks, ``gc`` referent walks, audit/trace
                             hooks, patching ``builtins`` or ``sys.modules``
====== ===================== ===============================================================

Names are resolved through the module's imports (``import subprocess as sp`` makes
``sp.run`` ``subprocess.run``), scope-insensitively, as bandit does. The pass is linear
in the size of the tree: one ``ast.walk``, then a dictionary lookup per call.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from grace.verification.model import Confidence, Issue, IssueSource, Severity

__all__ = ["BANDIT_CATEGORIES", "RULES", "Rule", "category_of", "check_module"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One of Grace's rules."""

    id: str
    name: str
    category: str
    description: str
    cwe: int | None = None


RULES: Final = MappingProxyType(
    {
        r.id: r
        for r in (
            Rule(id="GR000", name="syntax-error", category="input",
                 description="the file does not parse as Python"),
            Rule(id="GR001", name="analysis-incomplete", category="input",
                 description="a file could not be analysed completely (fail closed)"),
            Rule(id="GR101", name="dynamic-code", category="dynamic-code", cwe=95,
                 description="eval/exec/compile run code built at run time"),
            Rule(id="GR102", name="obfuscated-code", category="dynamic-code", cwe=506,
                 description="code execution hidden behind decoding, aliases or lookups"),
            Rule(id="GR103", name="dynamic-import", category="dynamic-import", cwe=470,
                 description="a module imported by a computed name"),
            Rule(id="GR104", name="shell-command", category="shell", cwe=78,
                 description="a command run through the shell"),
            Rule(id="GR105", name="unsafe-deserialization", category="deserialization", cwe=502,
                 description="deserialisation that can run code (pickle, marshal, yaml.load)"),
            Rule(id="GR106", name="file-deletion", category="file-deletion", cwe=73,
                 description="files or directory trees deleted"),
            Rule(id="GR107", name="write-outside-workdir", category="file-write", cwe=22,
                 description="a write, copy, move, link or chmod outside the working directory"),
            Rule(id="GR108", name="network-access", category="network",
                 description="a network connection, server or raw socket"),
            Rule(id="GR109", name="process-control", category="process",
                 description="processes forked, replaced, spawned or signalled"),
            Rule(id="GR110", name="native-code", category="native",
                 description="native code loaded through ctypes or cffi"),
            Rule(id="GR111", name="runtime-tampering", category="tampering",
                 description="the interpreter's own machinery reached or patched"),
        )
    }
)  # fmt: skip

BANDIT_CATEGORIES: Final = MappingProxyType(
    {
        "B102": "dynamic-code",
        "B307": "dynamic-code",
        "B301": "deserialization",
        "B302": "deserialization",
        "B506": "deserialization",
        "B602": "shell",
        "B604": "shell",
        "B605": "shell",
        "B606": "process",
        "B310": "network",
        "B312": "network",
        "B321": "network",
    }
)
"""bandit tests that report the same constructs as a Grace rule (for deduplication)."""


def category_of(rule_id: str) -> str | None:
    """The deduplication category of a Grace or bandit rule id."""
    rule = RULES.get(rule_id)
    return rule.category if rule is not None else BANDIT_CATEGORIES.get(rule_id)


# -- vocabularies -----------------------------------------------------------------------

_EXEC: Final = frozenset({"eval", "exec", "builtins.eval", "builtins.exec"})
_COMPILE: Final = frozenset({"compile", "builtins.compile"})
_CODE_RUNNERS: Final = _EXEC | _COMPILE
_DANGEROUS_NAMES: Final = frozenset({"eval", "exec", "compile", "__import__"})
_DECODER_TAILS: Final = (
    "b64decode", "b32decode", "b16decode", "b85decode", "a85decode", "decodebytes",
    "decodestring", "urlsafe_b64decode", "standard_b64decode", "decompress", "unhexlify",
    "a2b_base64", "a2b_hex", "a2b_uu", "fromhex", "loads", "rot13",
)  # fmt: skip
_DECODER_MODULES: Final = frozenset(
    {"base64", "codecs", "zlib", "bz2", "lzma", "gzip", "binascii", "marshal", "bytes", "str"}
)
_CODE_OBJECTS: Final = frozenset({"types.CodeType", "types.FunctionType", "marshal.loads"})
_IMPORTERS: Final = frozenset(
    {"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
)
_ALWAYS_SHELL: Final = frozenset(
    {
        "os.system", "os.popen", "os.popen2", "os.popen3", "os.popen4", "subprocess.getoutput",
        "subprocess.getstatusoutput", "commands.getoutput", "commands.getstatusoutput",
        "asyncio.create_subprocess_shell", "platform.popen", "popen2.popen2", "popen2.popen3",
    }
)  # fmt: skip
_SHELL_KEYWORD: Final = frozenset(
    {
        "subprocess.Popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
        "subprocess.check_output",
    }
)  # fmt: skip
_DESERIALIZERS: Final = frozenset(
    {
        "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
        "_pickle.Unpickler", "cPickle.load", "cPickle.loads", "dill.load", "dill.loads",
        "cloudpickle.load", "cloudpickle.loads", "marshal.load", "marshal.loads",
        "shelve.open", "shelve.DbfilenameShelf", "jsonpickle.decode", "joblib.load",
        "pandas.read_pickle", "yaml.unsafe_load", "yaml.unsafe_load_all", "torch.load",
    }
)  # fmt: skip
_YAML_LOAD: Final = frozenset({"yaml.load", "yaml.load_all"})
_SAFE_YAML_LOADERS: Final = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})
_DELETERS: Final = frozenset(
    {"os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree",
     "pathlib.Path().unlink", "pathlib.Path().rmdir", "pathlib.PurePath().unlink"}
)  # fmt: skip
_OPENERS: Final = frozenset({"open", "builtins.open", "io.open", "codecs.open", "os.open"})
_DEST_SECOND: Final = frozenset(
    {
        "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree", "shutil.move",
        "os.rename", "os.replace", "os.renames", "os.link", "os.symlink",
    }
)  # fmt: skip
_DEST_FIRST: Final = frozenset(
    {"os.makedirs", "os.mkdir", "os.chmod", "os.chown", "os.lchown", "os.truncate", "os.utime"}
)
_PATH_WRITERS: Final = frozenset(
    {"write_text", "write_bytes", "touch", "mkdir", "symlink_to", "hardlink_to", "chmod",
     "rename", "replace"}
)  # fmt: skip
_PATH_CLASSES: Final = frozenset(
    {"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath", "pathlib.PurePosixPath", "Path"}
)
_PATH_HEADS: Final = tuple(f"{c}{end}" for c in sorted(_PATH_CLASSES) for end in ("(", "."))
_WRITE_FLAGS: Final = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"})
_HOME_CALLS: Final = frozenset(
    {"os.path.expanduser", "os.path.expandvars", "pathlib.Path.home", "Path.home", "os.getenv"}
)
_SYSTEM_DIRS: Final = (
    "/etc", "/bin", "/sbin", "/usr", "/boot", "/lib", "/root", "/sys", "/proc", "/var/lib",
    "/var/log", "/dev/sd", "/dev/nvme", "/dev/mem", "/opt", "/home", "~/.ssh", "~/.bash",
    "~/.profile", "~/.config", "~/.local", "~/.gnupg", "~/.aws",
)  # fmt: skip
_SCRATCH_DIRS: Final = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - names, not uses
_HOME: Final = "~/<computed>"
"""A path under the home directory whose rest is computed."""
_HARMLESS_DEVICES: Final = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_NETWORK: Final = frozenset(
    {
        "socket.socket", "socket.create_connection", "socket.create_server", "socket.fromfd",
        "urllib.request.urlopen", "urllib.request.urlretrieve", "urllib.urlopen",
        "urllib2.urlopen", "http.client.HTTPConnection", "http.client.HTTPSConnection",
        "ftplib.FTP", "ftplib.FTP_TLS", "smtplib.SMTP", "smtplib.SMTP_SSL", "telnetlib.Telnet",
        "poplib.POP3", "imaplib.IMAP4", "asyncio.open_connection", "asyncio.start_server",
        "asyncio.open_unix_connection", "socketserver.TCPServer", "socketserver.UDPServer",
        "http.server.HTTPServer", "xmlrpc.client.ServerProxy", "aiohttp.ClientSession",
        "paramiko.SSHClient",
    }
)  # fmt: skip
_HTTP_CLIENTS: Final = frozenset({"requests", "httpx", "urllib3"})
_RAW_SOCKET: Final = frozenset({"SOCK_RAW", "AF_PACKET", "SOCK_PACKET"})
_PROCESS: Final = frozenset(
    {"os.fork", "os.forkpty", "os.kill", "os.killpg", "os.posix_spawn", "os.posix_spawnp",
     "os.execv", "os.execve", "os.execl", "os.execle", "os.execlp", "os.execlpe", "os.execvp",
     "os.execvpe", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv",
     "os.spawnve", "os.spawnvp", "os.spawnvpe", "pty.spawn", "pty.fork"}
)  # fmt: skip
_TAMPER_CALLS: Final = frozenset(
    {"gc.get_referrers", "gc.get_referents", "gc.get_objects", "sys.addaudithook",
     "sys.settrace", "sys.setprofile", "sys.remote_exec"}
)  # fmt: skip
_TAMPER_ATTRS: Final = frozenset({"__subclasses__", "__globals__", "__builtins__", "__code__"})


# -- the pass ---------------------------------------------------------------------------


def _qualname(node: ast.expr, aliases: dict[str, str]) -> str:
    """``a.b.c`` resolved through imports; a call in the chain reads ``f()``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        head = aliases.get(node.id, node.id)
    elif isinstance(node, ast.Call):
        head = _qualname(node.func, aliases) + "()"
    else:
        head = "?"
    if parts:
        parts.reverse()
        return head + "." + ".".join(parts)
    return head


def _is_literal(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))


def _arg(call: ast.Call, index: int, keyword: str | None = None) -> ast.expr | None:
    if keyword is not None:
        for kw in call.keywords:
            if kw.arg == keyword:
                return kw.value
    if index < len(call.args) and not isinstance(call.args[index], ast.Starred):
        return call.args[index]
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _path_text(node: ast.expr | None, aliases: dict[str, str]) -> str | None:
    """The literal start of a path expression, ``~`` for the home directory, or None."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _path_text(node.values[0], aliases)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
        return _path_text(node.left, aliases)
    if isinstance(node, ast.Call):
        name = _qualname(node.func, aliases)
        if name in ("os.path.expanduser", "os.path.expandvars"):
            return _path_text(_arg(node, 0), aliases) or _HOME
        if name in _HOME_CALLS or name.endswith(".home"):
            return _HOME
        if name in _PATH_CLASSES or name in ("os.path.join", "posixpath.join"):
            return _path_text(_arg(node, 0), aliases)
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call):
            return _path_text(node.func.value, aliases)  # Path("/x").joinpath("y") starts "/x"
    if isinstance(node, ast.Subscript) and _qualname(node.value, aliases) == "os.environ":
        key = node.slice
        if isinstance(key, ast.Constant) and key.value == "HOME":
            return _HOME
    return None


def _outside(path: str | None) -> tuple[Severity, str] | None:
    """How bad a path outside the working directory is, or None when it is inside."""
    if path is None or path in _HARMLESS_DEVICES:
        return None
    norm = path.rstrip("/") or "/"
    if norm in ("/", "~"):
        return Severity.CRITICAL, f"{path!r} (the filesystem root or the home directory)"
    if norm.startswith(_SYSTEM_DIRS):
        return Severity.CRITICAL, f"{path!r} (a system or user-configuration path)"
    if norm.startswith(_SCRATCH_DIRS):
        return Severity.MEDIUM, f"{path!r} (a shared scratch directory)"
    if norm.startswith(("/", "~")):
        return Severity.HIGH, f"{path!r} (outside the working directory)"
    if ".." in norm.replace("\\", "/").split("/"):
        return Severity.HIGH, f"{path!r} (above the working directory)"
    return None


class _Checker:
    """Collects issues for one file."""

    __slots__ = ("aliases", "file", "issues")

    def __init__(self, file: str, aliases: dict[str, str]) -> None:
        self.file = file
        self.aliases = aliases
        self.issues: list[Issue] = []

    def add(
        self,
        rule_id: str,
        node: ast.expr | ast.stmt,
        severity: Severity,
        message: str,
        confidence: Confidence = Confidence.HIGH,
    ) -> None:
        self.issues.append(
            Issue(
                rule_id=rule_id,
                severity=severity,
                confidence=confidence,
                message=message,
                source=IssueSource.RULES,
                file=self.file,
                line=node.lineno,
                column=node.col_offset,
                cwe=RULES[rule_id].cwe,
            )
        )

    # -- calls ----------------------------------------------------------------------------

    def call(self, node: ast.Call) -> None:
        name = _qualname(node.func, self.aliases)
        handler = _CALL_HANDLERS.get(name)
        if handler is not None:
            handler(self, node, name)
            return
        head, _, tail = name.rpartition(".")
        if head.endswith("()") and tail in _PATH_WRITERS and head.startswith(_PATH_HEADS):
            self.path_write(node, name)
        elif tail in ("unlink", "rmdir") and head.endswith("()") and head.startswith(_PATH_HEADS):
            self.delete(node, name)
        elif tail in ("unlink", "rmdir", "rmtree") and head not in ("os", "shutil"):
            self.add("GR106", node, Severity.LOW, f"{name}() may delete files", Confidence.LOW)
        elif head.split(".", 1)[0] in _HTTP_CLIENTS and head.count(".") <= 1:
            self.add("GR108", node, Severity.MEDIUM, f"{name}() makes network requests",
                     Confidence.MEDIUM)  # fmt: skip
        elif name.startswith(("ctypes.", "cffi.")):
            self.add("GR110", node, Severity.HIGH, f"{name}() loads or calls native code")
        elif name == "getattr" and len(node.args) >= 2:
            self.dynamic_getattr(node)

    def run_code(self, node: ast.Call, name: str) -> None:
        arg = _arg(node, 0, "source")
        hidden = self.obfuscation(node)
        if hidden is not None:
            self.add("GR102", node, Severity.CRITICAL, f"{name}() runs code {hidden}")
        elif name in _COMPILE:
            self.add("GR101", node, Severity.HIGH, f"{name}() builds code at run time")
        elif _is_literal(arg):
            self.add("GR101", node, Severity.HIGH, f"{name}() runs a literal string as code")
        else:
            self.add("GR101", node, Severity.CRITICAL,
                     f"{name}() runs code computed at run time")  # fmt: skip

    def obfuscation(self, call: ast.Call) -> str | None:
        """How the code ``call`` runs was hidden, or None."""
        for arg in (*call.args, *(kw.value for kw in call.keywords)):
            for inner in ast.walk(arg):
                if isinstance(inner, ast.Call):
                    name = _qualname(inner.func, self.aliases)
                    head, _, tail = name.rpartition(".")
                    if tail in _DECODER_TAILS and (
                        head.split(".", 1)[0] in _DECODER_MODULES or head.endswith("()")
                    ):
                        return f"decoded by {name}()"
                    if tail == "decode" and any(
                        isinstance(a, ast.Constant)
                        and str(a.value).lower().replace("-", "_")
                        in ("rot13", "rot_13", "hex", "base64", "zlib", "bz2", "uu")
                        for a in inner.args
                    ):
                        return f"decoded by {name}()"
                    if name in ("chr", "builtins.chr"):
                        return "assembled from chr() calls"
                elif isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Slice):
                    step = inner.slice.step
                    if isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub):
                        return "from a reversed string"
        return None

    def code_object(self, node: ast.Call, name: str) -> None:
        if name == "marshal.loads":
            self.deserialize(node, name)
            return
        self.add("GR102", node, Severity.CRITICAL, f"{name}() builds a code object by hand")

    def dynamic_getattr(self, node: ast.Call) -> None:
        target, attr = node.args[0], node.args[1]
        owner = _qualname(target, self.aliases)
        if owner in ("builtins", "__builtins__") or (
            isinstance(attr, ast.Constant) and attr.value in _DANGEROUS_NAMES
        ):
            what = repr(attr.value) if isinstance(attr, ast.Constant) else "a computed name"
            self.add("GR102", node, Severity.CRITICAL,
                     f"getattr({owner}, {what}) reaches builtins dynamically")  # fmt: skip

    def dynamic_import(self, node: ast.Call, name: str) -> None:
        if _is_literal(_arg(node, 0, "name")):
            self.add("GR103", node, Severity.LOW, f"{name}() of a literal: use an import statement")
        else:
            self.add("GR103", node, Severity.HIGH, f"{name}() imports a module named at run time")

    def shell(self, node: ast.Call, name: str) -> None:
        if name in _SHELL_KEYWORD:
            flag = _keyword(node, "shell")
            if flag is None or (isinstance(flag, ast.Constant) and not flag.value):
                return
        command = _arg(node, 0, "args" if name in _SHELL_KEYWORD else "cmd")
        if _is_literal(command):
            self.add("GR104", node, Severity.HIGH, f"{name}() runs a shell command")
        else:
            self.add("GR104", node, Severity.HIGH,
                     f"{name}() runs a computed shell command (command injection)")  # fmt: skip

    def deserialize(self, node: ast.Call, name: str) -> None:
        if name in _YAML_LOAD:
            loader = _keyword(node, "Loader") or _arg(node, 1)
            if loader is not None and _qualname(loader, self.aliases).rpartition(".")[2] in (
                _SAFE_YAML_LOADERS
            ):
                return
        self.add("GR105", node, Severity.HIGH, f"{name}() can run code while deserialising")

    def delete(self, node: ast.Call, name: str) -> None:
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        target: ast.expr | None
        if isinstance(receiver, ast.Call) and name.rpartition(".")[0].endswith("()"):
            target = receiver  # Path("/x").unlink(): the path is the receiver
        else:
            target = _arg(node, 0, "path")
        where = _outside(_path_text(target, self.aliases))
        if where is not None and where[0].rank >= Severity.HIGH.rank:
            self.add("GR106", node, Severity.CRITICAL, f"{name}() deletes {where[1]}")
        elif name == "shutil.rmtree":
            self.add("GR106", node, Severity.HIGH, f"{name}() deletes a directory tree")
        else:
            self.add("GR106", node, Severity.MEDIUM, f"{name}() deletes files")

    def open_call(self, node: ast.Call, name: str) -> None:
        if name == "os.open":
            flags = _arg(node, 1, "flags")
            writes = flags is not None and any(
                isinstance(n, (ast.Attribute, ast.Name))
                and (n.attr if isinstance(n, ast.Attribute) else n.id) in _WRITE_FLAGS
                for n in ast.walk(flags)
            )
        else:
            mode = _arg(node, 1, "mode")
            writes = mode is not None and (
                not isinstance(mode, ast.Constant)
                or (isinstance(mode.value, str) and any(c in mode.value for c in "wax+"))
            )
        if writes:
            self.write_to(node, name, _arg(node, 0, "file"))

    def dest_second(self, node: ast.Call, name: str) -> None:
        self.write_to(node, name, _arg(node, 1, "dst"))

    def dest_first(self, node: ast.Call, name: str) -> None:
        self.write_to(node, name, _arg(node, 0, "path"))

    def path_write(self, node: ast.Call, name: str) -> None:
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        if isinstance(receiver, ast.Call):
            self.write_to(node, name, receiver)

    def write_to(self, node: ast.Call, name: str, target: ast.expr | None) -> None:
        where = _outside(_path_text(target, self.aliases))
        if where is not None:
            self.add("GR107", node, where[0], f"{name}() writes to {where[1]}")

    def network(self, node: ast.Call, name: str) -> None:
        if name == "socket.socket" and any(
            isinstance(n, ast.Attribute) and n.attr in _RAW_SOCKET
            for a in (*node.args, *(k.value for k in node.keywords))
            for n in ast.walk(a)
        ):
            self.add("GR108", node, Severity.HIGH, "socket.socket() opens a raw socket")
            return
        self.add("GR108", node, Severity.MEDIUM, f"{name}() opens a network connection or server")

    def process(self, node: ast.Call, name: str) -> None:
        low = name in ("os.fork", "os.kill", "os.killpg")
        severity = Severity.LOW if low else Severity.MEDIUM
        self.add("GR109", node, severity, f"{name}() forks, replaces, starts or signals a process")

    def tamper(self, node: ast.Call, name: str) -> None:
        self.add("GR111", node, Severity.HIGH, f"{name}() reaches into the interpreter's machinery")

    def setattr_call(self, node: ast.Call, name: str) -> None:
        if node.args and _qualname(node.args[0], self.aliases) in ("builtins", "__builtins__"):
            self.add("GR111", node, Severity.HIGH, "setattr() patches builtins")

    # -- statements and expressions --------------------------------------------------------

    def assign(self, node: ast.Assign | ast.AugAssign | ast.AnnAssign) -> None:
        value = node.value
        if isinstance(value, ast.Name) and value.id in _DANGEROUS_NAMES:
            self.add("GR102", node, Severity.CRITICAL,
                     f"{value.id} is bound to another name (hides what runs)")  # fmt: skip
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)):
                owner = _qualname(target.value, self.aliases)
            else:
                continue
            if owner in ("builtins", "__builtins__", "sys.modules", "builtins.__dict__"):
                self.add("GR111", node, Severity.HIGH, f"assignment patches {owner}")

    def subscript(self, node: ast.Subscript) -> None:
        key = node.slice
        if isinstance(key, ast.Constant) and key.value in _DANGEROUS_NAMES:
            owner = ast.unparse(node.value)  # rare: only lookups of "eval", "exec", ...
            if (
                "builtins" in owner
                or "__dict__" in owner
                or owner.endswith(("globals()", "vars()"))
            ):
                self.add("GR102", node, Severity.CRITICAL,
                         f"{owner}[{key.value!r}] reaches a code runner by lookup")  # fmt: skip

    def attribute(self, node: ast.Attribute) -> None:
        if node.attr == "__subclasses__":
            self.add("GR111", node, Severity.HIGH,
                     "__subclasses__ walks every class (a sandbox-escape idiom)")  # fmt: skip
        elif node.attr in ("__globals__", "__builtins__") and isinstance(node.ctx, ast.Load):
            self.add("GR111", node, Severity.MEDIUM, f"{node.attr} reaches another scope",
                     Confidence.MEDIUM)  # fmt: skip


_Handler = Callable[[_Checker, ast.Call, str], None]


def _handlers() -> dict[str, _Handler]:
    table: dict[str, _Handler] = {}

    def put(names: Iterable[str], handler: _Handler) -> None:
        for name in names:
            table[name] = handler

    put(_CODE_RUNNERS, _Checker.run_code)
    put(_CODE_OBJECTS, _Checker.code_object)
    put(_IMPORTERS, _Checker.dynamic_import)
    put(_ALWAYS_SHELL | _SHELL_KEYWORD, _Checker.shell)
    put(_DESERIALIZERS | _YAML_LOAD, _Checker.deserialize)
    put(_DELETERS, _Checker.delete)
    put(_OPENERS, _Checker.open_call)
    put(_DEST_SECOND, _Checker.dest_second)
    put(_DEST_FIRST, _Checker.dest_first)
    put(_NETWORK, _Checker.network)
    put(_PROCESS, _Checker.process)
    put(_TAMPER_CALLS, _Checker.tamper)
    put(("setattr", "builtins.setattr"), _Checker.setattr_call)
    table["marshal.loads"] = _Checker.code_object
    return table


_CALL_HANDLERS: Final = MappingProxyType(_handlers())


def _alias(node: ast.Import | ast.ImportFrom, aliases: dict[str, str]) -> None:
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.asname:
                aliases[a.asname] = a.name
            else:
                top = a.name.split(".", 1)[0]
                aliases[top] = top
        return
    if node.module is None or node.level:
        return  # relative imports name the bundle's own modules
    for a in node.names:
        aliases[a.asname or a.name] = f"{node.module}.{a.name}"


def check_module(tree: ast.AST, file: str) -> list[Issue]:
    """Every Grace rule over one parsed module."""
    aliases: dict[str, str] = {}
    calls: list[ast.Call] = []
    rest: list[ast.AST] = []
    call_t, attr_t, sub_t = ast.Call, ast.Attribute, ast.Subscript
    assign_t = (ast.Assign, ast.AugAssign, ast.AnnAssign)
    import_t = (ast.Import, ast.ImportFrom)
    for node in ast.walk(tree):
        kind = type(node)
        if kind is call_t:
            calls.append(node)  # type: ignore[arg-type]
        elif kind is attr_t:
            if node.attr in _TAMPER_ATTRS:  # type: ignore[attr-defined]
                rest.append(node)
        elif kind is sub_t:
            if type(node.slice) is ast.Constant:  # type: ignore[attr-defined]
                rest.append(node)
        elif kind in assign_t:
            if node.value is not None:  # type: ignore[attr-defined]
                rest.append(node)
        elif kind in import_t:
            _alias(node, aliases)  # type: ignore[arg-type]
    checker = _Checker(file, aliases)
    for call in calls:
        checker.call(call)
    for node in rest:
        if isinstance(node, ast.Attribute):
            checker.attribute(node)
        elif isinstance(node, ast.Subscript):
            checker.subscript(node)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            checker.assign(node)
    checker.issues.sort(key=lambda i: (i.line, i.column, i.rule_id))
    return checker.issues
