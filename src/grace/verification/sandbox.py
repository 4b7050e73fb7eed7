"""The sandbox: run a bundle's tests with pytest in an isolated, limited child process.

Layers, outermost first (which ones held is reported in every run's :class:`Isolation`;
see docs/adr/0006-verification-sandbox.md):

1. **A fresh directory** (``mkdtemp``, mode 0700) as working directory, ``HOME`` and
   ``TMPDIR``; the environment is an allow-list (``PATH``, ``HOME``, ``TMPDIR``, locale),
   so the host's secrets never reach the child.
2. **Namespaces** where the kernel allows them (user, mount, network, pid): every mount
   read-only except the sandbox directory (``nosuid,nodev,noexec``), ``/run`` and the
   configured secret paths hidden under empty mounts, a private ``/proc``, a network
   namespace without interfaces. The worker runs without capabilities.
3. **Resource limits** (``setrlimit``): CPU seconds, address space, file size, processes,
   open files, no core dumps.
4. **An audit-hook guard** in the sandboxed interpreter: denies, and reports, writes or
   reads outside their roots, network, starting programs, native code, ``gc``
   introspection and forks beyond the limit (:mod:`grace.verification._sandbox_child`).
5. **Supervision** here: a wall-clock timeout, an output cap, a process-count watchdog;
   the whole session is SIGKILLed when any trips, and swept again after every run.

Results are read from pytest's junit XML report (real counts and durations), opened
without following links and size-capped. Code under test runs in the same process as
pytest, so a report is evidence of behaviour, not proof against an adversary: the static
stage refuses obfuscated code before anything runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from grace.errors import SandboxError
from grace.verification.model import Denial, Isolation, TestFailure, TestRun

__all__ = ["DEFAULT_READ_ROOTS", "Sandbox", "SandboxLimits", "SandboxSettings"]

log = structlog.get_logger(__name__)

_CHILD: Final = Path(__file__).with_name("_sandbox_child.py")
_STAGE_FAILURES: Final = {95: "worker exec failed", 96: "init failed", 97: "isolation failed"}
_MAX_REPORT_BYTES: Final = 4 << 20
_MAX_STATUS_BYTES: Final = 64 << 10
_MAX_DENY_BYTES: Final = 256 << 10
_MAX_FAILURES: Final = 50
_WATCH_INTERVAL_S: Final = 0.2
_DRAIN_AFTER_EXIT_S: Final = 1.0

DEFAULT_READ_ROOTS: Final = ("/usr", "/lib", "/lib32", "/lib64", "/etc", "/dev", "/sys")
"""What sandboxed code may read besides the sandbox and the interpreter's own paths."""

