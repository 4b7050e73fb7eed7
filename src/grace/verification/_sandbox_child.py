"""The sandboxed side of :mod:`grace.verification.sandbox`: isolate, limit, run pytest.

Run as a script (``python -I -B _sandbox_child.py STAGE CONFIG_JSON``), never imported by
Grace. Standard library only: it runs before, and outside, anything it could trust.

Stages (each a fresh, single-threaded process):

``launch``  the process the host started, leader of its own session. Tries to enter new
            user, mount, network and pid namespaces (as root without user namespaces:
            mount, network and pid only), reports on the status fd which layers are in
            effect, then forks ``init`` (or, without a pid namespace, becomes the worker).
``init``    pid 1 of the new pid namespace. Makes every mount read-only except the
            sandbox directory (bind-mounted ``nosuid,nodev,noexec``), mounts a fresh
            ``/proc`` (only the sandbox's processes are visible), hides configured secret
            paths under empty read-only mounts, sets the resource limits, forks the worker
            and reaps every process until the worker exits. When it exits the kernel
            kills whatever the worker left behind.
``worker``  a fresh interpreter (exec'd: capabilities are gone, ``no_new_privs`` set).
            Installs the audit-hook guard, then runs pytest in process with the junit
            report in the sandbox.

The guard (``sys.addaudithook``) denies, and reports on the deny fd: writes, deletes,
renames, links and attribute changes outside the sandbox; reads outside an allow-list
of roots (the interpreter, ``/usr``, ``/etc``, ``/dev``, ...); directory fds outside the
sandbox; every socket except unix sockets inside the sandbox, and name resolution;
starting programs (they would run without the guard); loading native code through
ctypes; ``gc`` introspection (it could reach the guard's state); forks beyond the
process limit. Audit hooks are not a security boundary on their own (PEP 578): they are
the layer that *names* what was attempted, while the kernel layers (namespaces, read-only
mounts, rlimits) are what hold where they are available.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

PR_SET_PDEATHSIG = 1
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
# SECBIT_NOROOT | _LOCKED | SECBIT_NO_SETUID_FIXUP | _LOCKED: uid 0 gains no capabilities
# at execve, so the worker runs without any even when the sandbox runs as root.
SECUREBITS_NOROOT = 0x0F

_MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)


def _errno_text() -> str:
    err = ctypes.get_errno()
    return f"{os.strerror(err)} (errno {err})"


def _unshare(flags: int) -> str | None:
    if _libc.unshare(flags) != 0:
        return _errno_text()
    return None


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> str | None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        return f"mount {target}: {_errno_text()}"
    return None


def _prctl(option: int, arg: int) -> bool:
    return bool(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) == 0)


def _send(fd: int, record: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- launch -----------------------------------------------------------------------------


def launch(cfg: dict[str, Any]) -> None:
    status_fd = int(cfg["status_fd"])
    iso: dict[str, Any] = {
        "user_namespace": False,
        "mount_namespace": False,
        "network_namespace": False,
        "pid_namespace": False,
        "errors": [],
    }
    errors: list[str] = iso["errors"]
    if cfg["isolate"]:
        uid, gid = os.getuid(), os.getgid()
        failed = _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
        if failed is None:
            # Identity mapping: the sandbox keeps the host uid (so file access is what it
            # would be), and the capabilities of the new namespace are dropped at exec.
            try:
                _write_file("/proc/self/setgroups", "deny")
                _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
                _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
                iso.update(user_namespace=True, mount_namespace=True)
                iso.update(network_namespace=True, pid_namespace=True)
            except OSError as e:
                errors.append(f"user namespace maps: {e}")
                _send(status_fd, {"launch": iso})
                os._exit(97)
        else:
            errors.append(f"user namespace: {failed}")
            if os.geteuid() == 0:
                failed = _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
                if failed is None:
                    iso.update(mount_namespace=True, network_namespace=True, pid_namespace=True)
                else:
                    errors.append(f"namespaces as root: {failed}")
        if not iso["network_namespace"] and cfg.get("require_isolation"):
            _send(status_fd, {"launch": iso})
            os._exit(97)
    _send(status_fd, {"launch": iso})
    if not iso["pid_namespace"]:
        # No pid namespace: no init; the process-count limit is relative to what this uid
        # already runs, because RLIMIT_NPROC counts every process of the user.
        _set_limits(cfg, relative_nproc=True)
        _exec_worker(cfg, status_fd)
    pid = os.fork()
    if pid == 0:
        try:
            init(cfg, status_fd, iso)
        finally:
            os._exit(96)
    os.close(status_fd)
    while True:
        try:
            _, st = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))


# -- init (pid 1 of the sandbox) --------------------------------------------------------


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")).replace(
        "\\134", "\\"
    )


def _mounts() -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            target, options = _unescape(parts[4]), parts[5].split(",")
            flags = 0
            for opt in options:
                flags |= _MOUNT_OPTION_FLAGS.get(opt, 0)
            found.append((target, flags))
    return found


def _isolate_filesystem(cfg: dict[str, Any], iso: dict[str, Any]) -> None:
    errors: list[str] = []
    sandbox = str(cfg["sandbox"])
    failed = _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    if failed:
        # Without private propagation our mounts could leak to the host: stop here.
        iso["filesystem_errors"] = [failed]
        return
    before = dict(_mounts())
    parent_flags = max(
        (t for t in before if sandbox == t or sandbox.startswith(t.rstrip("/") + "/")),
        key=len,
        default="/",
    )
    failed = _mount(sandbox, sandbox, None, MS_BIND | MS_REC, None)
    if failed:
        errors.append(failed)
    else:
        atime = before.get(parent_flags, 0) & (MS_NOATIME | MS_NODIRATIME | MS_RELATIME)
        failed = _mount(
            None,
            sandbox,
            None,
            MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | atime,
            None,
        )
        if failed:
            errors.append(failed)
    readonly_root = False
    for target, flags in sorted(_mounts(), key=lambda m: m[0].count("/")):
        if target == sandbox or target.startswith(sandbox.rstrip("/") + "/"):
            continue
        failed = _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, None)
        if failed:
            errors.append(failed)
        elif target == "/":
            readonly_root = True
    iso["readonly_root"] = readonly_root and not errors
    failed = _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    if failed is None:
        failed = _mount(
            None,
            "/proc",
            None,
            MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        )
    iso["private_proc"] = failed is None
    if failed:
        errors.append(failed)
    hidden: list[str] = []
    for path in [*cfg.get("hide", []), "/run"]:
        path = str(path)
        if os.path.isdir(path) and not os.path.islink(path):
            failed = _mount(
                "tmpfs",
                path,
                "tmpfs",
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=4k,mode=0555",
            )
        elif os.path.isfile(path):
            failed = _mount("/dev/null", path, None, MS_BIND, None)
            if failed is None:
                failed = _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        else:
            continue
        if failed:
            errors.append(failed)
        else:
            hidden.append(path)
    iso["hidden_paths"] = hidden
    iso["filesystem_errors"] = errors[:20]


def init(cfg: dict[str, Any], status_fd: int, iso: dict[str, Any]) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    report: dict[str, Any] = {}
    if iso["mount_namespace"]:
        _isolate_filesystem(cfg, report)
    _send(status_fd, {"init": report})
    cfg = {**cfg, "private_proc": bool(report.get("private_proc"))}
    _set_limits(cfg, relative_nproc=not iso["user_namespace"])
    worker = os.fork()
    if worker == 0:
        try:
            _exec_worker(cfg, status_fd)
        finally:
            os._exit(95)
    code: int | None = None
    sig: int | None = None
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if pid == worker:
            if os.WIFEXITED(st):
                code = os.WEXITSTATUS(st)
            else:
                sig = os.WTERMSIG(st)
            break
    _send(status_fd, {"worker": {"exit_code": code, "signal": sig}})
    # Exiting pid 1 makes the kernel kill every process left in the namespace.
    os._exit(code if code is not None else 128 + (sig or 0))


# -- limits and the worker --------------------------------------------------------------


def _processes_of(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _set_limits(cfg: dict[str, Any], *, relative_nproc: bool) -> None:
    limits: dict[str, int] = cfg["limits"]
    cpu = limits["cpu_s"]
    nproc = limits["processes"] + 1  # + init, or the worker itself
    if relative_nproc:
        nproc += _processes_of(os.getuid())
    wanted = (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"], limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, soft, hard in wanted:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


def _exec_worker(cfg: dict[str, Any], status_fd: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Only possible with CAP_SETPCAP (root, or a fresh user namespace); without it there
    # are no capabilities to lose.
    _prctl(PR_SET_SECUREBITS, SECUREBITS_NOROOT)
    os.set_inheritable(status_fd, False)
    python = str(cfg["python"])
    argv = [python, "-I", "-B", str(cfg["script"]), "worker", json.dumps(cfg)]
    os.execve(python, argv, dict(cfg["env"]))  # noqa: S606


# -- worker: the guard ------------------------------------------------------------------


def _install_guard(cfg: dict[str, Any]) -> None:
    """Add the audit hook. Everything it uses lives in this closure (immutable values, and
    two sets nobody else can reach), so code under test cannot find it without ``gc``."""
    import _thread

    realpath = os.path.realpath
    sandbox = realpath(str(cfg["sandbox"]))
    inside_prefix = sandbox.rstrip("/") + "/"
    report = realpath(str(cfg["junit"]))
    deny_fd = int(cfg["deny_fd"])
    allow_exec = bool(cfg["allow_exec"])
    private_proc = bool(cfg.get("private_proc"))
    max_procs = int(cfg["limits"]["processes"])
    roots = {realpath(str(p)) for p in cfg["read_roots"]}
    roots.update(realpath(p) for p in sys.path if p)
    roots.update(realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix))
    if private_proc:
        roots.add("/proc")
    read_roots = tuple(sorted(r.rstrip("/") + "/" for r in roots if r != "/"))
    writable_devices = frozenset({"/dev/null", "/dev/zero", "/dev/full", "/dev/tty"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    busy: set[int] = set()
    sent = [0]
    get_ident = _thread.get_ident

    def deny(kind: str, event: str, target: object) -> None:
        __tracebackhide__ = True  # pytest: show the test's line, not the guard's
        if sent[0] < 200:
            sent[0] += 1
            _send(deny_fd, {"kind": kind, "event": event, "target": repr(target)[:300]})
        raise PermissionError(f"grace sandbox: {event} on {target!r} is not allowed ({kind})")

    def resolve(path: Any, dir_fd: Any = None) -> str:
        if isinstance(path, int):
            try:
                return os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return f"<fd {path}>"
        text = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(text):
            try:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                return f"<fd {dir_fd}>/{text}"
            text = os.path.join(base, text)
        return realpath(text)

    def inside(resolved: str) -> bool:
        return resolved == sandbox or resolved.startswith(inside_prefix)

    def readable(resolved: str) -> bool:
        if inside(resolved) or resolved in writable_devices:
            return True
        if resolved.startswith(("/proc/self/", "/proc/thread-self/")):
            return True
        pid_dir = f"/proc/{os.getpid()}"
        if resolved == pid_dir or resolved.startswith(pid_dir + "/"):
            return True
        probe = resolved + "/"
        return any(probe.startswith(root) for root in read_roots)

    def check_open(args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        path, _mode, flags = args
        if isinstance(path, int):
            return  # wrapping an fd this process already holds
        target = resolve(path)
        if isinstance(flags, int) and flags & write_flags:
            if target == report and not _called_from_junitxml():
                deny("filesystem", "write", target)
            if not inside(target) and target not in writable_devices:
                deny("filesystem", "write", target)
            return
        if not readable(target):
            deny("filesystem", "read", target)
        if _mode is None and not inside(target) and os.path.isdir(target):
            # a directory fd outside would let *at() calls escape the path checks
            deny("filesystem", "directory fd", target)

    def check_paths(
        indexes: tuple[int, ...], dir_fd_index: int | None
    ) -> Callable[[str, tuple[object, ...]], None]:
        def check(event: str, args: tuple[object, ...]) -> None:
            __tracebackhide__ = True
            dir_fd = args[dir_fd_index] if dir_fd_index is not None else None
            for i in indexes:
                if i < len(args) and args[i] is not None:
                    target = resolve(args[i], dir_fd)
                    if not inside(target):
                        deny("filesystem", event, target)

        return check

    def check_socket_new(args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        family = args[1]
        if family != 1:  # AF_UNIX
            deny("network", "socket", family)

    def check_address(event: str, args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        address = args[1] if len(args) > 1 else None
        named = isinstance(address, (str, bytes)) and address and address[:1] not in ("\0", b"\0")
        if named and inside(resolve(address)):
            return
        deny("network", event, address)

    def check_fork(args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        if private_proc:
            count = sum(1 for name in os.listdir("/proc") if name.isdigit()) - 1  # not init
            if count >= max_procs:
                deny("processes", "fork", f"{count} processes running (limit {max_procs})")

    def check_listing(event: str, args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        path = args[0] if args and args[0] is not None else "."
        target = resolve(path)
        if not readable(target):
            deny("filesystem", event, target)

    def check_kill(event: str, args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        if private_proc:
            return  # only the sandbox's own processes are visible
        pid = args[0]
        if pid not in (0, os.getpid(), -os.getpgrp()):
            deny("processes", event, pid)

    path_events = {
        "os.remove": check_paths((0,), 1),
        "os.rmdir": check_paths((0,), 1),
        "os.mkdir": check_paths((0,), 2),
        "os.rename": check_paths((0, 1), 2),
        "os.chmod": check_paths((0,), 2),
        "os.chown": check_paths((0,), 3),
        "os.link": check_paths((0, 1), 2),
        "os.symlink": check_paths((1,), 2),
        "os.truncate": check_paths((0,), None),
        "os.utime": check_paths((0,), 3),
        "os.chflags": check_paths((0,), None),
        "os.lchflags": check_paths((0,), None),
        "os.lchmod": check_paths((0,), None),
        "os.setxattr": check_paths((0,), None),
        "os.removexattr": check_paths((0,), None),
        "shutil.rmtree": check_paths((0,), 1),
        "shutil.copyfile": check_paths((1,), None),
        "shutil.copymode": check_paths((1,), None),
        "shutil.copystat": check_paths((1,), None),
        "shutil.copytree": check_paths((1,), None),
        "shutil.move": check_paths((1,), None),
        "shutil.make_archive": check_paths((0,), None),
        "shutil.unpack_archive": check_paths((1,), None),
        "tempfile.mkstemp": check_paths((0,), None),
        "tempfile.mkdtemp": check_paths((0,), None),
    }
    exec_events = frozenset(
        {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile"}
    )
    network_events = frozenset(
        {
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyaddr",
            "socket.getnameinfo",
            "socket.sethostname",
        }
    )
    address_events = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"})
    native_events = frozenset(
        {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata"}
    )
    introspection_events = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents"})

    def hook(event: str, args: tuple[object, ...]) -> None:
        __tracebackhide__ = True
        ident = get_ident()
        if ident in busy:
            return  # our own checks (listdir, readlink) raise events too
        busy.add(ident)
        try:
            if event == "open":
                check_open(args)
            elif event in path_events:
                path_events[event](event, args)
            elif event == "socket.__new__":
                check_socket_new(args)
            elif event in address_events:
                check_address(event, args)
            elif event in network_events:
                deny("network", event, args[0] if args else None)
            elif event in ("os.fork", "os.forkpty"):
                check_fork(args)
            elif event in exec_events:
                if not allow_exec:
                    deny("exec", event, args[0] if args else None)
            elif event in native_events:
                deny("native", event, args[0] if args else None)
            elif event in introspection_events:
                deny("introspection", event, None)
            elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
                check_kill(event, args)
            elif event in ("os.listdir", "os.scandir"):
                check_listing(event, args)
            elif event == "import" and args and args[0] in reimport_denied:
                deny("exec", "re-import", args[0])
        finally:
            busy.discard(ident)

    reimport_denied: frozenset[str] = frozenset()
    if not allow_exec:
        # subprocess.Popen raises an audit event, but the C helper under it does not:
        # replace the helper (and keep a fresh copy of its module from being imported).
        import _posixsubprocess

        def no_fork_exec(*args: object, **_kwargs: object) -> None:
            __tracebackhide__ = True
            deny("exec", "fork_exec", args[1] if len(args) > 1 else None)

        _posixsubprocess.fork_exec = no_fork_exec  # type: ignore[assignment]
        if "subprocess" in sys.modules:
            setattr(sys.modules["subprocess"], "_fork_exec", no_fork_exec)  # noqa: B010
        reimport_denied = frozenset({"_posixsubprocess"})

    sys.addaudithook(hook)


def _called_from_junitxml() -> bool:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return False
        if frame.f_code.co_filename.endswith(os.path.join("_pytest", "junitxml.py")):
            return True
        frame = frame.f_back
    return False


def worker(cfg: dict[str, Any]) -> None:
    sys.dont_write_bytecode = True
    os.umask(0o077)
    work = str(cfg["work"])
    if cfg.get("guard", True):
        _install_guard(cfg)
    os.chdir(work)
    sys.path.insert(0, work)

    import pytest

    main_pid = os.getpid()

    class OnlyTheMainProcessReports:
        """A test that forks leaves copies of the session; only the original may report."""

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_protocol(self, item: object, nextitem: object) -> object:
            if os.getpid() != main_pid:
                os._exit(0)
            return (yield)

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_sessionfinish(self, session: object, exitstatus: object) -> object:
            if os.getpid() != main_pid:
                os._exit(0)
            return (yield)

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_logreport(self, report: object) -> None:
            if os.getpid() != main_pid:
                os._exit(0)

    args: list[str] = list(cfg["pytest_args"])
    code = pytest.main(args, plugins=[OnlyTheMainProcessReports()])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def main() -> None:
    stage, config = sys.argv[1], json.loads(sys.argv[2])
    if stage == "launch":
        launch(config)
    elif stage == "worker":
        worker(config)
    else:
        raise SystemExit(f"unknown sandbox stage {stage!r}")


if __name__ == "__main__":
    main()
