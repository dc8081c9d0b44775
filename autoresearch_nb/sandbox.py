"""The boundary around agent-written code: a Landlock policy applied by a small exec wrapper.

    >>> policy = policy_for(run_dir, repo=repo, tmp=tmp_dir, network=False)     # doctest: +SKIP
    >>> argv = wrap(["python", "train.py"], policy)   # Popen(argv, cwd=run_dir, start_new_session=True)  # doctest: +SKIP

``wrap`` returns ``python -I -S -c BOOT DIR FLAGS -- CMD...``: the wrapper (``landlock.py``, stdlib only, imported
alone so it never pays for importing the package) sets resource limits, ``PR_SET_NO_NEW_PRIVS`` and a Landlock
ruleset on itself, then ``execvpe``s the command, which inherits them all, as do its children. No
``preexec_fn``: the loop has threads, and running Python between fork and exec can deadlock.

What it covers, on Linux with Landlock (kernel 5.13+; rights are masked by the kernel's ABI version):
- writes only beneath the writable roots: the run directory, a private temp directory (``TMPDIR``),
  ``/dev/shm``, ``/dev/null`` and declared caches (the dataset's token and tokenizer caches, inductor/triton,
  the CUDA compute cache; a run can poison those, the dataset's own files stay read-only);
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

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import landlock
from .errors import SandboxError
from . import environ
from .layout import COMPILE, STATE_DIR

MODES = landlock.MODES
DEFAULT_FILE_MB = 10240
COMPILE_FOLDER = COMPILE  # beside a session's run directories: its runs' compile caches (compute_caches)
USAGE = "usage: python -m autoresearch_nb.sandbox --policy JSON -- CMD..."
landlock_abi = landlock.abi
# Imported rather than run by path, so its byte-code is cached (compiling it each time costs more than the rest).
_BOOT = "import sys; sys.path[:0] = [sys.argv[1]]; import landlock; sys.exit(landlock.main(sys.argv[2:]))"

# /etc minus what holds secrets; a listed path's parent is opened entry by entry instead of whole.
_ETC_SECRETS = ("shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
                "security/opasswd", "netrc", "credstore", "credstore.encrypted")
# Under $HOME: never readable or writable, whatever sandbox_read / sandbox_write say.
_HOME_SECRETS = (".ssh", ".aws", ".gnupg", ".netrc", ".docker", ".kube", ".azure", ".config/gcloud",
                 ".git-credentials", ".pypirc", ".password-store")
# /dev is not here: only the device nodes of Policy.devices (null, zero, random... and GPUs) and /dev/shm, never
# a block device (a filesystem image read with debugfs).
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/opt", "/nix/store", "/proc",
                "/sys")


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
    bubblewrap: str | None = None  # the bwrap binary the run goes through (None: Landlock alone, or nothing)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SandboxError(f"sandbox must be one of {', '.join(MODES)}, not {self.mode!r}")
        for name in ("memory_mb", "file_mb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise SandboxError(f"{name} must be a positive whole number of MB or None, not {value!r}")

    def to_argv(self) -> list[str]:
        """The exec wrapper's flags for this policy (see :mod:`autoresearch_nb.landlock`)."""
        argv = ["--mode", self.mode]
        for flag, paths in (("--read", self.read), ("--list", self.listable), ("--write", self.write),
                            ("--device", self.devices)):
            for path in paths:
                argv += [flag, path]
        argv += [] if self.network else ["--no-network"]
        argv += ["--tmp", self.tmp] if self.tmp else []
        argv += ["--memory-mb", str(self.memory_mb)] if self.memory_mb else []
        argv += ["--file-mb", str(self.file_mb)] if self.file_mb else []
        for key, value in self.env:
            argv += ["--env", f"{key}={value}"]
        return argv

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        for name in ("write", "read", "listable", "devices"):
            data[name] = tuple(data.get(name, ()))
        data["env"] = tuple((str(k), str(v)) for k, v in data.get("env", ()))
        return cls(**data)


