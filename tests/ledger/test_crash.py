"""SIGKILL during heavy concurrent appending never loses an acknowledged entry.

A child process appends from 64 concurrent tasks and prints each receipt's seq only after
``append`` returned (the receipt promises the entry is committed). The test kills it with
SIGKILL at a random point, ten times over on the same data directory, and after every kill
checks that the kernel released the write lock, the log verifies, and every printed seq is
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from grace.ledger import Ledger

pytestmark = pytest.mark.slow

ROUNDS: Final = 10
TASKS: Final = 64
READ_TIMEOUT_S: Final = 30.0
"""Longest wait for one line of child output (it prints many per second once running)."""
EXIT_TIMEOUT_S: Final = 10.0
ROUND_TIMEOUT_S: Final = 120.0
"""Longest wait for one round's receipts (a healthy child needs well under a few seconds)."""

CHILD_SCRIPT: Final = textwrap.dedent(
    f"""
    import asyncio
    import sys

    import structlog

    from grace.ledger import Ledger

    # Logs go to stderr: stdout carries nothing but acknowledged seqs.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


    async def worker(ledger, wid):
        n = 0
        while True:
            receipt = await ledger.append(
                subsystem="crash",
                actor=f"worker-{{wid}}",
                action="append",
                resource=f"r/{{n}}",
                payload={{"worker": wid, "n": n, "pad": "p" * (n % 97)}},
            )
            sys.stdout.write(f"{{receipt.seq}}\\n")
            sys.stdout.flush()
            n += 1


    async def main():
        ledger = await Ledger.open(sys.argv[1])
        await asyncio.gather(*(worker(ledger, w) for w in range({TASKS})))


    asyncio.run(main())
    """
)


@contextlib.asynccontextmanager
async def _child(
    script: Path, data_dir: Path, stderr: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run the appending child; make sure it is dead and reaped however the block exits."""
    with stderr.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(data_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        # Drain the pipe too: a full, unread pipe can keep the transport from finishing.
        await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT_S)


def _tail(stderr: Path) -> str:
    """The end of the child's stderr, for failure messages."""
    return stderr.read_text(errors="replace")[-4000:]


def _parse(line: bytes, stderr: Path) -> int:
    """The seq on one complete stdout line of the child."""
    text = line.decode().strip()
    if not text.isdigit():
        raise AssertionError(f"unexpected child output {line!r}; stderr:\n{_tail(stderr)}")
    return int(text)


async def _run_and_kill(script: Path, data_dir: Path, stderr: Path, target: int) -> list[int]:
    """Start the child, read ``target`` acknowledged seqs, SIGKILL it; return all it printed."""
    seqs: list[int] = []
    async with _child(script, data_dir, stderr) as proc:
        assert proc.stdout is not None
        async with asyncio.timeout(ROUND_TIMEOUT_S):
            while len(seqs) < target:
                line = await asyncio.wait_for(proc.stdout.readline(), READ_TIMEOUT_S)
                if not line.endswith(b"\n"):
                    raise AssertionError(
                        f"child exited (code {proc.returncode}) after {len(seqs)} receipts; "
                        f"stderr:\n{_tail(stderr)}"
                    )
                seqs.append(_parse(line, stderr))
        proc.send_signal(signal.SIGKILL)
        # Lines already in the pipe were printed after their append returned: they count too.
        rest = await asyncio.wait_for(proc.stdout.read(), EXIT_TIMEOUT_S)
        complete, _, _partial = rest.rpartition(b"\n")
        seqs.extend(_parse(line, stderr) for line in complete.split(b"\n") if complete)
        code = await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT_S)
    assert code == -signal.SIGKILL, f"child ended with {code}, not by SIGKILL"
    return seqs


async def test_sigkill_during_concurrent_appends_loses_no_acknowledged_entry(
    tmp_path: Path,
) -> None:
    """After each of ten SIGKILLs the ledger reopens, verifies and holds every acknowledged seq."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = tmp_path / "append_forever.py"
    script.write_text(CHILD_SCRIPT)
    data_dir = tmp_path / "data"
    stderr = tmp_path / "child-stderr.log"
    acknowledged: set[int] = set()
    last_size = 0
    for round_no in range(ROUNDS):
        target = rng.randint(50, 2000)
        context = f"seed {seed}, round {round_no}, target {target}"
        printed = await _run_and_kill(script, data_dir, stderr, target)
        assert len(printed) >= target, context
        assert len(printed) == len(set(printed)), f"a seq was acknowledged twice ({context})"
        assert not acknowledged & set(printed), f"a seq was reused after a crash ({context})"
        assert min(printed) > last_size, f"seqs restarted below the old size ({context})"
        acknowledged.update(printed)

        # A writable open proves the kernel dropped the dead child's flock.
        ledger = await Ledger.open(data_dir)
        try:
            size = await ledger.size()
            assert size >= max(printed), context
            report = await ledger.verify()
            assert report.valid, f"{report} ({context})"
            assert report.entries_checked == size, context
            missing = [seq for seq in sorted(acknowledged) if await ledger.get(seq) is None]
            assert not missing, f"acknowledged seqs lost: {missing[:10]} ({context})"
            entry = await ledger.get(max(printed))
            assert entry is not None
            assert entry.subsystem == "crash"
        finally:
            await ledger.close()
        last_size = size
    assert last_size >= len(acknowledged)
