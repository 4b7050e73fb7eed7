"""A private PostgreSQL server for fault tests: own data dir, own port, stopped by its PID.

Fault injection (killing backends, restarting the server, cutting connections) must never
touch the shared server other tests and engineers use; this one is created with
``initdb`` under a temporary directory and removed afterwards. PostgreSQL refuses to run
as root, so when the tests run as root the server runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final

import asyncpg

__all__ = ["CommitCutter", "PrivateServer", "find_bin_dir"]

READY_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 30.0


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding ``initdb`` and ``postgres``."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for path in reversed(found):
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    return None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """``initdb`` once, then start, stop (by PID) and restart a postmaster on a free port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="grace-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.log = self.root / "server.log"

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            user=self._user,
            timeout=120,
        )

    def init(self) -> None:
        """Create the cluster (trust authentication, no fsync while creating it)."""
        self._run(
            *("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres"),
            *("-E", "UTF8", "--locale", "C", "--no-sync"),
        )

    def _spawn(self) -> subprocess.Popen[bytes]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "40",
            "shared_buffers": "16MB",
            "fsync": "off",  # the faults here are process deaths, not power cuts
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        args += ["-k", str(self.root)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            return subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
                start_new_session=True,
            )

    async def start(self) -> None:
        """Start the postmaster and wait until it accepts connections."""
        self.proc = proc = self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=2)
            except (OSError, asyncpg.PostgresError) as e:
                if proc.poll() is not None or loop.time() > deadline:
                    raise RuntimeError(
                        f"private PostgreSQL did not start ({e}): {self.log.read_text()[-2000:]}"
                    ) from e
                await asyncio.sleep(0.05)
            else:
                await conn.close()
                return

    async def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        """Stop the postmaster by its PID (SIGINT: fast shutdown; SIGQUIT: immediate)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(how)
        await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)

    async def restart(self, how: signal.Signals = signal.SIGQUIT, down_s: float = 0.3) -> None:
        """Stop the server (an immediate shutdown is a crash), stay down, start again."""
        await self.stop(how)
        await asyncio.sleep(down_s)
        await self.start()

    async def execute(self, sql: str, *args: Any) -> Any:
        """Run one statement on the ``postgres`` database as superuser; return its status."""
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return await conn.execute(sql, *args)
        finally:
            await conn.close()

    def remove(self) -> None:
        """Kill the server if it still runs and delete its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        shutil.rmtree(self.root, ignore_errors=True)


_COMMIT: Final = b"Q\x00\x00\x00\x0cCOMMIT;\x00"
"""A simple-protocol Query message carrying ``COMMIT;`` (what asyncpg sends to commit)."""


class CommitCutter:
    """A TCP proxy that, when armed, cuts a connection right after passing on a COMMIT.

    The server receives the COMMIT and commits; the client never hears back, so the
    outcome of its transaction is unknown to it: exactly the case a retry must not
    duplicate.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.armed = 0
        """How many more connections to cut after their next COMMIT."""
        self.cuts = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        writers = (client_w, server_w)
        muted = False

        async def upstream() -> None:
            nonlocal muted
            tail = b""
            while data := await client_r.read(65536):
                # A COMMIT may straddle two reads; only one ending in this read is new.
                window = tail + data
                start = max(0, len(tail) - len(_COMMIT) + 1)
                if self.armed and window.find(_COMMIT, start) >= 0:
                    self.armed -= 1
                    muted = True  # the server's answer to this COMMIT never reaches the client
                server_w.write(data)
                await server_w.drain()
                tail = window[-(len(_COMMIT) - 1) :]

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if muted:  # the server answered the COMMIT: it is done; cut both sides
                    self.cuts += 1
                    for w in writers:
                        w.transport.abort()
                    return
                client_w.write(data)
                await client_w.drain()

        # Whichever side ends first ends the connection for both.
        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in writers:
                w.transport.abort()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
