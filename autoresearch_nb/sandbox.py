"""The boundary around agent-written code: a Landlock policy applied by a small exec wrapper.

    >>> policy = policy_for(run_dir, repo=repo, tmp=tmp_dir, network=False)     # doctest: +SKIP
    >>> argv = wrap(["python", "train.py"], policy)   # Popen(argv, cwd=run_dir, start_new_session=True)  # doctest: +SKIP

``wrap`` returns ``python -I -S .../sandbox.py --policy JSON -- CMD...``: the wrapper (stdlib only, run by path
so it never pays for importing the package) sets resource limits, ``PR_SET_NO_NEW_PRIVS`` and a Landlock
ruleset on itself, then ``execvpe``s the command, which inherits them all, as do its children. No
``preexec_fn``: the loop has threads, and running Python between fork and exec can deadlock.

What it covers, on Linux with Landlock (kernel 5.13+; rights are masked by the kernel's ABI version):
- writes only beneath the writable roots: the run directory, a private temp directory (``TMPDIR``),
  ``/dev/shm``, ``/dev/null`` and declared caches (dataset/tokenizer, inductor/triton, CUDA compute cache);
  a writable root may not hold or lie above the user's checkout or any ``.git`` (refused when the policy is
  built), so the checkout, ``.autoresearch/`` and git stay read-only to a run;
- reads only beneath the readable roots: system and Python install paths, this package, ``/proc``, ``/sys``,
  ``/dev``, ``/etc`` without its secrets (shadow, sudoers, ssh, ssl/private), the run directory, the caches and
  declared extras. ``~/.ssh``, ``~/.aws``, a ``.env`` or the user's checkout cannot be read (names of the
  package's parent directory stay listable so Python can import from it);
- ptrace of processes outside the sandbox; ``/proc/<pid>`` of every process but the run's own (so not the
  loop's ``environ`` with its API key; the run's child processes cannot read their own ``/proc/self``);
- TCP bind and connect when ``network`` is off (ABI >= 4); signals to and abstract Unix sockets of processes
  outside the sandbox (ABI >= 6);
- no privilege gain through setuid binaries (``NO_NEW_PRIVS``); no core dumps; optional ``RLIMIT_AS``
  (``memory_mb``; off by default, as CUDA reserves tens of GB of address space) and ``RLIMIT_FSIZE``
  (``file_mb``, default 10 GiB: a bigger write fails with EFBIG, or SIGXFSZ kills a program that
  does not ignore it: a crash row either way).

What it does not cover: UDP and DNS, Unix sockets reached by path (a Docker socket under a readable root),
``/dev/shm`` shared with the user's other processes, reading world-readable files under the readable roots,
GPU memory and CPU time (the runner's hard timeout covers time), stat() of any path (names and sizes, not
contents). Without Landlock (macOS, Windows, kernels before 5.13, container runtimes whose seccomp profile
blocks the syscalls) ``mode="auto"`` runs without the boundary and :func:`describe` says so in one line; the
loop then still finds violations by comparing the run directory with the commit (``rundir.changes``).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    from .errors import SandboxError
except ImportError:  # run by path as the exec wrapper: stdlib only, no package import to pay for
    class SandboxError(Exception):  # type: ignore[no-redef]
        pass

MODES = ("auto", "landlock", "none")
DEFAULT_FILE_MB = 10240
USAGE = "usage: python -m autoresearch_nb.sandbox --policy JSON -- CMD..."

# Landlock's userspace API (include/uapi/linux/landlock.h). The syscall numbers are the same on every arch.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
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

# /etc minus what holds secrets; a listed path's parent is opened entry by entry instead of whole.
_ETC_SECRETS = ("shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
                "security/opasswd", "netrc", "credstore", "credstore.encrypted")
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/opt", "/nix/store", "/proc",
                "/sys", "/dev")
# Removed from a run's environment: they would point git at a repository other than the run directory's none.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                  "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE")


@dataclass(frozen=True)
class Policy:
    """What a run may touch. ``mode`` is the one knob; the roots are filled in by :func:`policy_for`.

    ``listable``: directories whose entry names (not contents) are visible; ``devices``: device files opened
    read/write with ioctl (``/dev/null``, ``/dev/nvidia*``); ``env``: variables the wrapper sets.
    """

    mode: str = "auto"
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    listable: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    network: bool = True
    tmp: str | None = None
    memory_mb: int | None = None
    file_mb: int | None = DEFAULT_FILE_MB
    env: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SandboxError(f"sandbox must be one of {', '.join(MODES)}, not {self.mode!r}")
        for name in ("memory_mb", "file_mb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise SandboxError(f"{name} must be a positive whole number of MB or None, not {value!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        for name in ("write", "read", "listable", "devices"):
            data[name] = tuple(data.get(name, ()))
        data["env"] = tuple((str(k), str(v)) for k, v in data.get("env", ()))
        return cls(**data)


# -- the kernel -------------------------------------------------------------------------------------------
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


def landlock_abi() -> tuple[int, str | None]:
    """The kernel's Landlock ABI version (0 when there is none) and, when 0, why in one line."""
    if not sys.platform.startswith("linux"):
        return 0, f"Landlock is Linux-only (this is {sys.platform})"
    try:
        libc = _libc()
        abi = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError) as e:
        return 0, f"cannot call the kernel from Python here ({e})"
    if abi > 0:
        return int(abi), None
    err = ctypes.get_errno()
    why = {38: "the kernel has no Landlock (Linux 5.13+ needed) or a seccomp filter blocks it",
           95: "Landlock is built into the kernel but not enabled (add landlock to the lsm= boot option)",
           1: "a seccomp filter (container runtime) forbids the Landlock syscalls"}.get(err, os.strerror(err))
    return 0, f"Landlock unavailable: {why}"


