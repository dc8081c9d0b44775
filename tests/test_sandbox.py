# Run: python -m pytest tests/test_sandbox.py -q
"""The sandbox's promises, one per test, each through the real exec wrapper in a real subprocess."""
from __future__ import annotations

import getpass
import os
import re
import tempfile
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from autoresearch_nb import sandbox as S
from autoresearch_nb.errors import SandboxError

ROOT = Path(__file__).resolve().parents[1]
landlock = pytest.mark.skipif(S.landlock_abi()[0] == 0, reason=S.landlock_abi()[1] or "")


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A user's checkout with a .git and a .env, a fake $HOME with an ssh key, a run dir and a private tmp."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    monkeypatch.setenv("HOME", str(home))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("mine\n")
    (repo / ".env").write_text("DATABASE_URL=postgres://u:p@h/db\n")
    run, tmp = tmp_path / "runs" / "w0", tmp_path / "runs" / "w0.tmp"
    run.mkdir(parents=True)
    tmp.mkdir()
    return {"home": home, "repo": repo, "run": run, "tmp": tmp, "tmp_path": tmp_path}


def sandboxed(world, code: str, network: bool = True, **policy) -> subprocess.CompletedProcess:
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], network=network, mode="landlock",
                     **policy)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(S.wrap(["python", "-c", code], p), cwd=world["run"], env=env, capture_output=True,
                          text=True, timeout=120)


def attempt(path: Path | str, how: str = "w") -> str:
    """Code that tries to open ``path`` and prints OK or DENIED."""
    return (f"try:\n    open({str(path)!r}, {how!r}).close(); print('OK')\n"
            f"except PermissionError:\n    print('DENIED')\n")


@landlock
def test_run_dir_is_writable(world):
    r = sandboxed(world, "open('out.txt', 'w').write('x'); print(open('out.txt').read())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "x" and (world["run"] / "out.txt").read_text() == "x"


@landlock
def test_writing_into_the_checkout_is_blocked(world):
    r = sandboxed(world, attempt(world["repo"] / "README.md", "a") + attempt(world["repo"] / "new.txt"))
    assert r.stdout.split() == ["DENIED", "DENIED"], r.stderr
    assert (world["repo"] / "README.md").read_text() == "mine\n" and not (world["repo"] / "new.txt").exists()


@landlock
def test_writing_into_git_is_blocked(world):
    r = sandboxed(world, attempt(world["repo"] / ".git" / "config", "a")
                  + f"import os\ntry:\n    os.remove({str(world['repo'] / '.git' / 'HEAD')!r}); print('OK')\n"
                    "except PermissionError:\n    print('DENIED')\n")
    assert r.stdout.split() == ["DENIED", "DENIED"], r.stderr
    assert (world["repo"] / ".git" / "HEAD").exists()


@landlock
def test_writing_into_home_is_blocked(world):
    r = sandboxed(world, attempt(world["home"] / "dropped.txt") + attempt(world["home"] / ".ssh" / "authorized_keys"))
    assert r.stdout.split() == ["DENIED", "DENIED"], r.stderr
    assert not (world["home"] / "dropped.txt").exists()


@landlock
def test_reading_secrets_and_the_checkout_is_blocked(world):
    targets = [world["home"] / ".ssh" / "id_ed25519", world["repo"] / ".env", world["repo"] / "README.md"]
    r = sandboxed(world, "".join(attempt(t, "r") for t in targets))
    assert r.stdout.split() == ["DENIED"] * 3, r.stderr


@landlock
def test_declared_reads_and_writes_are_allowed(world):
    data = world["tmp_path"] / "data"
    data.mkdir()
    (data / "holdout.txt").write_text("d")
    cache = world["tmp_path"] / "cache"
    r = sandboxed(world, attempt(data / "holdout.txt", "r") + attempt(data / "x", "w") + attempt(cache / "tok", "w"),
                  read=(str(data),), caches=(str(cache),))
    assert r.stdout.split() == ["OK", "DENIED", "OK"], r.stderr


@landlock
def test_private_tmp_is_the_temp_dir_and_writable(world):
    r = sandboxed(world, "import tempfile\nfd, p = tempfile.mkstemp(); print(p)\n" + attempt("/tmp/escape.txt"))
    lines = r.stdout.split()
    assert r.returncode == 0, r.stderr
    assert Path(lines[0]).parent == world["tmp"].resolve() and lines[1] == "DENIED"


@landlock
def test_loop_environment_cannot_be_read_through_proc(world, monkeypatch):
    monkeypatch.setenv("SANDBOX_TEST_MARK", "visible-only-outside")
    code = ("import os\ntry:\n    print(open(f'/proc/{os.getppid()}/environ').read().count('visible-only'))\n"
            "except PermissionError:\n    print('DENIED')\nprint(len(open('/proc/self/status').read()) > 0)\n")
    r = sandboxed(world, code)
    assert r.stdout.split() == ["DENIED", "True"], r.stderr


def accept_until_closed(server: socket.socket) -> None:
    try:
        while True:
            server.accept()[0].close()
    except OSError:
        pass


@landlock
def test_tcp_connect_is_denied_with_network_off(world):
    if S.landlock_abi()[0] < 4:
        pytest.skip("TCP rules need Landlock ABI 4")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    threading.Thread(target=accept_until_closed, args=(server,), daemon=True).start()
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=10).close(); print('OK')\n"
            "except PermissionError:\n    print('DENIED')\n" % port)
    try:
        assert sandboxed(world, code, network=False).stdout.split() == ["DENIED"]
        assert sandboxed(world, code, network=True).stdout.split() == ["OK"]  # the same code can connect
    finally:
        server.close()