# bubblewrap: detected by running it (a binary that exists may still fail: Docker's seccomp profile, no
# CAP_SYS_ADMIN, --proc in an unprivileged container, Ubuntu 24.04's AppArmor limit on user namespaces).
_BWRAP_PROBE = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
                "--die-with-parent", "--cap-drop", "ALL", "--", "true")
_BWRAP_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")  # --dev has these
_bwrap_found: list[tuple[str | None, str | None]] = []


def bubblewrap() -> tuple[str | None, str | None]:
    """``(path, None)`` when bubblewrap works here (run once per process: a sandbox with pid and network
    namespaces around ``true``), else ``(None, why)`` in one line."""
    if _bwrap_found:
        return _bwrap_found[0]
    import subprocess

    path = shutil.which("bwrap")
    found: tuple[str | None, str | None] = (None, "bubblewrap is not installed (Debian/Ubuntu: apt install bubblewrap)")
    if path and sys.platform.startswith("linux"):
        try:
            done = subprocess.run([path, *_BWRAP_PROBE], capture_output=True, text=True, timeout=20)
            found = (path, None) if done.returncode == 0 else \
                (None, f"bubblewrap does not work here ({' '.join(done.stderr.split())[:200] or done.returncode})")
        except (OSError, subprocess.TimeoutExpired) as e:
            found = (None, f"bubblewrap does not work here ({e})")
    _bwrap_found.append(found)
    return found


def gpu_present() -> bool:
    """True when an NVIDIA device node exists: ``auto`` keeps to Landlock alone there, until
    ``benchmarks/gpu_check.py`` has shown CUDA under bubblewrap (its device nodes, nvidia-uvm's lazy setup)."""
    return Path("/dev/nvidiactl").exists()


def bubblewrap_argv(policy: Policy) -> list[str]:
    """bwrap's flags for ``policy``: everything read-only but its writable roots, a private ``/dev`` (a fresh
    ``/dev/shm`` included) and ``/proc``, its devices (GPUs), new pid, IPC, UTS and (without ``network``)
    network namespaces, no capabilities, and the whole sandbox ends when the process that started it does."""
    assert policy.bubblewrap is not None
    argv = [policy.bubblewrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in policy.write:
        if not path.startswith("/dev/") and os.path.isdir(path):
            argv += ["--bind", path, path]
    for device in policy.devices:
        if device not in _BWRAP_DEVICES:
            argv += ["--dev-bind-try", device, device]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
             "--cap-drop", "ALL"]
    return argv + ([] if policy.network else ["--unshare-net"]) + ["--"]


def label(policy: Policy) -> str:
    """What a run under ``policy`` actually gets here, for its row: ``bubblewrap+landlock``, ``bubblewrap``,
    ``landlock`` or ``none``."""
    landlocked = policy.mode != "none" and landlock_abi()[0] > 0
    if policy.bubblewrap:
        return "bubblewrap+landlock" if landlocked else "bubblewrap"
    return "landlock" if landlocked else "none"


def restrict(policy: Policy) -> str | None:
    """Apply ``policy`` to this process for good (limits, environment, Landlock). Returns a one-line note when
    the filesystem boundary could not be applied under ``mode="auto"``; raises :class:`SandboxError` when it
    cannot be applied under ``mode="landlock"``."""
    return landlock.apply(landlock.parse([*policy.to_argv(), "--", "true"])[0])


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