def _handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _landlock(policy: Policy, abi: int) -> None:
    libc = _libc()
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        size = 16
        if not policy.network:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # handled with no rule: all denied
    if abi >= 6:
        size = 24
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        rules = [(p, READ) for p in _expand_proc(policy.read)] + [(p, READ_DIR) for p in policy.listable]
        rules += [(p, WRITE) for p in policy.write] + [(p, DEVICE) for p in policy.devices]
        for path, rights in rules:
            _add_rule(libc, fd, path, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def _expand_proc(paths: tuple[str, ...]) -> list[str]:
    # Landlock's ptrace scoping does not stop reading /proc/<pid>/environ here (seen on 6.18): other processes'
    # directories would show the loop's API key. So: /proc's non-process entries and this process's own
    # directory (this pid is the command's after exec); the command's children cannot read their /proc/self.
    if "/proc" not in paths:
        return list(paths)
    try:
        names = [n for n in os.listdir("/proc") if not n.isdigit() and n not in ("self", "thread-self")]
    except OSError:
        names = []
    own = [f"/proc/{n}" for n in names] + [f"/proc/{os.getpid()}"]
    return [q for p in paths for q in (own if p == "/proc" else [p])]


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


def restrict(policy: Policy) -> str | None:
    """Apply ``policy`` to this process for good (limits, environment, Landlock). Returns a one-line note when
    the filesystem boundary could not be applied under ``mode="auto"``; raises :class:`SandboxError` when it
    cannot be applied under ``mode="landlock"``."""
    import resource

    caps = [(resource.RLIMIT_CORE, 0)]
    if policy.memory_mb:
        caps.append((resource.RLIMIT_AS, policy.memory_mb << 20))
    if policy.file_mb:
        caps.append((resource.RLIMIT_FSIZE, policy.file_mb << 20))
    for which, value in caps:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    for name in _GIT_REDIRECTS:
        os.environ.pop(name, None)
    os.environ.update(dict(policy.env))
    if policy.tmp:
        os.environ.update(TMPDIR=policy.tmp, TMP=policy.tmp, TEMP=policy.tmp)
    if policy.mode == "none":
        return None
    abi, why = landlock_abi()
    if abi == 0:
        if policy.mode == "landlock":
            raise SandboxError(f"sandbox = 'landlock' but {why}")
        return f"running without a filesystem boundary: {why}"
    _landlock(policy, abi)
    return None


# -- building a policy (in the loop's process) ------------------------------------------------------------
def _etc_reads(root: Path = Path("/etc"), secrets: tuple[str, ...] = _ETC_SECRETS) -> list[str]:
    out: list[str] = []
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return out
    for name in entries:
        if name in secrets:
            continue
        inner = tuple(s.split("/", 1)[1] for s in secrets if s.startswith(name + "/"))
        out += _etc_reads(root / name, inner) if inner else [str(root / name)]
    return out


def _python_reads() -> list[str]:
    import site
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user:
        paths.add(user)
    paths.add(str(Path(__file__).resolve().parent))
    return sorted(paths)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _resolve(path: str | os.PathLike[str], base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def compute_caches(env: dict[str, str] | None = None) -> dict[str, str]:
    """The shared compile caches a CUDA run writes (so it doesn't recompile every time), as the variables
    that point at them: ``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``, ``CUDA_CACHE_PATH``. Set
    explicitly, because under a private ``TMPDIR`` inductor would otherwise cache in a directory that goes."""
    import getpass
    import tempfile
    env = dict(os.environ if env is None else env)
    home = Path(env.get("HOME") or Path.home())
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return {"TORCHINDUCTOR_CACHE_DIR": env.get("TORCHINDUCTOR_CACHE_DIR")
            or str(Path(tempfile.gettempdir()) / f"torchinductor_{user}"),
            "TRITON_CACHE_DIR": env.get("TRITON_CACHE_DIR") or str(home / ".triton" / "cache"),
            "CUDA_CACHE_PATH": env.get("CUDA_CACHE_PATH") or str(home / ".nv" / "ComputeCache")}


def policy_for(run_dir: str | os.PathLike[str], *, repo: str | os.PathLike[str] | None = None,
               tmp: str | os.PathLike[str] | None = None, mode: str = "auto",
               write: tuple[str, ...] = (), read: tuple[str, ...] = (), caches: tuple[str, ...] = (),
               network: bool = True, compile_caches: bool = True, memory_mb: int | None = None,
               file_mb: int | None = DEFAULT_FILE_MB) -> Policy:
    """The policy for a run in ``run_dir``: the defaults above plus ``write``/``read`` extras and ``caches``
    (written, and created if missing). Relative extras are taken from ``repo``. Raises :class:`SandboxError`
    when a writable path holds or lies above ``repo`` or a ``.git``.

    >>> p = policy_for("/tmp/run", repo="/home/me/proj", network=False)        # doctest: +SKIP
    """
    if mode not in MODES:
        raise SandboxError(f"sandbox must be one of {', '.join(MODES)}, not {mode!r}")
    run = Path(run_dir).resolve()
    base = Path(repo).resolve() if repo is not None else run
    cache_env = compute_caches() if compile_caches else {}
    writable = [run] + ([Path(tmp).resolve()] if tmp else []) + [Path("/dev/shm")]
    writable += [_resolve(p, base) for p in (*caches, *cache_env.values(), *write)]
    for path in writable:
        _check_writable(path, Path(repo).resolve() if repo is not None else None)
        if path != Path("/dev/shm"):
            path.mkdir(parents=True, exist_ok=True)
    reads = list(_SYSTEM_READ) + _etc_reads() + _python_reads() + [str(_resolve(p, base)) for p in read]
    devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
    devices += sorted(str(p) for pattern in ("nvidia*", "nvidia-caps/*", "dri/*") for p in Path("/dev").glob(pattern))
    env = dict(cache_env)
    env["GIT_CEILING_DIRECTORIES"] = str(run.parent)  # git in the run directory never searches above it
    return Policy(mode=mode, write=tuple(dict.fromkeys(map(str, writable))), read=tuple(dict.fromkeys(reads)),
                  listable=(str(Path(__file__).resolve().parent.parent),), devices=tuple(devices),
                  network=network, tmp=str(Path(tmp).resolve()) if tmp else None, memory_mb=memory_mb,
                  file_mb=file_mb, env=tuple(sorted(env.items())))


def _check_writable(path: Path, repo: Path | None) -> None:
    if repo is not None and (_within(path, repo) or _within(repo, path)):
        raise SandboxError(f"a run may not write {path}: it {'is inside' if _within(path, repo) else 'holds'} "
                           f"the checkout {repo}")
    if path.name in (".git", ".autoresearch") or ".git" in path.parts or (path / ".git").exists():
        raise SandboxError(f"a run may not write {path}: it is or holds a .git")
    home = Path.home().resolve()
    if _within(home, path):
        raise SandboxError(f"a run may not write {path}: it holds the home directory {home}")


def wrap(command: str | list[str], policy: Policy) -> list[str]:
    """The argv that runs ``command`` under ``policy`` (``python`` means this interpreter).

    >>> wrap(["python", "train.py"], Policy(mode="none"))[-2:]
    ['python', 'train.py']
    """
    import shlex
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise SandboxError("nothing to run: the command is empty")
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--policy", policy.to_json(), "--", *argv]


def describe(policy: Policy) -> str:
    """One line for the start of a session: what the boundary is here, or why there is none. Never silent.

    >>> describe(Policy(mode="none")).startswith("sandbox off")
    True
    """
    if policy.mode == "none":
        return "sandbox off (sandbox = 'none'): runs can read and write anything this user can"
    abi, why = landlock_abi()
    if abi == 0:
        if policy.mode == "landlock":
            raise SandboxError(f"sandbox = 'landlock' but {why}")
        return f"sandbox off: {why}; violations are still detected by comparing the run directory"
    net = "network on" if policy.network else ("TCP off" if abi >= 4 else "network on (TCP rules need ABI 4)")
    return (f"sandbox: Landlock ABI {abi}, writes to {len(policy.write)} roots (run dir, temp, caches), "
            f"reads from an allow-list, {net}")


def check_disk(path: str | os.PathLike[str], min_free_mb: int = 1024) -> str | None:
    """A one-line reason when the filesystem of ``path`` has under ``min_free_mb`` free (call it before each
    run, so the store and the log can still be written), else None.

    >>> check_disk("/", min_free_mb=0) is None
    True
    """
    try:
        free = shutil.disk_usage(path).free
    except OSError as e:
        return f"cannot check free disk space at {path}: {e}"
    if free < min_free_mb << 20:
        return f"only {free >> 20} MB free at {path} (at least {min_free_mb} MB needed before a run)"
    return None


def main(argv: list[str] | None = None) -> int:
    """The exec wrapper: ``--policy JSON -- CMD...``. 2 bad usage, 126 the policy could not be applied,
    127 the command could not be started; otherwise it becomes the command."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] != "--policy" or argv[2] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    command = argv[3:]
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    try:
        note = restrict(Policy.from_json(argv[1]))
    except (SandboxError, ValueError, TypeError, OSError) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 126
    if note:
        print(f"sandbox: {note}", file=sys.stderr, flush=True)
    try:
        os.execvpe(command[0], command, os.environ)
    except OSError as e:
        print(f"sandbox: cannot run {command[0]!r}: {e}", file=sys.stderr)
        return 127
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
