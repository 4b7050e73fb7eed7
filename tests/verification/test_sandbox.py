"""Sandbox containment: each attack really runs, is stopped and reported, the host unharmed.

These start real sandboxed interpreters (about 0.2 s each). Which kernel layers hold is
machine-dependent; tests of one layer alone skip when the kernel does not offer it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from grace.errors import SandboxError
from grace.verification.model import TestRun
from grace.verification.sandbox import Sandbox, SandboxLimits, SandboxSettings

SECRET = "grace-fake-secret-4b1d"  # noqa: S105 - a fake, planted to be hunted


def sandbox(guard: bool = True, **limits: float) -> Sandbox:
    """A sandbox with small limits so that every attack ends quickly."""
    base: dict[str, float] = {
        "wall_s": 20.0,
        "cpu_s": 2,
        "memory_bytes": 256 << 20,
        "processes": 8,
        "output_bytes": 64 << 10,
    }
    base.update(limits)
    bounds = SandboxLimits(**base)  # type: ignore[arg-type]
    return Sandbox(SandboxSettings(limits=bounds, audit_guard=guard))


def run(test_source: str, box: Sandbox | None = None, **files: str) -> TestRun:
    """Run one test file (plus ``files``) in the sandbox."""
    code = {"test_attack.py": textwrap.dedent(test_source).encode()}
    code.update({f"{name}.py": textwrap.dedent(src).encode() for name, src in files.items()})
    return (box or sandbox()).run_sync(code, ["test_attack.py"])


def leftovers() -> list[int]:
    """Processes still running the sandbox's child script."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if b"_sandbox_child.py" in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


@pytest.fixture(autouse=True)
def _no_process_survives() -> Iterator[None]:
    """After every test no sandboxed process is left (the host is unharmed)."""
    yield
    assert leftovers() == []


def test_real_results_are_read_from_the_junit_report() -> None:
    """Passed, failed, skipped and errored tests are counted from pytest's own report."""
    result = run(
        """
        import pytest
        from lib import double

        def test_one(): assert double(2) == 4
        def test_two(): assert double(0) == 0
        def test_wrong(): assert double(3) == 7
        @pytest.mark.skip(reason="later")
        def test_skipped(): pass
        @pytest.fixture
        def broken(): raise RuntimeError("fixture broke")
        def test_broken_fixture(broken): pass
        """,
        lib="def double(x):\n    return 2 * x\n",
    )
    assert (result.passed, result.failed, result.skipped, result.errors) == (2, 1, 1, 1)
    assert result.report_found
    assert result.exit_code == 1
    assert result.duration_s > 0
    assert {f.kind for f in result.failures} == {"failure", "error"}
    assert any("assert 6 == 7" in f.message for f in result.failures)
    assert not result.ok


def test_a_clean_run_is_ok_and_reports_its_isolation() -> None:
    """All tests passing in a run that touched no limit is ``ok``; layers are reported."""
    result = run("def test_fine():\n    assert sum([1, 2]) == 3\n")
    assert result.ok
    assert result.passed == 1
    assert result.isolation.network in ("namespace+guard", "guard")
    assert result.isolation.audit_guard


def test_infinite_loop_is_stopped_by_a_time_limit() -> None:
    """A test that never ends is killed at the CPU (or wall-clock) limit and reported."""
    result = run("def test_spin():\n    while True:\n        pass\n", sandbox(cpu_s=1, wall_s=10))
    assert {"cpu_time", "wall_time"} & set(result.limits_hit)
    assert not result.ok
    assert result.passed == 0


def test_wall_clock_timeout_stops_a_sleeping_test() -> None:
    """A test that sleeps (no CPU) is stopped by the wall-clock limit."""
    result = run("import time\ndef test_nap():\n    time.sleep(60)\n", sandbox(wall_s=1.5))
    assert result.timed_out
    assert "wall_time" in result.limits_hit


def test_fork_bomb_is_stopped_and_every_process_killed() -> None:
    """A fork bomb hits the process limit, is killed whole, and the host can still fork."""
    result = run(
        """
        import os
        def test_bomb():
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """,
        sandbox(processes=8, wall_s=10),
    )
    assert "processes" in result.limits_hit
    assert not result.ok
    assert leftovers() == []
    assert subprocess.run(["true"], check=False).returncode == 0


