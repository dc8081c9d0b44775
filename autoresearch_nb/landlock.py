"""The wrapper and the kernel side of the sandbox: resource limits, ``PR_SET_NO_NEW_PRIVS``, a Landlock ruleset
(through ``ctypes``) and no capabilities for the command, and a supervisor that outlives it just long enough to
end everything it started.

The wrapper makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``) and forks: the child applies the policy
to itself and ``execvpe``s the command; the parent waits. Whatever the command leaves behind (a daemon that
double-forked and called ``setsid``, so it left the process group the runner kills) is re-parented to the
wrapper, which SIGKILLs every descendant when the command ends or when it is told to stop (SIGTERM, SIGINT,
SIGHUP), then ends the way the command did (the same exit code, or the same signal). Under bubblewrap
(:func:`autoresearch_nb.sandbox.wrap`) the run also has its own pid namespace, so the kernel ends it all too.

    python landlock.py [--mode auto|landlock|none] [--read P] [--list P] [--write P] [--device P] [--no-network]
                       [--tmp P] [--memory-mb N] [--file-mb N] [--env K=V] -- CMD...

Built by :func:`autoresearch_nb.sandbox.wrap`, which documents what the policy covers and what it does not.
Imported alone (``python -I -S -c``, see ``sandbox.wrap``) or run by path, importing only ``os``, ``sys``, ``ctypes``, ``resource`` and ``stat``:
it runs before every experiment, and importing the package (or even ``json``) would cost more than the rest.
Exit codes: 2 bad usage, 126 the policy cannot be applied, 127 the command cannot be started.
"""
from __future__ import annotations

import ctypes
import os
import stat
import sys

try:
    from .errors import SandboxError
except ImportError:  # run by path: no package import to pay for
    class SandboxError(Exception):  # type: ignore[no-redef]
        pass

USAGE = "usage: python landlock.py [--mode M] [--read P] [--write P] ... -- CMD..."
MODES = ("auto", "bubblewrap", "landlock", "none")  # bubblewrap: Landlock inside it where the kernel has it

# Landlock's userspace API (include/uapi/linux/landlock.h). The syscall numbers are the same on every arch.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAPABILITY_VERSION_3 = 0x20080522
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
REAP_LIMIT_S = 10.0  # how long the supervisor keeps killing re-parented descendants (a fork bomb) before it gives up
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
MAKE_SYM, REFER, TRUNCATE, IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM
         | REFER | TRUNCATE)  # no MAKE_CHAR/MAKE_BLOCK: device nodes are never a run's business
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # rights a rule on a non-directory may hold
_RIGHTS = {"--read": READ, "--list": READ_DIR, "--write": WRITE, "--device": DEVICE}

# Removed from a run's environment: they would point git at a repository other than the run directory's none.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                  "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi() -> tuple[int, str | None]:
    """The kernel's Landlock ABI version (0 when there is none) and, when 0, why in one line."""
    if not sys.platform.startswith("linux"):
        return 0, f"Landlock is Linux-only (this is {sys.platform})"
    try:
        libc = _libc()
        version = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                               ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError) as e:
        return 0, f"cannot call the kernel from Python here ({e})"
    if version > 0:
        return int(version), None
    err = ctypes.get_errno()
    why = {38: "the kernel has no Landlock (Linux 5.13+ needed) or a seccomp filter blocks it",
           95: "Landlock is built into the kernel but not enabled (add landlock to the lsm= boot option)",
           1: "a seccomp filter (container runtime) forbids the Landlock syscalls"}.get(err, os.strerror(err))
    return 0, f"Landlock unavailable: {why}"


def handled_fs(version: int) -> int:
    """Every filesystem right the kernel's ABI knows: all of them are denied unless a rule grants them."""
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def _expand_proc(path: str) -> list[str]:
    # Landlock's ptrace scoping does not stop reading /proc/<pid>/environ (seen on 6.18): other processes'
    # directories would show the loop's API key. So: /proc's non-process entries and this process's own
    # directory (this pid is the command's after exec); the command's children cannot read their /proc/self.
    try:
        names = [n for n in os.listdir("/proc") if not n.isdigit() and n not in ("self", "thread-self")]
    except OSError:
        names = []
    return [f"/proc/{n}" for n in names] + [f"/proc/{os.getpid()}"]


