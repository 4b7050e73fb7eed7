"""Processes Grace manages: registered commands it starts, stops and restarts for real.

The supervisor never restarts anything on its own — a crash is observed (``status``
reports the exit code), and healing it is the immune kernel's governed decision.

Each process runs in its own session (process group), so stopping it reaches its children
too: SIGTERM to the group, then SIGKILL after ``stop_timeout_s``. Commands are argv lists
executed without a shell. Output goes to ``<log_dir>/<name>.log`` when a log directory is
given, else it is discarded (a child must never block on a full pipe nobody reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import structlog

from grace.errors import ExecutorError
from grace.types import Clock

__all__ = ["ProcessSpec", "ProcessStatus", "ProcessSupervisor", "RestartResult"]

log = structlog.get_logger(__name__)

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@=-]{0,199}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """How to run one supervised process."""

    name: str
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    """Extra environment on top of Grace's own (None: inherit unchanged)."""
    stop_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"process name {self.name!r} must match {_NAME.pattern}")
        if not self.argv or not all(isinstance(a, str) and a for a in self.argv):
            raise ValueError(f"process {self.name!r}: argv must be non-empty strings")
        if self.stop_timeout_s <= 0:
            raise ValueError(f"process {self.name!r}: stop_timeout_s must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """What the supervisor knows about a process now."""

    name: str
    running: bool
    pid: int | None = None
    started_at: _dt.datetime | None = None
    exit_code: int | None = None
    """The last exit status (negative: killed by that signal)."""
    restarts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartResult:
    """A restart that happened."""

    name: str
    old_pid: int | None
    new_pid: int
    old_exit_code: int | None


@dataclass(slots=True)
class _Managed:
    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    started_at: _dt.datetime | None = None
    restarts: int = 0
    exit_code: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ProcessSupervisor:
    """Starts, stops and restarts registered commands."""

    def __init__(self, *, clock: Clock, log_dir: Path | None = None) -> None:
        self._clock = clock
        self._log_dir = log_dir
        self._managed: dict[str, _Managed] = {}

    def register(self, spec: ProcessSpec) -> None:
        """Make ``spec`` known (not started); a name is registered once."""
        if spec.name in self._managed:
            raise ExecutorError(f"process {spec.name!r} is already registered")
        self._managed[spec.name] = _Managed(spec)

    def __contains__(self, name: object) -> bool:
        return name in self._managed

    def names(self) -> list[str]:
        """Registered process names."""
        return sorted(self._managed)

    def status(self, name: str) -> ProcessStatus:
        """Running or not, pid, last exit code, restart count."""
        m = self._get(name)
        running = m.process is not None and m.process.returncode is None
        exit_code = m.exit_code
        if m.process is not None and m.process.returncode is not None:
            exit_code = m.process.returncode
        return ProcessStatus(
            name=name,
            running=running,
            pid=m.process.pid if running and m.process is not None else None,
            started_at=m.started_at if running else None,
            exit_code=exit_code,
            restarts=m.restarts,
        )

    async def start(self, name: str) -> int:
        """Start the process if it is not running; its pid."""
        m = self._get(name)
        async with m.lock:
            if m.process is not None and m.process.returncode is None:
                return m.process.pid
            return await self._spawn(m)

    async def stop(self, name: str) -> int | None:
        """Stop the process (TERM, then KILL); its exit code, None if it was not running."""
        m = self._get(name)
        async with m.lock:
            return await self._terminate(m)

    async def restart(self, name: str) -> RestartResult:
        """Stop (if running) and start again; raises ExecutorError if it cannot start."""
        m = self._get(name)
        async with m.lock:
            old_pid = m.process.pid if m.process is not None else None
            old_exit = await self._terminate(m)
            new_pid = await self._spawn(m)
            m.restarts += 1
        log.info("process_restarted", name=name, old_pid=old_pid, new_pid=new_pid)
        return RestartResult(name=name, old_pid=old_pid, new_pid=new_pid, old_exit_code=old_exit)

    async def stop_all(self) -> None:
        """Stop every running process (at shutdown)."""
        await asyncio.gather(*(self.stop(name) for name in self._managed))

    # -- internals -----------------------------------------------------------------------

    def _get(self, name: str) -> _Managed:
        m = self._managed.get(name)
        if m is None:
            raise ExecutorError(f"no supervised process named {name!r}")
        return m

    async def _spawn(self, m: _Managed) -> int:
        spec = m.spec
        env = None if spec.env is None else {**os.environ, **spec.env}
        out: IO[Any] | int = asyncio.subprocess.DEVNULL
        handle: IO[Any] | None = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            handle = (self._log_dir / f"{spec.name.replace('/', '_')}.log").open("ab")
            out = handle
        try:
            m.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                cwd=spec.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        except OSError as e:
            raise ExecutorError(f"cannot start process {spec.name!r}: {e}") from e
        finally:
            if handle is not None:
                handle.close()  # the child has its own descriptor
        m.started_at = self._clock.now()
        m.exit_code = None
        return m.process.pid

    async def _terminate(self, m: _Managed) -> int | None:
        process = m.process
        if process is None:
            return None
        if process.returncode is None:
            self._signal(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), m.spec.stop_timeout_s)
            except TimeoutError:
                self._signal(process, signal.SIGKILL)
                await process.wait()
        # A leader that exited on its own is already reaped: its pid may be reused, so
        # no signal is sent to that group any more.
        m.exit_code = process.returncode
        return m.exit_code

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