def compute_caches(root: str | os.PathLike[str], gpu: bool | None = None) -> dict[str, str]:
    """The compile caches of a session's runs, all under ``root`` (beside the run directories), as the
    variables that point at them: ``TORCHINDUCTOR_CACHE_DIR``, and with a GPU (``gpu=None``: if
    ``/dev/nvidiactl`` exists) ``TRITON_CACHE_DIR`` and ``CUDA_CACHE_PATH``. Never the shared defaults
    (``$TMPDIR/torchinductor_$USER``, ``~/.triton``, ``~/.nv``) nor the user's own settings of those variables: a
    run can write code into a compile cache, and a later ``torch.compile`` that reads it runs that code, so
    nothing outside the runs may ever read these. One cache per session: a run can still poison it for the
    session's later runs (all sandboxed; a documented gap), which keeps CUDA from recompiling every run."""
    base = Path(root)
    caches = {"TORCHINDUCTOR_CACHE_DIR": str(base / "inductor")}
    if gpu or (gpu is None and gpu_present()):  # no GPU: no folders for it
        caches["TRITON_CACHE_DIR"] = str(base / "triton")
        caches["CUDA_CACHE_PATH"] = str(base / "cuda")
    return caches


def dataset_cache(env: dict[str, str] | None = None) -> Path:
    """The prepared dataset folder a run reads and caches tokens and tokenizers into: the same rule as
    ``harness.runtime.dataset_dir`` (not imported: the harness package imports torch)."""
    env = environ.snapshot() if env is None else dict(env)
    if env.get("AUTORESEARCH_DATA", "").strip():
        return Path(env["AUTORESEARCH_DATA"].strip()).expanduser()
    root = env.get("AUTORESEARCH_CACHE", "").strip()
    base = Path(root).expanduser() if root else Path(env.get("HOME") or Path.home()) / ".cache" / "autoresearch_nb"
    name = env.get("AUTORESEARCH_DATASET", "").strip()
    if not name:  # on CUDA a prepared bigger corpus wins (harness.runtime.default_dataset), guessed without torch
        from .provenance import constants, device_class

        preferred = constants().CUDA_PREFERRED if device_class(env) == "cuda" else ()
        name = next((n for n in preferred if (base / n / "meta.json").is_file()), "stdlib")
    return base / name


def holdout_cache(env: dict[str, str] | None = None) -> Path:
    """The folder of the dataset's holdout split, a sibling of :func:`dataset_cache` (the rule of
    ``harness.corpus.holdout_dir``): never readable by a run; writable only by the setup command."""
    from .provenance import hidden

    return hidden(dataset_cache(env))