def test_memory_bomb_hits_the_memory_limit() -> None:
    """Allocating without end fails at the address-space limit and is reported."""
    result = run(
        """
        def test_hog():
            hoard = []
            while True:
                hoard.append(bytearray(32 << 20))
        """,
        sandbox(memory_bytes=256 << 20),
    )
    assert "memory" in result.limits_hit
    assert result.failed == 1
    assert "MemoryError" in result.failures[0].message


def test_huge_output_is_capped_and_stops_the_run() -> None:
    """Printing without end is cut at the output cap and the run is stopped."""
    result = run(
        "def test_shout():\n    while True:\n        print('x' * 4096)\n",
        sandbox(output_bytes=32 << 10),
    )
    assert "output" in result.limits_hit
    assert result.output_truncated
    assert len(result.output.encode()) <= 32 << 10


def test_writing_outside_the_sandbox_is_denied_and_reported(tmp_path: Path) -> None:
    """A write to a host path fails; the guard names it; the file never appears."""
    target = tmp_path / "escaped.txt"
    result = run(
        f"""
        def test_escape():
            with open({str(target)!r}, "w") as f:
                f.write("escaped")
        """
    )
    assert not target.exists()
    assert result.failed == 1
    assert [(d.kind, d.event) for d in result.denials] == [("filesystem", "write")]
    assert str(target) in result.denials[0].target


def test_read_only_mounts_alone_stop_a_write_outside(tmp_path: Path) -> None:
    """Without the audit guard, the kernel's read-only mounts still stop the write."""
    box = sandbox(guard=False)
    probe = run("def test_probe():\n    pass\n", box)
    if not probe.isolation.readonly_root:
        pytest.skip("this kernel does not allow read-only mount namespaces here")
    target = tmp_path / "escaped.txt"
    result = run(f"def test_escape():\n    open({str(target)!r}, 'w').write('x')\n", box)
    assert not target.exists()
    assert "Read-only file system" in result.failures[0].message


def test_hidden_paths_are_empty_inside_the_sandbox(tmp_path: Path) -> None:
    """A configured secret directory (the data dir) is hidden by the kernel, guard or not."""
    secrets_dir = tmp_path / "data"
    secrets_dir.mkdir()
    (secrets_dir / "signing.key").write_text(SECRET)
    box = Sandbox(SandboxSettings(audit_guard=False, hide_paths=(str(secrets_dir),)))
    result = run(
        f"import os\ndef test_look():\n    assert os.listdir({str(secrets_dir)!r}) == []\n", box
    )
    if not result.isolation.mount_namespace:
        pytest.skip("no mount namespace on this machine")
    assert str(secrets_dir) in result.isolation.hidden_paths
    assert result.ok


def test_isolation_cannot_be_required_without_trying_it() -> None:
    """Requiring isolation while turning it off is a settings error."""
    with pytest.raises(ValueError, match="require_isolation"):
        SandboxSettings(isolate=False, require_isolation=True)


def test_deleting_outside_the_sandbox_is_denied(tmp_path: Path) -> None:
    """Removing a host file is refused and the file survives."""
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    result = run(f"import os\ndef test_rm():\n    os.remove({str(victim)!r})\n")
    assert victim.read_text() == "precious"
    assert result.denials[0].event == "os.remove"