def test_file_size_cap_kills_a_run_that_writes_too_much(world):
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="none", file_mb=1)
    code = "open('big', 'wb').write(b'x' * (2 << 20))"
    r = subprocess.run(S.wrap(["python", "-c", code], p), cwd=world["run"], capture_output=True)
    assert r.returncode != 0 and (world["run"] / "big").stat().st_size <= 1 << 20


def test_memory_cap_fails_a_large_allocation(world):
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="none", memory_mb=512)
    r = subprocess.run(S.wrap(["python", "-c", "b = bytearray(1 << 30)"], p), cwd=world["run"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "MemoryError" in r.stderr


def test_git_in_the_run_dir_cannot_reach_an_enclosing_repository(world):
    # A run directory inside some repository (a $HOME kept in git): git must not find that repository.
    outer = world["tmp_path"]
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    p = S.policy_for(world["run"], tmp=world["tmp"], mode="none")
    r = subprocess.run(S.wrap(["git", "rev-parse", "--show-toplevel"], p), cwd=world["run"], capture_output=True,
                       text=True, env={**os.environ, "GIT_DIR": str(outer / ".git")})
    assert r.returncode != 0 and "not a git repository" in r.stderr


def test_writable_paths_over_the_checkout_or_git_or_home_are_refused(world):
    for bad in (world["repo"], world["repo"] / "sub", world["repo"].parent, world["home"]):
        with pytest.raises(SandboxError):
            S.policy_for(world["run"], repo=world["repo"], write=(str(bad),))
    other = world["tmp_path"] / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    with pytest.raises(SandboxError, match=r"\.git"):
        S.policy_for(world["run"], repo=world["repo"], write=(str(other),))


def test_bad_settings_are_clear_errors(world):
    with pytest.raises(SandboxError, match="sandbox must be one of"):
        S.Policy(mode="strict")
    with pytest.raises(SandboxError, match="memory_mb"):
        S.Policy(memory_mb=-1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.sandbox", "--policy"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run(S.wrap(["true"], S.Policy(mode="none"))[:6] + ["--mode", "strict", "--", "true"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "bad flag --mode 'strict'" in r.stderr
    r = subprocess.run(S.wrap(["no-such-command-xyz"], S.Policy(mode="none")), capture_output=True, text=True)
    assert r.returncode == 127 and "cannot run 'no-such-command-xyz'" in r.stderr


def test_auto_without_landlock_says_so_in_one_line(world):
    # An unknown OS stands in for a kernel without Landlock: the wrapper runs the command and says why.
    def as_darwin(argv: list[str]) -> list[str]:
        assert argv[3] == "-c"
        return argv[:4] + ["import sys; sys.platform = 'darwin'; " + argv[4]] + argv[5:]

    r = subprocess.run(as_darwin(S.wrap(["echo", "ran"], S.Policy(mode="auto"))), capture_output=True, text=True)
    assert r.stdout.strip() == "ran"
    assert re.fullmatch(r"sandbox: running without a filesystem boundary: Landlock is Linux-only \(this is darwin\)",
                        r.stderr.strip())
    r = subprocess.run(as_darwin(S.wrap(["echo", "ran"], S.Policy(mode="landlock"))), capture_output=True, text=True)
    assert r.returncode == 126 and "ran" not in r.stdout and "Linux-only" in r.stderr


def test_describe_is_one_line_for_every_mode(world):
    for mode in S.MODES:
        line = S.describe(S.policy_for(world["run"], repo=world["repo"], mode=mode, compile_caches=False))
        assert "\n" not in line and line.startswith("sandbox")


def test_check_disk_reports_too_little_free_space(tmp_path):
    assert S.check_disk(tmp_path, min_free_mb=0) is None
    reason = S.check_disk(tmp_path, min_free_mb=1 << 40)
    assert reason and "MB free" in reason and "\n" not in reason


@landlock
def test_default_train_py_runs_inside_the_sandbox(world):
    from autoresearch_nb.harness.corpus import prepare_folder
    src = world["tmp_path"] / "src"
    src.mkdir()
    for i in range(12):
        (src / f"mod{i}.py").write_text(f"def function_{i}(value):\n    return value + {i}\n\n" * 60)
    corpus = prepare_folder(src, world["tmp_path"] / "corpus")
    (world["run"] / "train.py").write_text((ROOT / "train.py").read_text())
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="landlock", network=False,
                     data=S.dataset_cache({"AUTORESEARCH_DATA": str(corpus.path)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(AUTORESEARCH_TIME_BUDGET="5", AUTORESEARCH_DATA=str(corpus.path), AUTORESEARCH_DEVICE="cpu",
               AUTORESEARCH_PEAK_FLOPS="1e11", PYTHONPATH=str(ROOT))
    r = subprocess.run(S.wrap(["python", "train.py"], p), cwd=world["run"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert re.search(r"^val_bpb:\s+\d", r.stdout, re.M)
    assert list((corpus.path / "tokenizers").glob("bpe-2048-*.json"))  # the BPE was trained and cached
    probe = sandboxed(world, attempt(corpus.path / "val.bin", "r+b"), data=corpus.path)
    assert probe.stdout.split() == ["DENIED"]  # ... while the validation split stays read-only


def test_module_form_takes_a_json_policy(world):
    policy = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="auto", network=False)
    code = "import os; print(os.environ['TMPDIR'])"
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.sandbox", "--policy", policy.to_json(), "--",
                        "python", "-c", code], cwd=world["run"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(world["tmp"].resolve())
    assert S.Policy.from_json(policy.to_json()) == policy


def test_dataset_cache_follows_the_harness_variables(tmp_path):
    assert S.dataset_cache({"AUTORESEARCH_DATA": str(tmp_path / "d")}) == tmp_path / "d"
    assert S.dataset_cache({"AUTORESEARCH_CACHE": str(tmp_path), "AUTORESEARCH_DATASET": "fw"}) == tmp_path / "fw"
    assert S.dataset_cache({"HOME": str(tmp_path)}) == tmp_path / ".cache" / "autoresearch_nb" / "stdlib"


@pytest.mark.parametrize("env", [{"AUTORESEARCH_DATA": "/x/d"}, {"AUTORESEARCH_CACHE": "/c", "AUTORESEARCH_DATASET": "fw"},
                                 {"AUTORESEARCH_DATASET": "fw"}, {}])
def test_dataset_cache_agrees_with_the_harness(env, monkeypatch):
    from autoresearch_nb.harness import runtime
    for name in ("AUTORESEARCH_DATA", "AUTORESEARCH_CACHE", "AUTORESEARCH_DATASET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert S.dataset_cache() == runtime.dataset_dir()


ATTACKS = [  # the faults 1-4, as a run's command would do them
    "import os; os.remove('.git')",
    "open('.git', 'w').write('gitdir: /nonexistent\\n')",
    "import subprocess; subprocess.run('git add -A && git commit -qm x', shell=True)",
    "import subprocess; subprocess.run(['git', 'reset', '--hard', 'HEAD~1'])",
    "open('../../../README.md', 'a').write('pwned')",
    "open('train.py', 'a').write('# edited by the run')",
]


@pytest.mark.parametrize("mode", ["landlock", "none"])
def test_attacks_from_a_run_dir_leave_the_users_repository_alone(world, mode):
    from autoresearch_nb import rundir as R
    if mode == "landlock" and S.landlock_abi()[0] == 0:
        pytest.skip(S.landlock_abi()[1] or "")
    repo = world["repo"]
    (repo / "train.py").write_text("X = 1\n")
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "README.md").write_text("an uncommitted edit\n")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    run = R.run_dir_for(repo, "t", 0, root=world["tmp_path"] / "runs")
    R.refresh(repo, head.strip(), run)
    policy = S.policy_for(run, repo=repo, tmp=R.tmp_for(run), mode=mode)
    for code in ATTACKS:
        subprocess.run(S.wrap(["python", "-c", code], policy), cwd=run, capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout == head
    assert (repo / "README.md").read_text() == "an uncommitted edit\n"
    assert (repo / "train.py").read_text() == "X = 1\n"
    assert R.changes(repo, head.strip(), run) == ["train.py"]  # the run's own edit is found ...
    assert R.refresh(repo, head.strip(), run).written == ("train.py",)  # ... and undone before the next run


def test_compile_caches_are_the_sessions_own(world, monkeypatch):
    """Issue 22: a run appended code to the shared inductor cache ($TMPDIR/torchinductor_$USER) that a later
    unsandboxed torch.compile of the user's ran. Runs get caches beside their run directories, whatever the
    user's own variables say."""
    caches = S.compute_caches(world["tmp_path"] / "c", gpu=True)
    assert caches == {"TORCHINDUCTOR_CACHE_DIR": str(world["tmp_path"] / "c" / "inductor"),
                      "TRITON_CACHE_DIR": str(world["tmp_path"] / "c" / "triton"),
                      "CUDA_CACHE_PATH": str(world["tmp_path"] / "c" / "cuda")}
    assert set(S.compute_caches(world["tmp_path"], gpu=False)) == {"TORCHINDUCTOR_CACHE_DIR"}
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(world["tmp_path"] / "users-own"))
    policy = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"])
    env = dict(policy.env)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(world["run"].resolve().parent / S.COMPILE_FOLDER / "inductor")
    assert env["TORCHINDUCTOR_CACHE_DIR"] in policy.write
    shared = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    assert str(shared) not in policy.write
    if S.landlock_abi()[0]:
        shared.mkdir(exist_ok=True)  # the user's own cache, as their torch.compile makes it
        r = sandboxed(world, f"open({str(shared / 'planted.py')!r}, 'w').write('x')")
        assert r.returncode != 0 and "Permission denied" in r.stderr  # not the runs' to write
        assert not (shared / "planted.py").exists()


def test_extras_may_not_expose_secret_folders_or_the_whole_checkout(world):
    for bad in ("~/.ssh", "~", str(world["home"] / ".aws" / "credentials")):
        with pytest.raises(SandboxError, match=r"\.ssh|\.aws"):
            S.policy_for(world["run"], repo=world["repo"], read=(bad,))
    with pytest.raises(SandboxError, match="holds the checkout"):
        S.policy_for(world["run"], repo=world["repo"], read=(".",))
    (world["repo"] / "data").mkdir()
    assert str(world["repo"] / "data") in S.policy_for(world["run"], repo=world["repo"], read=("data",)).read


@landlock
def test_path_directories_are_readable_but_home_stays_closed(world, monkeypatch):
    tools = world["tmp_path"] / "tools"
    tools.mkdir()
    (tools / "hello").write_text("#!/bin/sh\necho hello from a PATH tool\n")
    (tools / "hello").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{world['home']}:{os.environ['PATH']}")
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="landlock")
    assert str(world["home"]) not in p.read
    r = subprocess.run(S.wrap(["hello"], p), cwd=world["run"], capture_output=True, text=True)
    assert r.stdout.strip() == "hello from a PATH tool", r.stderr


@landlock
def test_restrict_applies_the_policy_in_process(world):
    # For a Python caller that forks its own worker: the same policy, applied without the exec wrapper.
    policy = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="landlock")
    code = ("import sys; from autoresearch_nb import sandbox as S\n"
            "assert S.restrict(S.Policy.from_json(sys.argv[1])) is None\n"
            + attempt(world["home"] / "x") + attempt(world["run"] / "y"))
    r = subprocess.run([sys.executable, "-c", code, policy.to_json()], cwd=world["run"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.split() == ["DENIED", "OK"], r.stderr


def alive(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line holds ``marker`` (pids inside a bubblewrap pid
    namespace are not the host's, so a run cannot report its children's pids usefully)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and "pytest" not in cmdline:
            found.append(int(name))
    return found


def test_the_runner_reads_and_kills_a_wrapped_run(world):
    # the runner's process group kill and its summary parsing work through the wrapper (and bubblewrap).
    from autoresearch_nb.runner import run_command
    policy = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"])
    code = "print('step 1 | loss: 2.0'); print('---'); print('score: 1.5')"
    done = run_command(S.wrap(["python", "-c", code], policy), world["run"], world["tmp_path"] / "a.log", timeout_s=60)
    assert done.exit_code == 0 and done.summary["score"] == 1.5 and done.points[0].loss == 2.0
    slow = ("import subprocess, time; p = subprocess.Popen(['sleep', '30.25']); open('child', 'w').write(str(p.pid)); "
            "time.sleep(30)")
    killed = run_command(S.wrap(["python", "-c", slow], policy), world["run"], world["tmp_path"] / "b.log",
                         timeout_s=2)
    assert killed.timed_out and (world["run"] / "child").exists()
    assert alive("sleep 30.25") == []


DAEMON = ("import os, sys, time\n"
          "if os.fork() == 0:\n"
          "    os.setsid()\n"
          "    if os.fork() == 0:\n"
          "        os.execvp('sleep', ['sleep', sys.argv[1]])\n"
          "    os._exit(0)\n"
          "time.sleep(0.5)\n"
          "print('---'); print('score: 1')\n")


@pytest.mark.parametrize("mode", ["auto", "landlock", "none"])
def test_a_daemon_a_run_double_forks_ends_with_the_run(world, mode):
    """Issue 22: a setsid daemon left the process group the runner kills and outlived the run (and the CLI),
    then wrote into the next run's directory. The wrapper is a subreaper that kills what is left; bubblewrap's
    pid namespace ends it too. Whatever the mode, even with the sandbox off."""
    from autoresearch_nb.runner import run_command
    if mode == "landlock" and S.landlock_abi()[0] == 0:
        pytest.skip("no Landlock here")
    policy = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode=mode)
    marker = f"3{abs(hash((str(world['run']), mode))) % 1000}.5"
    done = run_command(S.wrap(["python", "-c", DAEMON, marker], policy), world["run"], world["tmp_path"] / "d.log",
                       timeout_s=60)
    assert done.exit_code == 0 and done.summary["score"] == 1
    assert alive(f"sleep {marker}") == []


def test_auto_takes_bubblewrap_where_it_works_and_names_the_mode(world, monkeypatch):
    path, why = S.bubblewrap()
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="auto", network=False)
    if path is None:
        assert p.bubblewrap is None and S.label(p) in ("landlock", "none")
        with pytest.raises(SandboxError, match="sandbox = 'bubblewrap' but"):
            S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="bubblewrap")
        return
    assert p.bubblewrap == path and S.label(p).startswith("bubblewrap")
    assert S.describe(p).startswith("sandbox: bubblewrap") and "\n" not in S.describe(p)
    assert S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="landlock").bubblewrap is None
    monkeypatch.setattr(S, "gpu_present", lambda: True)  # a GPU: auto keeps to Landlock until gpu_check showed it
    assert S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="auto").bubblewrap is None
    assert S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="bubblewrap").bubblewrap == path


def test_the_holdout_folder_is_beside_the_dataset_and_outside_a_runs_reads(world):
    from autoresearch_nb.harness.corpus import holdout_dir

    data = world["tmp_path"] / "cache" / "stdlib"
    assert S.holdout_cache({"AUTORESEARCH_DATA": str(data)}) == holdout_dir(data)  # the two rules agree
    assert S.holdout_cache({"AUTORESEARCH_CACHE": str(data.parent)}) == holdout_dir(data)
    p = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="auto", network=False, data=data)
    assert S.readable_root(p, data / "val.bin") == str(data.resolve())
    assert S.readable_root(p, holdout_dir(data) / "holdout.bin") is None
    exposed = S.policy_for(world["run"], repo=world["repo"], tmp=world["tmp"], mode="auto", network=False,
                           data=data, read=(str(data.parent),))
    assert S.readable_root(exposed, holdout_dir(data)) == str(data.parent.resolve())