def policy_for(run_dir: str | os.PathLike[str], *, repo: str | os.PathLike[str] | None = None,
               tmp: str | os.PathLike[str] | None = None, mode: str = "auto",
               write: tuple[str, ...] = (), read: tuple[str, ...] = (), include: tuple[str, ...] = (),
               caches: tuple[str, ...] = (), data: str | os.PathLike[str] | None = None,
               network: bool = True, compile_caches: bool = True, memory_mb: int | None = None,
               file_mb: int | None = DEFAULT_FILE_MB) -> Policy:
    """The policy for a run in ``run_dir``: the defaults above plus ``write``/``read`` extras, the ``include``
    paths (read-only), ``caches`` (written, and created if missing) and ``data``, the prepared dataset
    (:func:`dataset_cache`: read-only but for its ``tokens/`` and ``tokenizers/`` caches). Relative
    paths are taken from ``repo``; ``PATH`` and ``PYTHONPATH`` directories are readable too. Raises
    :class:`SandboxError` when a writable path is in or holds ``repo``, holds ``$HOME`` or a ``.git``, or an
    extra path holds the checkout or is in or holds a secret folder (``~/.ssh``, ``~/.aws``...).

    >>> p = policy_for("/tmp/run", repo="/home/me/proj", network=False)        # doctest: +SKIP
    """
    if mode not in MODES:
        raise SandboxError(f"sandbox must be one of {', '.join(MODES)}, not {mode!r}")
    run = Path(run_dir).resolve()
    base = Path(repo).resolve() if repo is not None else run
    cache_env = compute_caches(run.parent / COMPILE_FOLDER) if compile_caches else {}
    writable = [run] + ([Path(tmp).resolve()] if tmp else []) + [Path("/dev/shm")]
    # The dataset's files stay read-only (a run must not edit val.bin); its token and tokenizer caches are
    # written by train.py on first use of a tokenizer.
    data_caches = [str(Path(data) / "tokens"), str(Path(data) / "tokenizers")] if data is not None else []
    writable += [_resolve(p, base) for p in (*caches, *data_caches, *cache_env.values(), *write)]
    for path in writable:
        _check_writable(path, Path(repo).resolve() if repo is not None else None)
        if path != Path("/dev/shm"):
            path.mkdir(parents=True, exist_ok=True)
    # include: paths the run directory links to (rundir.refresh); the links resolve into the checkout
    extra = [_resolve(p, base) for p in (*read, *include, *([data] if data else []))]
    for path in extra:
        _check_readable(path, Path(repo).resolve() if repo is not None else None)
    reads = list(_SYSTEM_READ) + _etc_reads() + _python_reads() + _search_path_reads(base) + list(map(str, extra))
    devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
    devices += sorted(str(p) for pattern in ("nvidia*", "nvidia-caps/*", "dri/*") for p in Path("/dev").glob(pattern))
    env = dict(cache_env)
    env["GIT_CEILING_DIRECTORIES"] = str(run.parent)  # git in the run directory never searches above it
    return Policy(mode=mode, write=tuple(dict.fromkeys(map(str, writable))), read=tuple(dict.fromkeys(reads)),
                  listable=(str(Path(__file__).resolve().parent.parent),), devices=tuple(devices),
                  network=network, tmp=str(Path(tmp).resolve()) if tmp else None, memory_mb=memory_mb,
                  file_mb=file_mb, env=tuple(sorted(env.items())), bubblewrap=_bubblewrap_for(mode))


def _bubblewrap_for(mode: str) -> str | None:
    """The bwrap a policy of ``mode`` uses: required for ``bubblewrap``, taken by ``auto`` where it works and
    no GPU is present (:func:`gpu_present`), never otherwise."""
    if mode not in ("auto", "bubblewrap"):
        return None
    path, why = bubblewrap()
    if mode == "bubblewrap" and path is None:
        raise SandboxError(f"sandbox = 'bubblewrap' but {why}")
    return None if mode == "auto" and gpu_present() else path


def reader_policy(cwd: str | os.PathLike[str], read: tuple[str, ...], *, repo: str | os.PathLike[str] | None = None,
                  mode: str = "auto", memory_mb: int | None = None, file_mb: int | None = DEFAULT_FILE_MB) -> Policy:
    """The policy of a trusted program that reads files an untrusted one wrote (the loop's model verifier):
    reads ``read`` besides Python, this package and the system; writes only its private working directory
    ``cwd`` (its ``TMPDIR`` inside) and ``/dev/shm``; no network. A ``read`` folder must exist when it starts.

    >>> p = reader_policy("/tmp/verify-x", ("/data/corpus", "/runs/artifacts/3"))    # doctest: +SKIP
    """
    return policy_for(cwd, repo=repo, tmp=Path(cwd) / "tmp", mode=mode, read=read, network=False,
                      compile_caches=False, memory_mb=memory_mb, file_mb=file_mb)


def _check_readable(path: Path, repo: Path | None) -> None:
    if repo is not None and _within(repo, path):
        raise SandboxError(f"a run may not read {path}: it holds the checkout {repo} (name the folders it needs)")
    home = Path.home().resolve()
    for name in _HOME_SECRETS:
        secret = home / name
        if _within(path, secret) or _within(secret, path):
            raise SandboxError(f"a run may not read or write {path}: it {'is in' if _within(path, secret) else 'holds'}"
                               f" {secret}")