_LIMIT_SIGNALS: Final = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}
_LIMIT_PATTERNS: Final = (
    (re.compile(r"\bMemoryError\b"), "memory"),
    (re.compile(r"Resource temporarily unavailable|\[Errno 11\]"), "processes"),
    (re.compile(r"File too large|\[Errno 27\]"), "file_size"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    wall_s: float = 60.0
    cpu_s: int = 30
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS)."""
    file_bytes: int = 16 << 20
    """Largest file a process may write (RLIMIT_FSIZE)."""
    processes: int = 32
    open_files: int = 256
    output_bytes: int = 1 << 20
    """stdout + stderr kept; more stops the run."""

    def __post_init__(self) -> None:
        if self.wall_s <= 0 or self.cpu_s < 1:
            raise ValueError("sandbox wall_s must be positive and cpu_s at least 1")
        if self.memory_bytes < 64 << 20:
            raise ValueError("sandbox memory_bytes must be at least 64 MiB (the interpreter)")
        if min(self.file_bytes, self.processes, self.open_files, self.output_bytes) < 1:
            raise ValueError("sandbox limits must be positive")
        if self.open_files < 16:
            raise ValueError("sandbox open_files must be at least 16 (pytest needs some)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    """How the sandbox isolates (built once at boot)."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    isolate: bool = True
    """Try namespaces (user, mount, network, pid)."""
    require_isolation: bool = False
    """Refuse to run tests (SandboxError) when no network namespace can be had."""
    audit_guard: bool = True
    """Install the audit-hook guard (off only to test the kernel layers alone)."""
    allow_exec: bool = False
    """Let tests start programs (those run without the guard)."""
    python: str = field(default_factory=lambda: sys.executable)
    """The interpreter for the sandbox; it must have pytest."""
    plugins: tuple[str, ...] = ("pytest_asyncio",)
    """pytest plugins to load when installed (autoloading is off)."""
    read_roots: tuple[str, ...] = DEFAULT_READ_ROOTS
    hide_paths: tuple[str, ...] = ()
    """Directories or files to hide under empty mounts (e.g. the data dir with keys)."""
    base_dir: Path | None = None
    """Where sandbox directories are created (default: the system temp dir)."""
    max_concurrent: int = 2

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("sandbox max_concurrent must be at least 1")
        if self.require_isolation and not self.isolate:
            raise ValueError("sandbox require_isolation needs isolate=True")


class Sandbox:
    """Runs test files in a fresh, isolated child process; thread-safe."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        if self.settings.python == sys.executable and importlib.util.find_spec("pytest") is None:
            raise SandboxError("pytest is not installed for the sandbox interpreter")
        self._slots = threading.BoundedSemaphore(self.settings.max_concurrent)
        self._plugins = tuple(
            p for p in self.settings.plugins if importlib.util.find_spec(p) is not None
        )

    async def run(self, files: Mapping[str, bytes], tests: Sequence[str]) -> TestRun:
        """Write ``files`` into a fresh sandbox and run pytest on the ``tests`` among them."""
        return await asyncio.to_thread(self.run_sync, files, tests)

    async def isolation(self) -> Isolation:
        """Which layers hold on this machine (runs one trivial test)."""
        run = await self.run({"test_probe.py": b"def test_probe():\n    pass\n"}, ["test_probe.py"])
        return run.isolation

    def run_sync(self, files: Mapping[str, bytes], tests: Sequence[str]) -> TestRun:
        """Blocking :meth:`run`."""
        if not tests:
            raise SandboxError("no test files to run")
        missing = [t for t in tests if t not in files]
        if missing:
            raise SandboxError(f"test files not in the bundle: {missing}")
        with self._slots:
            try:
                root = Path(
                    tempfile.mkdtemp(prefix="grace-sandbox-", dir=self.settings.base_dir)
                ).resolve()
            except OSError as e:
                raise SandboxError(f"cannot create a sandbox directory: {e}") from e
            try:
                return self._run_in(root, files, tests)
            finally:
                _remove_tree(root)

    # -- one run ------------------------------------------------------------------------

    def _run_in(self, root: Path, files: Mapping[str, bytes], tests: Sequence[str]) -> TestRun:
        work, tmp, report_dir = root / "work", root / "tmp", root / "report"
        try:
            for d in (work, tmp, report_dir):
                d.mkdir(mode=0o700)
            for name, data in files.items():
                path = work / name
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.write_bytes(data)
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise SandboxError(f"cannot prepare the sandbox directory {root}: {e}") from e
        try:
            return self._execute(root, work, tmp, report_dir, root_fd, tests)
        finally:
            os.close(root_fd)

    def _config(
        self, root: Path, work: Path, report: Path, tests: Sequence[str], fds: tuple[int, int]
    ) -> dict[str, Any]:
        s, limits = self.settings, self.settings.limits
        args = [*tests, "-p", "no:cacheprovider", "-c", os.devnull]
        args += ["--rootdir", str(work), "--confcutdir", str(work), "--junitxml", str(report)]
        args += ["-o", "junit_family=xunit2", "-s", "-q", "--color=no", "-W", "default"]
        for plugin in self._plugins:
            args += ["-p", plugin]
        if "pytest_asyncio" in self._plugins:
            args += ["-o", "asyncio_default_fixture_loop_scope=function"]
        return {
            "python": s.python,
            "script": str(_CHILD),
            "sandbox": str(root),
            "work": str(work),
            "junit": str(report),
            "isolate": s.isolate,
            "require_isolation": s.require_isolation,
            "guard": s.audit_guard,
            "allow_exec": s.allow_exec,
            "status_fd": fds[0],
            "deny_fd": fds[1],
            "read_roots": list(s.read_roots),
            "hide": list(s.hide_paths),
            "limits": {
                "cpu_s": limits.cpu_s,
                "memory_bytes": limits.memory_bytes,
                "file_bytes": limits.file_bytes,
                "processes": limits.processes,
                "open_files": limits.open_files,
            },
            "env": {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(root),
                "TMPDIR": str(root / "tmp"),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "TZ": "UTC",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            },
            "pytest_args": args,
        }

    def _execute(
        self,
        root: Path,
        work: Path,
        tmp: Path,
        report_dir: Path,
        root_fd: int,
        tests: Sequence[str],
    ) -> TestRun:
        limits = self.settings.limits
        status_r, status_w = os.pipe()
        deny_r, deny_w = os.pipe()
        cfg = self._config(root, work, report_dir / "junit.xml", tests, (status_w, deny_w))
        argv = [self.settings.python, "-I", "-B", str(_CHILD), "launch", json.dumps(cfg)]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                argv,
                cwd=work,
                env=cfg["env"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(status_w, deny_w),
                start_new_session=True,
            )
        except OSError as e:
            os.close(status_r)
            os.close(deny_r)
            raise SandboxError(f"cannot start the sandbox interpreter {argv[0]}: {e}") from e
        finally:
            os.close(status_w)
            os.close(deny_w)
        try:
            watch = _Supervisor(proc, limits, status_r, deny_r, started)
            watch.run()
        finally:
            os.close(status_r)
            os.close(deny_r)
            _kill_session(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        wall = time.monotonic() - started
        return self._result(proc, watch, root_fd, wall)

    def _result(
        self, proc: subprocess.Popen[bytes], watch: _Supervisor, root_fd: int, wall: float
    ) -> TestRun:
        records = _json_lines(bytes(watch.status))
        launch = next((r["launch"] for r in records if "launch" in r), None)
        init: dict[str, Any] = next((r["init"] for r in records if "init" in r), {})
        worker = next((r["worker"] for r in records if "worker" in r), None)
        output = bytes(watch.output).decode("utf-8", errors="replace")
        if launch is None:
            raise SandboxError(f"the sandbox did not start: {output[-2000:] or 'no output'}")
        isolation = Isolation(
            user_namespace=bool(launch.get("user_namespace")),
            mount_namespace=bool(launch.get("mount_namespace")),
            network_namespace=bool(launch.get("network_namespace")),
            pid_namespace=bool(launch.get("pid_namespace")),
            readonly_root=bool(init.get("readonly_root")),
            private_proc=bool(init.get("private_proc")),
            nproc_enforced=os.getuid() != 0,
            audit_guard=self.settings.audit_guard,
            hidden_paths=tuple(str(p) for p in init.get("hidden_paths", ())),
            errors=tuple(
                str(e) for e in (*launch.get("errors", ()), *init.get("filesystem_errors", ()))
            ),
        )
        if worker is not None:
            exit_code, sig = worker.get("exit_code"), worker.get("signal")
        elif proc.returncode is not None and proc.returncode < 0:
            exit_code, sig = None, -proc.returncode
        else:
            exit_code, sig = proc.returncode, None
        if exit_code in _STAGE_FAILURES and not watch.killed:
            why = "; ".join(isolation.errors) or output[-500:]
            raise SandboxError(f"sandbox {_STAGE_FAILURES[exit_code]}: {why}")
        seen: dict[tuple[str, str, str], int] = {}
        for d in _json_lines(bytes(watch.denied)):
            key = (str(d.get("kind")), str(d.get("event")), str(d.get("target")))
            seen[key] = seen.get(key, 0) + 1
        denials = tuple(Denial(kind=k, event=e, target=t, count=n) for (k, e, t), n in seen.items())
        counts, failures, duration, found = _read_report(root_fd)
        limits = list(watch.limits)
        if sig in _LIMIT_SIGNALS:
            limits.append(_LIMIT_SIGNALS[signal.Signals(sig)])
        elif sig == signal.SIGKILL and not watch.killed:
            limits.append("killed")
        evidence = output + "\n".join(f.message for f in failures)
        limits += [name for pattern, name in _LIMIT_PATTERNS if pattern.search(evidence)]
        if any(d.kind == "processes" for d in denials):
            limits.append("processes")
        return TestRun(
            passed=counts["passed"],
            failed=counts["failed"],
            errors=counts["errors"],
            skipped=counts["skipped"],
            duration_s=duration,
            wall_s=wall,
            exit_code=exit_code,
            signal=sig,
            timed_out=watch.timed_out,
            limits_hit=tuple(dict.fromkeys(limits)),
            denials=denials,
            failures=failures,
            report_found=found,
            output=output,
            output_truncated=watch.truncated,
            isolation=isolation,
        )


class _Supervisor:
    """Reads the child's pipes and enforces wall time, output size and process count."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        limits: SandboxLimits,
        status_fd: int,
        deny_fd: int,
        started: float,
    ) -> None:
        self.proc = proc
        self.bounds = limits
        self.started = started
        self.output = bytearray()
        self.status = bytearray()
        self.denied = bytearray()
        self.truncated = False
        self.timed_out = False
        self.killed = False
        self.limits: list[str] = []
        """Names of the limits that stopped the run."""
        self._fds = {status_fd: self.status, deny_fd: self.denied}
        self._caps = {status_fd: _MAX_STATUS_BYTES, deny_fd: _MAX_DENY_BYTES}

    def stop(self, reason: str | None) -> None:
        if reason is not None and reason not in self.limits:
            self.limits.append(reason)
        if not self.killed:
            self.killed = True
            _kill_session(self.proc.pid)

    def run(self) -> None:
        if self.proc.stdout is None:  # pragma: no cover - Popen(stdout=PIPE) sets it
            raise SandboxError("the sandbox's output pipe is missing")
        out_fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        try:
            for fd in (out_fd, *self._fds):
                sel.register(fd, selectors.EVENT_READ)
            deadline = self.started + self.bounds.wall_s
            next_watch = self.started + _WATCH_INTERVAL_S
            exited_at: float | None = None
            while sel.get_map():
                now = time.monotonic()
                if now >= deadline and not self.killed:
                    self.timed_out = True
                    self.stop("wall_time")
                for key, _ in sel.select(timeout=0.05):
                    self._read(sel, key.fd, out_fd)
                now = time.monotonic()
                if exited_at is None and _exited(self.proc.pid):
                    exited_at = now
                    # The launcher is gone: whatever is left in its session is an orphan.
                    _kill_session(self.proc.pid)
                if exited_at is not None and now - exited_at > _DRAIN_AFTER_EXIT_S:
                    break
                if not self.killed and now >= next_watch:
                    next_watch = now + _WATCH_INTERVAL_S
                    if len(_session_members(self.proc.pid)) > self.bounds.processes + 2:
                        self.stop("processes")
        finally:
            sel.close()

    def _read(self, sel: selectors.BaseSelector, fd: int, out_fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            sel.unregister(fd)
            return
        if fd == out_fd:
            room = self.bounds.output_bytes - len(self.output)
            if len(chunk) > room:
                self.output += chunk[: max(room, 0)]
                self.truncated = True
                self.stop("output")
            else:
                self.output += chunk
            return
        buffer = self._fds[fd]
        if len(buffer) < self._caps[fd]:
            buffer += chunk[: self._caps[fd] - len(buffer)]


# -- processes --------------------------------------------------------------------------


def _session_members(sid: int) -> list[int]:
    """Live processes whose session is ``sid`` (zombies excluded: they cannot be killed)."""
    members: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        # state ppid pgrp session ...
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            members.append(int(name))
    return members


def _exited(pid: int) -> bool:
    """Whether ``pid`` (our child) has exited, *without* reaping it: while its zombie
    exists its pid, and so the session id we kill by, cannot be reused."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_session(sid: int) -> None:
    """SIGKILL the process group and every other member of the session, until none is
    left (a fork bomb keeps forking while we kill)."""
    for _ in range(100):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)
        members = _session_members(sid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    log.warning("sandbox_stragglers", session=sid)


def _remove_tree(root: Path) -> None:
    """Delete a sandbox directory even if the child took permissions away."""
    for dirpath, _dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        log.warning("sandbox_not_removed", path=str(root))


# -- results ----------------------------------------------------------------------------


def _json_lines(data: bytes) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in data.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def _read_report(root_fd: int) -> tuple[dict[str, int], tuple[TestFailure, ...], float, bool]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    data = _read_untrusted(root_fd, ("report", "junit.xml"))
    if data is None:
        return counts, (), 0.0, False
    try:
        # Untrusted XML: capped at 4 MiB; expat >= 2.4.1 bounds entity amplification and
        # ElementTree never fetches external entities.
        tree = ET.fromstring(data)  # noqa: S314
    except ET.ParseError:
        return counts, (), 0.0, False
    failures: list[TestFailure] = []
    duration = 0.0
    for suite in tree.iter("testsuite"):
        with contextlib.suppress(ValueError):
            duration += float(suite.get("time", "0"))
    for case in tree.iter("testcase"):
        name = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
        kind = next(
            (k for k in ("error", "failure", "skipped") if case.find(k) is not None), "passed"
        )
        if kind == "passed":
            counts["passed"] += 1
            continue
        if kind == "skipped":
            counts["skipped"] += 1
            continue
        counts["errors" if kind == "error" else "failed"] += 1
        element = case.find(kind)
        message = (element.get("message") if element is not None else None) or ""
        if len(failures) < _MAX_FAILURES:
            failures.append(TestFailure(name=name, kind=kind, message=message[:500]))
    return counts, tuple(failures), duration, True


def _read_untrusted(root_fd: int, parts: tuple[str, ...]) -> bytes | None:
    """Read a file the child wrote, never following a link it may have planted."""
    fds: list[int] = []
    try:
        fd = root_fd
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            fd = os.open(part, flags | os.O_NONBLOCK, dir_fd=fd)
            fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_REPORT_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(_MAX_REPORT_BYTES + 1)[:_MAX_REPORT_BYTES]
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)
