# python -m pytest tests/test_cli.py -q
"""The headless CLI as a user runs it: a real `autoresearch-nb` process, its exit codes and messages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import make_repo

TARGET = textwrap.dedent("""\
    import time
    X = 3.0
    SLEEP = 0.0
    time.sleep(SLEEP)
    print("step 1 | loss: 0.5")
    print("---")
    print(f"score: {(X - 1) ** 2:.6f}")
""")

QUEUE = textwrap.dedent("""\
    [[experiment]]
    description = "X to 2"
    edits = [{ search = "X = 3.0", replace = "X = 2.0" }]

    [[experiment]]
    description = "X to 9"
    edits = [{ search = "X = 2.0", replace = "X = 9.0" }]
""")


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)

FILES = {"train.py": TARGET, "queue.toml": QUEUE}
# Experiment #1 sleeps for a minute: long enough to be stopped mid-run.
SLOW_QUEUE = QUEUE.replace('"X = 3.0", replace = "X = 2.0"', '"SLEEP = 0.0", replace = "SLEEP = 60.0"')


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", FILES)


def test_run_prints_a_line_per_experiment_and_exits_0(repo: Path) -> None:
    r = cli("run", "--tag", "a", "--repo", str(repo), "--agent", "queue", "--metric", "score",
            "--time-budget", "5")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("#") and "running" not in line]
    assert len(lines) == 3
    assert "keep" in lines[0] and "keep" in lines[1] and "discard" in lines[2]
    assert "best: #1 score 1.000000" in r.stdout


def test_results_formats(repo: Path) -> None:
    assert cli("run", "--tag", "a", "--repo", str(repo), "--agent", "queue", "--metric", "score").returncode == 0
    tsv = cli("results", "--tag", "a", "--repo", str(repo), "--format", "tsv").stdout.splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription" and len(tsv) == 4
    data = json.loads(cli("results", "--tag", "a", "--repo", str(repo), "--format", "json").stdout)
    assert [d["status"] for d in data] == ["keep", "keep", "discard"]
    csv = cli("results", "--repo", str(repo), "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("number,") and len(csv) == 4
    table = cli("results", "--tag", "a", "--repo", str(repo)).stdout
    assert "X to 9" in table and "discard" in table


def test_status_lists_runs_with_best(repo: Path) -> None:
    cli("run", "--tag", "a", "--repo", str(repo), "--agent", "queue", "--metric", "score")
    out = cli("status", "--repo", str(repo)).stdout
    assert out.startswith("a ") and "3 experiments" in out and "best score 1.000000 (#1)" in out


def test_max_experiments_flag(repo: Path) -> None:
    r = cli("run", "--tag", "m", "--repo", str(repo), "--agent", "queue", "--metric", "score",
            "--max-experiments", "2")
    assert r.returncode == 0
    data = json.loads(cli("results", "--tag", "m", "--repo", str(repo), "--format", "json").stdout)
    assert len(data) == 2


def test_wrong_flag_is_one_clear_line(repo: Path) -> None:
    r = cli("run", "--tag", "a", "--repo", str(repo), "--time-bugdet", "5")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--time-bugdet" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_value_is_one_clear_line(repo: Path) -> None:
    r = cli("run", "--tag", "a", "--repo", str(repo), "--direction", "sideways")
    assert r.returncode == 2 and "direction" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "--tag", "a", "--repo", str(repo), "--time-budget", "abc")
    assert r.returncode == 2 and "time_budget_s" in r.stderr and "Traceback" not in r.stderr


def test_not_a_git_repo(tmp_path: Path) -> None:
    r = cli("run", "--tag", "a", "--repo", str(tmp_path))
    assert r.returncode == 2
    assert "not a git repository" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_agent(repo: Path) -> None:
    r = cli("run", "--tag", "a", "--repo", str(repo), "--agent", "gpt9")
    assert r.returncode == 2 and "unknown agent" in r.stderr and "Traceback" not in r.stderr


def test_results_of_unknown_tag(repo: Path) -> None:
    cli("run", "--tag", "a", "--repo", str(repo), "--agent", "queue", "--metric", "score")
    r = cli("results", "--tag", "nope", "--repo", str(repo))
    assert r.returncode == 1 and "no run tagged 'nope'" in r.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly(repo: Path, sig: signal.Signals, code: int) -> None:
    (repo / "queue.toml").write_text(SLOW_QUEUE)
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "s", "--repo", str(repo),
                             "--agent", "queue", "--metric", "score", "--timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    group = run_group(running_pid(repo, "s", 1, proc))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    data = json.loads(cli("results", "--tag", "s", "--repo", str(repo), "--format", "json").stdout)
    assert [d["status"] for d in data] == ["keep", "interrupted"]
    # No child left: the run's whole process group is gone (waits only as long as they take to die).
    psutil.wait_procs(group, timeout=30)
    assert not [p.cmdline() for p in group if alive(p)]


@pytest.mark.parametrize("mode", ["landlock", "bubblewrap"])
def test_kill_9_of_the_cli_leaves_the_run_until_the_tag_is_reopened(repo: Path, mode: str) -> None:
    """The opposite case, which shows the group check above can fail: kill -9 cleans nothing up, so the reopened
    tag kills the orphan. Under bubblewrap (--die-with-parent, its own pid namespace) the run dies with the CLI."""
    from autoresearch_nb import sandbox
    if mode == "bubblewrap" and sandbox.bubblewrap()[0] is None:
        pytest.skip(sandbox.bubblewrap()[1])
    if mode == "landlock" and sandbox.landlock_abi()[0] == 0:
        pytest.skip("no Landlock here")
    (repo / "queue.toml").write_text(SLOW_QUEUE)
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "s", "--repo", str(repo),
                             "--agent", "queue", "--metric", "score", "--timeout", "120", "--sandbox", mode],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group = run_group(running_pid(repo, "s", 1, proc))
    proc.kill()
    proc.wait(30)
    if mode == "bubblewrap":
        psutil.wait_procs(group, timeout=30)
        assert not [p.cmdline() for p in group if alive(p)]  # gone with the CLI
    else:
        assert [p for p in group if alive(p)]  # the orphaned run is still there
    r = cli("run", "--tag", "s", "--repo", str(repo), "--agent", "queue", "--metric", "score",
            "--max-experiments", "2", "--sandbox", mode)
    assert r.returncode == 0, r.stderr
    psutil.wait_procs(group, timeout=30)
    assert not [p.cmdline() for p in group if alive(p)]
    data = json.loads(cli("results", "--tag", "s", "--repo", str(repo), "--format", "json").stdout)
    assert [d["status"] for d in data][:2] == ["keep", "interrupted"]


@pytest.mark.parametrize("key,agent", [(None, "tuner"), ("sk-ant-" + "test-not-real", "claude")])
def test_the_default_agent_is_claude_with_a_key_and_the_tuner_without(repo: Path, key: str | None,
                                                                      agent: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    if key:
        env["ANTHROPIC_API_KEY"] = key
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "d", "--repo", str(repo),
                        "--metric", "score", "--max-experiments", "1", "--noise-repeats", "1"],
                       capture_output=True, text=True, timeout=120, env=env)  # only the baseline: no API call
    assert r.returncode == 0, r.stderr
    assert f"(agent {agent}, " in r.stdout
    assert "test-not-real" not in r.stdout + r.stderr


TINY_TRAIN = {"DEPTH": "1", "ASPECT_RATIO": "32", "HEAD_DIM": "16", "BATCH_SIZE": "4", "GRAD_ACCUM": "2",
              "TOKENIZER": '"byte"'}


@pytest.mark.slow
def test_the_tuner_runs_the_real_train_py_through_the_cli(tmp_path: Path) -> None:
    """The main job: the tuner proposes, the real train.py trains for a second on a tiny corpus, the loop decides."""
    import re

    from autoresearch_nb.harness.corpus import prepare_folder

    text = (Path(__file__).resolve().parents[1] / "train.py").read_text()
    for name, value in TINY_TRAIN.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, count=1, flags=re.M)
        assert n == 1, name
    repo = make_repo(tmp_path / "research", {"train.py": text})
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10, 22):  # two-digit numbers: val and the holdout equally hard
        (src / f"mod{i}.py").write_text(f"def function_{i}(value):\n    return value + {i}\n\n" * 60)
    corpus = prepare_folder(src, tmp_path / "corpus")
    env = {**os.environ, "AUTORESEARCH_DATA": str(corpus.path), "AUTORESEARCH_DEVICE": "cpu",
           "AUTORESEARCH_PEAK_FLOPS": "1e11", "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "tune", "--repo", str(repo),
                        "--agent", "tuner", "--time-budget", "1", "--max-experiments", "3",
                        "--noise-repeats", "1", "--seed", "3", "--budget-clock", "cpu"],  # a tiny model: CPU s
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(cli("results", "--tag", "tune", "--repo", str(repo), "--format", "json").stdout)
    assert len(data) == 3 and data[0]["status"] == "keep" and data[0]["description"] == "baseline"
    for row in data[1:]:  # each proposal moved CAPS dials of train.py and was trained and judged
        # overfit: judged like the others, then refused by the holdout rule (tiny corpus, no noise floor)
        assert row["status"] in ("keep", "discard", "overfit"), row
        assert re.fullmatch(r"[A-Z_]+ \S+ -> \S+(, [A-Z_]+ \S+ -> \S+)*", row["description"]), row["description"]
        assert 0 < row["val_bpb"] < 9
    printed = [line for line in r.stdout.splitlines() if line.startswith(("#1 ", "#2 ")) and "running" not in line]
    assert len(printed) == 2 and all(" -> " in line for line in printed)
    # the harness says when evaluation starts: the console says so, and each row times its phases
    assert "  #0 evaluating" in r.stdout and "  #1 evaluating" in r.stdout
    assert all({"start", "train", "evaluate"} <= set(row["phase_seconds"]) for row in data), data[0]

def running_pid(repo: Path, tag: str, number: int, proc: subprocess.Popen) -> int:
    """The pid the store records for experiment ``number`` once it is running (the run's group leader)."""
    from autoresearch_nb.errors import StoreError
    from autoresearch_nb.records import Status
    from autoresearch_nb.store import Store

    db = repo / ".autoresearch" / "store.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        rows = []
        if db.exists():
            try:
                store = Store(db)
            except StoreError:  # the CLI has created the file but not yet its tables
                store = None
            if store is not None:
                rows = [e for e in store.experiments(tag) if e.number == number]
                store.close()
        if rows and rows[0].status == Status.RUNNING and rows[0].pid:
            return rows[0].pid
        time.sleep(0.05)
    raise AssertionError(f"experiment #{number} never ran (exit {proc.poll()})")


def alive(p: psutil.Process) -> bool:
    """Running and not a zombie (``os.kill(pid, 0)`` succeeds on a zombie)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_group(pid: int) -> list[psutil.Process]:
    """The live processes of ``pid``'s process group, once its train.py has exec'd (it may not have yet)."""
    pgid = os.getpgid(pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        group = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == pgid and alive(p):
                    group.append(p)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        if any("train.py" in " ".join(p.cmdline()) for p in group if alive(p)):
            return group
        time.sleep(0.05)
    raise AssertionError(f"no train.py in process group {pgid}")


# -- settings and tags refused before anything runs (issue 12, faults 9 and 14) ----------------------------------

def _branches(repo: Path) -> str:
    return subprocess.run(["git", "branch", "--list", "autoresearch/*"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("flag", ["--timeout", "--time-budget"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_time_is_a_clear_config_error(repo: Path, flag: str, value: str) -> None:
    r = cli("run", "--tag", "t", "--repo", str(repo), "--agent", "queue", flag, value)
    assert r.returncode == 2 and "must be a finite number" in r.stderr and "Traceback" not in r.stderr
    assert _branches(repo) == ""  # nothing created, nothing saved for a resume


@pytest.mark.parametrize("tag", ["a..b", "x.lock"])
def test_a_tag_git_cannot_use_is_a_clear_exit_2(repo: Path, tag: str) -> None:
    r = cli("run", "--tag", tag, "--repo", str(repo), "--agent", "queue")
    assert r.returncode == 2 and f"tag {tag!r}" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and _branches(repo) == ""


def test_run_help_describes_every_setting_in_words() -> None:
    from autoresearch_nb.config import Config

    out = "".join(cli("run", "--help").stdout.split())  # argparse wraps lines, also after a hyphen
    for name, text in Config.help().items():
        if name != "max_experiments":  # its flag is defined by the run command itself
            assert f"--{name.replace('_', '-')}" in out and "".join(text.split()) in out, name
    assert "(config:" not in out


def _store_bytes(repo: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (repo / ".autoresearch").rglob("*") if p.is_file())


def test_a_lone_surrogate_in_queue_json_is_an_invalid_row_and_the_run_goes_on(repo: Path) -> None:
    # JSON can spell "\ud800"; it used to crash the loop in content_hash, on every resume.
    (repo / "queue.toml").unlink()
    (repo / "queue.json").write_text('[{"description": "bad", "content": "X = 3  # \\ud800\\n"},'
                                     ' {"description": "X to 2", "edits": [{"search": "X = 3.0", "replace": "X = 2.0"}]}]')
    for _ in range(2):  # the second call resumes: nothing left, and no crash
        r = cli("run", "--tag", "s", "--repo", str(repo), "--agent", "queue", "--metric", "score")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = json.loads(cli("results", "--tag", "s", "--repo", str(repo), "--format", "json").stdout)
    assert [(d["description"], d["status"]) for d in rows] == [("baseline", "keep"), ("bad", "invalid"),
                                                               ("X to 2", "keep")]
    assert "UTF-8 cannot encode" in rows[1]["reason"]


def test_a_queued_file_outside_the_repo_is_refused_unread(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("X = 1.0  # outside-the-repo-7f3a\n")
    (repo / "queue.toml").write_text(f'[[experiment]]\ndescription = "abs"\nfile = "{secret}"\n\n'
                                     '[[experiment]]\ndescription = "rel"\nfile = "../secret.py"\n')
    r = cli("run", "--tag", "f", "--repo", str(repo), "--agent", "queue", "--metric", "score")
    assert r.returncode == 0, r.stderr
    rows = json.loads(cli("results", "--tag", "f", "--repo", str(repo), "--format", "json").stdout)
    assert [d["status"] for d in rows] == ["keep", "invalid", "invalid"]
    assert all("not inside the repository" in d["reason"] for d in rows[1:])
    assert b"outside-the-repo-7f3a" not in _store_bytes(repo)  # never read, so never stored or committed
    log = subprocess.run(["git", "log", "--all", "-p"], cwd=repo, capture_output=True, text=True).stdout
    assert "outside-the-repo-7f3a" not in log