def _add_rule(libc, ruleset_fd: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a root that does not exist here (/lib32, no GPU) grants nothing
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_ONLY
        if not rights:
            return
        rule = _PathBeneath(rights, fd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset_fd), ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_add_rule({path}) failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def restrict_self(rules: list[tuple[str, int]], network: bool, version: int) -> None:
    """Deny every filesystem right but those of ``rules`` (``[(path, rights)]``), and TCP when ``network`` is
    off, to this process and all it starts, for good."""
    libc = _libc()
    handled = handled_fs(version)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if version >= 4:
        size = 16
        if not network:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # handled with no rule: all denied
    if version >= 6:
        size = 24
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        for path, rights in rules:
            for target in _expand_proc(path) if path == "/proc" and rights == READ else [path]:
                _add_rule(libc, fd, target, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Leave this process, and what it execs, no capability: the ambient set cleared, and as root the bounding
    set emptied and the effective, permitted and inheritable sets zeroed (an exec as uid 0 would otherwise get
    them all back). Root without capabilities cannot open raw sockets, bypass file permissions, mount or load
    modules; it still owns its own files (chmod of those needs a read-only mount: bubblewrap)."""
    libc = _libc()
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if os.geteuid() != 0:
        return  # NO_NEW_PRIVS already keeps an unprivileged exec from gaining any
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last: ignored
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise SandboxError(f"capset failed: {os.strerror(ctypes.get_errno())}")


def _children(pid: int) -> list[int]:
    """The live children of ``pid`` (``/proc/PID/task/*/children``, else a scan of ``/proc``)."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        return found
    except (OSError, ValueError):
        pass
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 1 and fields[1] == str(pid):
                found.append(int(name))
    return found


def kill_descendants(keep: int | None = None) -> int:
    """SIGKILL every child of this process but ``keep`` (and so, as they are re-parented to this subreaper,
    their descendants), reaping them, until none is left or :data:`REAP_LIMIT_S` passes; returns how many were
    killed."""
    import signal
    import time

    killed, deadline = 0, time.monotonic() + REAP_LIMIT_S
    while time.monotonic() < deadline:
        strays = [c for c in _children(os.getpid()) if c != keep]
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        reaped = False
        while True:  # reap what died (never the command itself while it is still being waited for)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return killed
            if pid == 0:
                break
            if pid == keep:  # the command ended meanwhile: let the caller see it by its pid no more
                keep = None
            reaped = True
        if not strays and not reaped:
            if keep is None and not _children(os.getpid()):
                return killed
            if keep is not None:
                return killed
            time.sleep(0.01)
    return killed


def supervise(command: list[str], prepare) -> int:
    """Run ``command`` as a child that calls ``prepare()`` (the policy) before it execs, as a subreaper that
    ends every descendant with it (see the module docstring). Returns the command's exit code; a command killed
    by a signal makes this process die of the same signal."""
    import signal

    libc = _libc()
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = os.fork()
    if child == 0:  # the command: single-threaded here, so Python between fork and exec is safe
        code = 126
        try:
            prepare()
            code = 127
            for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; the command gets the defaults back
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            os.execvpe(command[0], command, os.environ)
        except (SandboxError, OSError) as e:
            what = f"cannot run {command[0]!r}: {e}" if code == 127 else str(e)
            os.write(2, f"sandbox: {what}\n".encode(errors="replace"))
        os._exit(code)

    def stop(signum, _frame) -> None:
        try:
            os.kill(child, signum)  # the command may end cleanly; what it left goes now
        except OSError:
            pass
        kill_descendants(keep=child)

    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), stop)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:  # reaped by the stop handler's sweep
            status = 0
            break
    kill_descendants()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        try:
            signal.signal(sig, signal.SIG_DFL)  # SIGKILL and SIGSTOP cannot be handled, nor need to be
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 128 + os.WTERMSIG(status)


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """``(spec, command)`` from the wrapper's flags; raises ValueError on bad usage."""
    spec: dict = {"mode": "auto", "rules": [], "network": True, "tmp": None, "memory_mb": None, "file_mb": None,
                  "env": {}}
    i = 0
    while i < len(argv) and argv[i] != "--":
        flag = argv[i]
        if flag == "--no-network":
            spec["network"] = False
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ValueError(f"{flag} needs a value")
        value = argv[i + 1]
        if flag in _RIGHTS:
            spec["rules"].append((value, _RIGHTS[flag]))
        elif flag == "--mode" and value in MODES:
            spec["mode"] = value
        elif flag == "--tmp":
            spec["tmp"] = value
        elif flag in ("--memory-mb", "--file-mb") and value.isdigit() and int(value) > 0:
            spec[flag[2:].replace("-", "_")] = int(value)
        elif flag == "--env" and "=" in value:
            key, _, val = value.partition("=")
            spec["env"][key] = val
        else:
            raise ValueError(f"bad flag {flag} {value!r}")
        i += 2
    if i >= len(argv) or i + 1 == len(argv):
        raise ValueError("no command after --")
    return spec, argv[i + 1:]


def apply(spec: dict) -> str | None:
    """Apply a parsed ``spec`` to this process for good. Returns a one-line note when the filesystem boundary is
    not applied under mode ``auto``; raises :class:`SandboxError` when it cannot be under ``landlock``."""
    import resource

    caps = [(resource.RLIMIT_CORE, 0)]
    if spec["memory_mb"]:
        caps.append((resource.RLIMIT_AS, spec["memory_mb"] << 20))
    if spec["file_mb"]:
        caps.append((resource.RLIMIT_FSIZE, spec["file_mb"] << 20))
    for which, value in caps:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    for name in _GIT_REDIRECTS:
        os.environ.pop(name, None)
    os.environ.update(spec["env"])
    if spec["tmp"]:
        os.environ.update(TMPDIR=spec["tmp"], TMP=spec["tmp"], TEMP=spec["tmp"])
    if spec["mode"] == "none":
        return None
    version, why = abi()
    if version == 0:
        if spec["mode"] == "landlock":
            raise SandboxError(f"sandbox = 'landlock' but {why}")
        drop_capabilities()
        return None if spec["mode"] == "bubblewrap" else f"running without a filesystem boundary: {why}"
    restrict_self(spec["rules"], spec["network"], version)
    drop_capabilities()
    return None


def main(argv: list[str] | None = None) -> int:
    """Apply the flags' policy, then become the command (``python`` means this interpreter)."""
    try:
        spec, command = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"sandbox: {e}\n{USAGE}", file=sys.stderr)
        return 2
    if command[0] in ("python", "python3"):
        command[0] = sys.executable

    def prepare() -> None:
        note = apply(spec)
        if note:
            os.write(2, f"sandbox: {note}\n".encode(errors="replace"))
    if not sys.platform.startswith("linux"):  # no subreaper: become the command, as before
        try:
            prepare()
            os.execvpe(command[0], command, os.environ)
        except (SandboxError, OSError) as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 126
    return supervise(command, prepare)


if __name__ == "__main__":
    raise SystemExit(main())