def _search_path_reads(repo: Path) -> list[str]:
    # Directories on PATH and PYTHONPATH hold what a command runs and imports (a user's ~/.local/bin, a
    # project on PYTHONPATH); not the checkout, nor anything holding $HOME or a secret folder.
    out = []
    for raw in (*environ.get("PATH").split(os.pathsep), *environ.get("PYTHONPATH").split(os.pathsep)):
        if not raw or not os.path.isabs(raw) or not os.path.isdir(raw):
            continue
        path = Path(raw).resolve()
        try:
            _check_readable(path, repo)
        except SandboxError:
            continue
        if not (_within(path, repo) or _within(Path.home().resolve(), path)):
            out.append(str(path))
    return out


def _check_writable(path: Path, repo: Path | None) -> None:
    _check_readable(path, repo)
    if repo is not None and (_within(path, repo) or _within(repo, path)):
        raise SandboxError(f"a run may not write {path}: it {'is inside' if _within(path, repo) else 'holds'} "
                           f"the checkout {repo}")
    if path.name in (".git", STATE_DIR) or ".git" in path.parts or (path / ".git").exists():
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
    inner = [sys.executable, "-I", "-S", "-c", _BOOT, str(Path(landlock.__file__).resolve().parent),
             *policy.to_argv(), "--", *argv]
    return bubblewrap_argv(policy) + inner if policy.bubblewrap else inner


def describe(policy: Policy) -> str:
    """One line for the start of a session: what the boundary is here, or why there is none. Never silent.

    >>> describe(Policy(mode="none")).startswith("sandbox off")
    True
    """
    if policy.mode == "none":
        return "sandbox off (sandbox = 'none'): runs can read and write anything this user can"
    abi, why = landlock_abi()
    if policy.bubblewrap:
        net = "network on" if policy.network else "no network"
        inner = (f"Landlock ABI {abi} inside (reads from an allow-list)" if abi else
                 f"no Landlock inside ({why}): everything readable that this user can read")
        return (f"sandbox: bubblewrap (all read-only but {len(policy.write)} writable roots: run dir, temp, caches; "
                f"own pid namespace, nothing outlives a run; no capabilities; {net}) + {inner}")
    if abi == 0:
        if policy.mode == "landlock":
            raise SandboxError(f"sandbox = 'landlock' but {why}")
        return f"sandbox off: {why}; violations are still detected by comparing the run directory"
    net = "network on" if policy.network else ("TCP off" if abi >= 4 else "network on (TCP rules need ABI 4)")
    no_bwrap = "" if policy.mode == "landlock" else \
        f"; bubblewrap not used ({'a GPU is present' if bubblewrap()[0] else bubblewrap()[1]})"
    return (f"sandbox: Landlock ABI {abi}, writes to {len(policy.write)} roots (run dir, temp, caches), "
            f"reads from an allow-list, {net}, no capabilities, strays killed at the end{no_bwrap}")


def readable_root(policy: Policy, path: str | os.PathLike[str]) -> str | None:
    """The readable (or writable) root of ``policy`` that holds ``path``, or None: a run could read it.

    >>> readable_root(Policy(read=("/opt",)), "/opt/data.holdout")
    '/opt'
    """
    target = Path(path).absolute()
    return next((root for root in (*policy.read, *policy.write) if _within(target, Path(root))), None)


def check_disk(path: str | os.PathLike[str], min_free_mb: int = 1024, when: str = "before a run") -> str | None:
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
        return f"only {free >> 20} MB free at {path} (at least {min_free_mb} MB needed {when})"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m autoresearch_nb.sandbox --policy JSON -- CMD...``: the same wrapper, taking a policy as JSON
    (slower to start than :func:`wrap`'s form, which runs ``landlock.py`` by path)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] != "--policy" or argv[2] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        policy = Policy.from_json(argv[1])
    except (SandboxError, ValueError, TypeError) as e:
        print(f"sandbox: bad policy: {e}", file=sys.stderr)
        return 2
    return landlock.main([*policy.to_argv(), "--", *argv[3:]])


if __name__ == "__main__":
    raise SystemExit(main())