UNPRIVILEGED = """
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from autoresearch_nb import sandbox as S
run, tmp = sys.argv[2], sys.argv[3]
p = S.policy_for(run, tmp=tmp, mode="bubblewrap", network=False)
code = ("import os, socket, subprocess\\n"
        "open('ok', 'w').write('written')\\n"
        "try:\\n    os.chmod('/etc/hostname', 0o600); print('CHMOD', 'allowed')\\n"
        "except OSError as e:\\n    print('CHMOD', e.errno)\\n"
        "try:\\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 6); print('RAW', 'allowed')\\n"
        "except OSError as e:\\n    print('RAW', e.errno)\\n"
        "subprocess.Popen(['setsid', 'sleep', '33.5'])\\n")
done = subprocess.run(S.wrap(["python", "-c", code], p), cwd=run, capture_output=True, text=True, timeout=60)
print(S.label(p), os.getuid(), done.returncode, done.stdout.replace("\\n", " "), done.stderr[-300:])
"""


def test_bubblewrap_works_for_an_unprivileged_user_too(world):
    """As root (the tests above) and as an unprivileged user (user namespaces): read-only mounts, no raw
    sockets, nothing outlives the run."""
    import shutil as sh
    if S.bubblewrap()[0] is None:
        pytest.skip(S.bubblewrap()[1])
    if os.geteuid() != 0 or not sh.which("setpriv"):
        pytest.skip("needs root and setpriv to become an unprivileged user (the tests above run as this user)")
    # an interpreter the unprivileged user can run (this one may live under /root); the sandbox is stdlib only
    unprivileged = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    python = next((c for c in (sys.executable, "/usr/bin/python3") if subprocess.run(
        [*unprivileged, S.bubblewrap()[0], "--ro-bind", "/", "/", "--dev", "/dev", "--", c, "-c", "pass"],
        capture_output=True).returncode == 0), None)
    if python is None or subprocess.run([*unprivileged, "test", "-r", str(ROOT / "autoresearch_nb" / "sandbox.py")]).returncode:
        pytest.skip("no Python and checkout an unprivileged user can read here (bubblewrap's unprivileged path)")
    base = Path(tempfile.mkdtemp(prefix="autoresearch-unpriv-"))
    try:
        run, tmp = base / "w0", base / "w0.tmp"
        run.mkdir()
        tmp.mkdir()
        for path in (base, run, tmp):
            os.chown(path, 65534, 65534)
        done = subprocess.run([*unprivileged, python, "-c", UNPRIVILEGED, str(ROOT), str(run), str(tmp)],
                              capture_output=True, text=True, timeout=120, cwd=base, env={**os.environ, "HOME": str(base)})
        assert done.returncode == 0, done.stderr
        label, uid, code, *rest = done.stdout.split()
        assert label.startswith("bubblewrap") and uid == "65534" and code == "0", done.stdout
        out = " ".join(rest)
        assert "CHMOD 30" in out or "CHMOD 1" in out  # EROFS (or EPERM): never allowed
        assert "RAW 1" in out                          # EPERM
        assert (run / "ok").read_text() == "written"
        assert alive("sleep 33.5") == []
    finally:
        sh.rmtree(base, ignore_errors=True)