def test_reading_host_files_outside_the_allowed_roots_is_denied(tmp_path: Path) -> None:
    """A host file outside the interpreter and system roots cannot be read."""
    secret_file = tmp_path / "credentials"
    secret_file.write_text(SECRET)
    result = run(f"def test_read():\n    print(open({str(secret_file)!r}).read())\n")
    assert SECRET not in result.output
    assert [(d.kind, d.event) for d in result.denials] == [("filesystem", "read")]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real TCP server on the host's loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def test_network_connection_is_blocked_and_reported(listener: socket.socket) -> None:
    """Connecting to a live host server fails; nothing reaches the server."""
    port = listener.getsockname()[1]
    result = run(
        f"""
        import socket
        def test_call_home():
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"stolen")
        """
    )
    assert result.failed == 1
    assert {d.kind for d in result.denials} == {"network"}
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_network_namespace_alone_blocks_the_connection(listener: socket.socket) -> None:
    """Without the guard, the empty network namespace still refuses the connection."""
    box = sandbox(guard=False)
    if not run("def test_probe():\n    pass\n", box).isolation.network_namespace:
        pytest.skip("no network namespace on this machine")
    port = listener.getsockname()[1]
    result = run(
        f"import socket\ndef test_call():\n    socket.create_connection(('127.0.0.1', {port}))\n",
        box,
    )
    assert result.failed == 1
    assert "unreachable" in result.failures[0].message.lower()
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_environment_secrets_never_reach_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret in the host's environment is in neither the child's environment nor any
    readable /proc/*/environ."""
    monkeypatch.setenv("GRACE_FAKE_SECRET", SECRET)
    result = run(
        f"""
        import glob, os

        def test_hunt():
            found = [k for k, v in os.environ.items() if {SECRET!r} in v]
            for path in glob.glob("/proc/*/environ"):
                try:
                    with open(path, "rb") as f:
                        if {SECRET!r}.encode() in f.read():
                            found.append(path)
                except OSError:
                    pass
            print("environment:", sorted(os.environ))
            assert found == []
        """
    )
    assert result.ok
    assert SECRET not in result.output
    assert "GRACE_FAKE_SECRET" not in result.output


def test_starting_a_program_is_denied() -> None:
    """Programs would run without the guard, so starting one is refused."""
    result = run("import subprocess\ndef test_sh():\n    subprocess.run(['true'])\n")
    assert [(d.kind, d.event) for d in result.denials] == [("exec", "subprocess.Popen")]


def test_the_c_helper_under_subprocess_is_denied_too() -> None:
    """Calling _posixsubprocess.fork_exec directly (no audit event of its own) is refused,
    and so is importing a fresh copy of it."""
    result = run(
        """
        import sys
        import _posixsubprocess
        import pytest

        def test_direct():
            with pytest.raises(PermissionError):
                _posixsubprocess.fork_exec()

        def test_fresh_copy():
            del sys.modules["_posixsubprocess"]
            with pytest.raises(PermissionError):
                import _posixsubprocess
        """
    )
    assert result.passed == 2
    denied = {(d.kind, d.event) for d in result.denials}
    assert denied == {("exec", "fork_exec"), ("exec", "re-import")}


def test_native_code_and_gc_introspection_are_denied() -> None:
    """ctypes and gc referent walks (which could reach the guard) are refused."""
    result = run(
        """
        import gc
        import pytest

        def test_ctypes():
            with pytest.raises(PermissionError):
                import ctypes
                ctypes.CDLL(None)

        def test_gc():
            with pytest.raises(PermissionError):
                gc.get_objects()
        """
    )
    assert result.passed == 2
    assert {d.kind for d in result.denials} == {"native", "introspection"}
    assert not result.ok  # a denial is never a clean run


def test_a_report_planted_as_a_link_is_not_followed(tmp_path: Path) -> None:
    """Code that swaps the junit report for a link to a forged report gets no result."""
    forged = tmp_path / "forged.xml"
    forged.write_text(
        '<testsuites><testsuite tests="9"><testcase name="fake"/></testsuite></testsuites>'
    )
    result = run(
        f"""
        import os
        def test_forge():
            report = os.path.join(os.environ["HOME"], "report", "junit.xml")
            os.symlink({str(forged)!r}, report)
        """
    )
    assert not result.report_found
    assert result.passed == 0
    assert not result.ok


def test_tests_must_be_in_the_bundle() -> None:
    """Running a test file that is not among the files is a sandbox error."""
    with pytest.raises(SandboxError, match="not in the bundle"):
        sandbox().run_sync({"a.py": b""}, ["test_a.py"])


def test_a_missing_interpreter_is_a_sandbox_error() -> None:
    """When the sandbox cannot start at all, the error says so (never a verdict)."""
    box = Sandbox(SandboxSettings(python="/nonexistent/python3"))
    with pytest.raises(SandboxError, match="cannot start"):
        box.run_sync({"test_a.py": b"def test_a(): pass\n"}, ["test_a.py"])
