# python -m pytest tests/test_boundary.py -q
"""Every run goes through the boundary: a run directory outside the checkout, the sandbox, a scrubbed
environment. Each test is a fault of issue 12 reproduced through the real CLI (``autoresearch-nb run`` in a
subprocess, the queue agent, a tiny ``score`` target)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import git, make_repo, run_queue, target  # noqa: E402
from conftest import orphan_mode  # noqa: E402



def misbehaving(*steps: tuple[str, str]) -> str:
    """A queue.toml whose experiment i moves X (from the previous one's value) and then runs the Python lines ``steps[i][1]`` (errors ignored,
    so the run still prints a better score: on unprotected code the misdeed is kept and the loop goes on)."""
    out, prev = [], "3.0"
    for x, code in steps:
        body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
        replace = f"X = {x}\ntry:\n{body}\nexcept Exception as e:\n    print('blocked:', e)"
        out.append(f'[[experiment]]\ndescription = "X to {x}"\n'
                   f"edits = [{{ search = \"X = {prev}\", replace = '''{replace}''' }}]\n")
        prev = x
    return "".join(out)


def research(tmp_path: Path, queue: str, **files: str) -> Path:
    root = make_repo(tmp_path / "research", {"train.py": target(), "README.txt": "the user's readme\n", **files})
    (root / "queue.toml").write_text(queue)
    return root


def rows(root: Path, tag: str = "a") -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "results", "--tag", tag, "--repo", str(root),
                        "--format", "json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def user_state(root: Path) -> tuple[str, str, str, str]:
    return (git(root, "rev-parse", "main"), git(root, "status", "--porcelain"),
            (root / "README.txt").read_text(), (root / "train.py").read_text())


# -- faults 1-4: git and the checkout are out of a run's reach --------------------------------------------------

def test_a_run_that_deletes_git_cannot_make_the_loop_reset_the_users_repository(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "import os; os.remove('.git')"), ("1.5", "pass")))
    (root / "README.txt").write_text("an uncommitted edit\n")
    before = user_state(root)
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    assert user_state(root) == before  # main, the edit, the editable file: all as they were
    assert [d["status"] for d in rows(root)] == ["keep", "keep", "keep"]
    assert "X = 1.5" in git(root, "show", "autoresearch/a:train.py")


def test_a_run_that_rewrites_git_leaves_a_resumable_run(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "open('.git', 'w').write('gitdir: /nonexistent\\n')")))
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert [d["status"] for d in rows(root)] == ["keep", "keep"]
    (root / "queue.toml").write_text(misbehaving(("2.0", "pass"), ("1.5", "pass")))
    again = run_queue(root)  # the resume opens the same worktree and goes on (the queue's first entry is done)
    assert again.returncode == 0, again.stderr
    assert [d["status"] for d in rows(root)][:2] == ["keep", "keep"] and len(rows(root)) >= 3


@pytest.mark.parametrize("misdeed", [
    "import subprocess\nopen('smuggled.txt', 'w').write('x')\n"
    "subprocess.run('git add -A && git commit -qm mine', shell=True, check=True)",
    "import subprocess\nsubprocess.run(['git', 'reset', '--hard', 'HEAD~1'], check=True)",
])
def test_a_run_that_commits_or_resets_by_itself_moves_no_branch(tmp_path: Path, misdeed: str) -> None:
    root = research(tmp_path, misbehaving(("2.0", misdeed)))
    main = git(root, "rev-parse", "main")
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    data = rows(root)
    assert [d["status"] for d in data] == ["keep", "keep"]
    assert git(root, "rev-parse", "autoresearch/a") == data[-1]["sha"]  # the branch is where the store says
    assert git(root, "rev-parse", f"{data[-1]['sha']}^") == data[0]["sha"]
    assert "smuggled.txt" not in git(root, "log", "--all", "--name-only", "--format=")
    assert git(root, "rev-parse", "main") == main


def test_a_run_cannot_write_into_the_checkout_by_a_relative_path(tmp_path: Path) -> None:
    escape = "for up in range(1, 8):\n    open('../' * up + 'README.txt', 'w').write('pwned')"
    root = research(tmp_path, misbehaving(("2.0", escape)))
    before = user_state(root)
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    assert user_state(root) == before
    assert (root / "README.txt").read_text() == "the user's readme\n"


# -- issue 13: the holdout split is out of a run's reach ---------------------------------------------------------

STEAL_HOLDOUT = """
import os
data = os.environ['AUTORESEARCH_DATA']
print('val readable:', len(open(os.path.join(data, 'val.bin'), 'rb').read()) > 0)
print('stolen:', open(data + '.holdout/holdout.bin', 'rb').read(12))
"""


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_a_run_cannot_read_the_holdout_split(tmp_path: Path, sandbox: str) -> None:
    from autoresearch_nb.harness.corpus import holdout_dir, prepare_folder

    src = tmp_path / "texts"
    src.mkdir()
    for i in range(40):
        (src / f"doc{i:02d}.txt").write_text(f"document {i} " * 50)
    corpus = prepare_folder(src, tmp_path / "data")
    assert (holdout_dir(corpus) / "holdout.bin").stat().st_size > 0
    root = research(tmp_path, misbehaving(("2.0", STEAL_HOLDOUT)))
    r = run_queue(root, "a", "--sandbox", sandbox, env={**os.environ, "AUTORESEARCH_DATA": str(corpus.path)})
    assert r.returncode == 0, r.stderr
    log = (root / ".autoresearch/logs/a/0001.log").read_text()
    assert "val readable: True" in log  # the corpus folder is readable: the refusal below is the holdout's own
    if sandbox == "none":  # the control: without the boundary the same run reads it, so this test can fail
        assert "stolen: b'document" in log
    else:
        assert "stolen" not in log and "blocked: [Errno 13] Permission denied" in log
        assert str(holdout_dir(corpus)) in log


def test_the_sandboxed_setup_prepares_the_holdout_beside_the_dataset(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = research(tmp_path, misbehaving(("2.0", "pass")))
    env = {k: v for k, v in os.environ.items() if k not in ("AUTORESEARCH_DATA", "AUTORESEARCH_DATASET")}
    r = run_queue(root, "a", "--setup", "python -m autoresearch_nb.cli prepare", env={**env, "AUTORESEARCH_CACHE":
                                                                                       str(cache)})
    assert r.returncode == 0, r.stderr
    meta = json.loads((cache / "stdlib" / "meta.json").read_text())
    assert meta["format"] == 3 and meta["holdout_bytes"] > 0
    assert (cache / "stdlib.holdout" / "holdout.bin").stat().st_size == meta["holdout_bytes"]
    assert not (cache / "stdlib" / "holdout.bin").exists()


# -- fault 12: secrets by value ------------------------------------------------------------------------------------

def test_a_credential_url_never_reaches_the_run_log_store_or_commits(tmp_path: Path) -> None:
    secret = "postgres://user:hunter2pass@db.example/prod"
    # the run prints its whole environment, and a credential URL of its own making (caught by its shape)
    dump = "import os\nfor k, v in os.environ.items():\n    print(k, v)\nprint('postgres://' + 'me:' + 'sesame123@h/db')"
    root = research(tmp_path, misbehaving(("2.0", dump)))
    r = run_queue(root, env={**os.environ, "DATABASE_URL": secret, "SERVICE_URL": "https://api.example/x"})
    assert r.returncode == 0, r.stderr
    log = (root / ".autoresearch/logs/a/0001.log").read_text()
    assert "SERVICE_URL https://api.example/x" in log and "sesame123" not in log
    for path in root.joinpath(".autoresearch").rglob("*"):
        if path.is_file():
            assert b"hunter2pass" not in path.read_bytes(), path
    assert "hunter2pass" not in git(root, "log", "--all", "-p") + r.stdout + r.stderr


# -- fault 15: caches are not changes ----------------------------------------------------------------------------

def test_byte_code_a_run_leaves_is_not_a_violation(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "pass")))
    r = run_queue(root, "a", "--command", "python -c 'import train'")
    assert r.returncode == 0, r.stderr
    assert [d["status"] for d in rows(root)] == ["keep", "keep"]


# -- fault 17: limits per run ------------------------------------------------------------------------------------

def test_a_file_over_the_size_cap_is_a_failed_row(tmp_path: Path) -> None:
    big = "open('big.bin', 'wb').write(b'x' * (3 << 20))\nraise SystemExit(0)"
    root = research(tmp_path, misbehaving(("2.0", big)).replace("except Exception", "except ZeroDivisionError"))
    r = run_queue(root, "a", "--sandbox-file-mb", "1")
    assert r.returncode == 0, r.stderr
    data = rows(root)
    assert [d["status"] for d in data] == ["keep", "crash"]
    assert "File too large" in data[1]["reason"]


def test_too_little_disk_is_a_failed_row_and_the_loop_stops(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "pass"), ("1.5", "pass")))
    r = run_queue(root, "a", "--min-free-mb", str(1 << 40))
    data = rows(root)
    assert len(data) == 1 and data[0]["status"] == "crash" and "MB free" in data[0]["reason"], (data, r.stderr)
    assert "Traceback" not in r.stderr
    sqlite3.connect(root / ".autoresearch" / "store.db").execute("select 1").fetchall()  # still readable


# -- the boundary object -----------------------------------------------------------------------------------------

def test_run_directories_are_outside_the_checkout_and_hold_no_git(tmp_path: Path) -> None:
    from autoresearch_nb.boundary import Boundary
    from autoresearch_nb.config import Config
    root = make_repo(tmp_path / "r", {"train.py": target()})
    b = Boundary(root, "t", Config(editable="train.py"))
    run = b.prepare(git(root, "rev-parse", "HEAD"))
    assert root not in run.parents and not (run / ".git").exists()
    assert (run / "train.py").read_text() == target()
    assert b.describe()  # one line, whatever the kernel


# -- the user's checkout, watched --------------------------------------------------------------------------------

WRITE_WATCHED = "import os\nopen(os.environ['WATCHED'], 'a').write('written by the run\\n')"



def test_notebooks_saved_in_the_checkout_are_not_reported_as_edits(tmp_path: Path) -> None:
    # Issue 26, bug 12: JupyterLab's autosave of the notebook driving the loop, and papermill's out.ipynb, were
    # "your checkout changed during run N (an editor?)" (and a violation without the sandbox).
    from autoresearch_nb.watch import CheckoutWatch

    root = make_repo(tmp_path / "r", {"train.py": target(), "run.ipynb": "{}\n"})
    (root / "notebooks").mkdir()
    (root / "notebooks/analysis.ipynb").write_text("{}\n")  # untracked, in a folder
    watch = CheckoutWatch(root, "t")
    watch.snapshot()
    (root / "run.ipynb").write_text('{"cells": []}\n')  # an autosave
    (root / "notebooks/analysis.ipynb").write_text('{"cells": []}\n')
    (root / "out.ipynb").write_text("{}\n")                        # papermill's output
    (root / "notebooks/.ipynb_checkpoints").mkdir()
    (root / "notebooks/.ipynb_checkpoints/run-checkpoint.ipynb").write_text("{}\n")
    assert watch.changed() == []
    (root / "notes.txt").write_text("mine\n")
    (root / "out.ipynb").write_text('{"again": 1}\n')
    assert watch.changed() == ["notes.txt"]  # anything else still is

def test_a_run_writing_into_the_checkout_by_absolute_path_is_blocked(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", WRITE_WATCHED)))
    r = run_queue(root, env={**os.environ, "WATCHED": str(root / "README.txt")})
    assert r.returncode == 0, r.stderr
    assert (root / "README.txt").read_text() == "the user's readme\n"
    log = (root / ".autoresearch/logs/a/0001.log").read_text()
    assert "Permission denied" in log or "Read-only file system" in log  # Landlock alone, or bubblewrap


def test_without_a_sandbox_a_checkout_change_is_a_violation_naming_the_snapshot(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", WRITE_WATCHED)))
    (root / "draft.txt").write_text("untracked, mine\n")
    r = run_queue(root, "a", "--sandbox", "none", env={**os.environ, "WATCHED": str(root / "README.txt")})
    assert r.returncode == 0, r.stderr
    assert "sandbox off" in r.stdout
    data = rows(root)
    assert [d["status"] for d in data] == ["keep", "violation"]
    assert "README.txt in your checkout" in data[1]["reason"] and "refs/autoresearch/a/checkout/1" in data[1]["reason"]
    # never reverted; the snapshot holds the state before, untracked files included
    assert (root / "README.txt").read_text() == "the user's readme\nwritten by the run\n"
    assert git(root, "show", "refs/autoresearch/a/checkout/1:README.txt") == "the user's readme"
    assert git(root, "show", "refs/autoresearch/a/checkout/1:draft.txt") == "untracked, mine"
    assert git(root, "status", "--porcelain", "--untracked-files=no") == "M README.txt"


def test_a_checkout_change_during_a_sandboxed_run_is_reported_not_blamed(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "import time; time.sleep(3)")))
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "a", "--repo", str(root),
                             "--agent", "queue", "--metric", "score", "--time-budget", "5", "--noise-repeats", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = root / ".autoresearch/logs/a/0001.log"
    for _ in range(600):
        if log.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    (root / "README.txt").write_text("an editor saved this\n")  # while run 1 sleeps
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "changed during run 0001 (README.txt)" in out
    assert [d["status"] for d in rows(root)] == ["keep", "keep"]
    assert (root / "README.txt").read_text() == "an editor saved this\n"


# -- fault 13: a second signal within a second ---------------------------------------------------------------------

STUBBORN_CHILD = ("import subprocess, sys, time\n"
                  "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
                  "time.sleep(60)")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_within_a_second_still_records_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    # the run's child ignores SIGTERM, so the first signal's kill waits on it: the second lands inside that wait
    root = research(tmp_path, misbehaving(("2.0", STUBBORN_CHILD)))
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "a", "--repo", str(root),
                             "--agent", "queue", "--metric", "score", "--time-budget", "5", "--noise-repeats", "1",
                             "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in proc.stdout:
        seen += line
        if line.startswith("#1") and "running" in line:
            break
    time.sleep(1.5)  # the run and its child are up
    proc.send_signal(sig)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert "#1" in seen, seen + out + err
    assert [d["status"] for d in rows(root)] == ["keep", "interrupted"], err


# -- fault 14: smaller ones ----------------------------------------------------------------------------------------

def test_leftover_results_temporaries_are_swept_at_open(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "pass")))
    folder = root / ".autoresearch" / "results" / "a"
    folder.mkdir(parents=True)
    left = folder / ".results.k1ll3d.tsv"
    left.write_text("half a file")
    os.utime(left, (1_000_000_000, 1_000_000_000))  # a kill long ago
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and (folder / "results.tsv").exists()


def test_a_syntax_error_quotes_the_proposals_line_not_the_checkouts(tmp_path: Path) -> None:
    root = research(tmp_path, '[[experiment]]\ndescription = "broken"\n'
                              'edits = [{ search = "X = 3.0", replace = "X = (2.0" }]\n')
    r = run_queue(root, cwd=root)  # the CLI's cwd holds the user's train.py, whose line 1 is "X = 3.0"
    assert r.returncode == 0, r.stderr
    data = rows(root)
    assert data[1]["status"] == "invalid" and "X = (2.0" in data[1]["reason"], data[1]["reason"]


def test_an_uncommitted_edit_to_the_editable_file_is_announced(tmp_path: Path) -> None:
    root = research(tmp_path, misbehaving(("2.0", "pass")))
    (root / "train.py").write_text(target(x="9.0"))
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    assert "train.py has uncommitted changes in your checkout" in r.stdout
    assert (root / "train.py").read_text() == target(x="9.0")


def test_a_flooding_run_has_its_log_capped_head_and_tail_kept_and_the_cut_stated(tmp_path: Path) -> None:
    flood = "import sys\nprint('FIRST LINE')\nfor i in range(40000):\n    print('x' * 100)\nprint('LAST LINE')"
    root = research(tmp_path, misbehaving(("2.0", flood)))
    r = run_queue(root, "a", "--log-cap-mb", "1")
    assert r.returncode == 0, r.stderr
    log = (root / ".autoresearch/logs/a/0001.log").read_bytes()
    assert len(log) < (1 << 20) + 4096 and b"FIRST LINE" in log and b"LAST LINE" in log and b"bytes cut" in log
    assert b"score:" in log  # the summary is in the tail
    row = rows(root)[1]
    assert row["status"] == "keep" and "bytes from its middle were cut" in (row.get("error") or ""), row


# -- fault 11: a read-only repository ------------------------------------------------------------------------------

def read_only(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI with ``root`` mounted read-only (a user and mount namespace: tests run as root, which chmod
    does not stop)."""
    inner = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec \"$@\""
    return subprocess.run(["unshare", "-rm", "sh", "-c", inner, "sh", sys.executable, "-m", "autoresearch_nb.cli",
                           *args], capture_output=True, text=True, timeout=120)


def test_a_read_only_repository_gives_a_clear_error_and_its_store_stays_readable(tmp_path: Path) -> None:
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged user and mount namespaces here")
    root = research(tmp_path, misbehaving(("2.0", "pass")))
    assert run_queue(root).returncode == 0
    r = read_only(root, "run", "--tag", "a", "--repo", str(root), "--agent", "queue", "--metric", "score")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "Read-only file system" in r.stderr, r.stderr
    res = read_only(root, "results", "--tag", "a", "--repo", str(root), "--format", "json")
    assert res.returncode == 0, res.stderr
    assert [d["status"] for d in json.loads(res.stdout)] == ["keep", "keep"]
    st = read_only(root, "status", "--repo", str(root))
    assert st.returncode == 0 and "2 experiments" in st.stdout, st.stderr


def test_a_huge_proposal_is_invalid_and_the_store_keeps_its_head_and_tail(tmp_path: Path) -> None:
    huge = "X = 2.0\n" + "# " + "y" * (6 << 20) + "\nprint('---')\nprint('score: 1.0')\n"
    root = research(tmp_path, f'[[experiment]]\ndescription = "flood"\ncontent = """{huge}"""\n')
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    row = rows(root)[1]
    assert row["status"] == "invalid" and "MB cap for a proposal" in row["reason"], row["reason"]
    store = root / ".autoresearch" / "store.db"
    size = store.stat().st_size + sum(p.stat().st_size for p in store.parent.glob("store.db-*"))
    assert size < 2 << 20, size


# -- fault 5: the pid gap ------------------------------------------------------------------------------------------

def test_a_run_started_but_its_pid_never_saved_is_killed_at_the_reopen(tmp_path: Path) -> None:
    import psutil
    root = research(tmp_path, misbehaving(("2.0", "pass")), **{"train.py": target("import time", "time.sleep(60)")})
    from autoresearch_nb.rundir import run_dir_for
    run_dir = run_dir_for(root, "a", 0)
    env = {**os.environ, "AUTORESEARCH_FAULT_PAUSE": "started", "AUTORESEARCH_FAULT_PAUSE_S": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "a", "--repo", str(root),
                             "--agent", "queue", "--metric", "score", "--time-budget", "5", "--noise-repeats", "1",
                             "--sandbox", orphan_mode()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:  # the baseline's run has started: kill the loop in its pid gap
        if line.startswith("fault-pause started"):
            break
    proc.kill()
    proc.wait()

    def runs() -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("AUTORESEARCH_RUN") == "a/0" and p.cwd() == str(run_dir):
                    out.append(p)
            except psutil.Error:
                continue
        return out

    assert runs(), "the run should outlive the killed loop"
    reopen = ("import sys\nfrom autoresearch_nb import Loop\n"
              "Loop.open(sys.argv[1], tag='a', agent='queue', metric='score').close()\n")
    r = subprocess.run([sys.executable, "-c", reopen, str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert runs() == []
    assert [d["status"] for d in rows(root)] == ["interrupted"]


# -- the loop itself under a hostile run (issue 22) --------------------------------------------------------------

FILL_DISK = """
import time
with open("filler.bin", "wb") as f:
    for i in range(400):  # up to 20 GB, 50 MB at a time; the loop stops the run long before
        f.write(b"\\1" * (50 << 20))
        f.flush()
        time.sleep(0.05)
"""


def test_a_run_that_fills_the_disk_is_stopped_with_a_row_that_says_why(tmp_path: Path) -> None:
    """Once the store's disk was full, SQLite could not write the row saying why: a traceback, exit 1, the row
    left running. Now free space is watched during the run: the run is stopped at the floor, its row records
    why, the loop stops and the store opens afterwards."""
    import shutil

    from autoresearch_nb.view import load_results

    root = research(tmp_path, misbehaving(("2.0", FILL_DISK), ("1.0", "pass")))
    free_mb = shutil.disk_usage(root).free >> 20
    if free_mb < 3000:
        pytest.skip(f"only {free_mb} MB free: too little to fill safely")
    # the run may start (min_free_mb is below what is free) and must stop 700 MB later (the floor)
    try:
        r = run_queue(root, "a", "--min-free-mb", str(free_mb - 300), "--disk-floor-mb", str(free_mb - 1000),
                      "--timeout-s", "240")
    finally:
        from autoresearch_nb.rundir import run_dir_for
        (run_dir_for(root, "a", 0) / "filler.bin").unlink(missing_ok=True)  # a GB the next run would delete
    assert r.returncode == 0, r.stderr
    df = load_results(root, "a")  # the store opens
    filled = df[df["description"] == "X to 2.0"].iloc[0]
    assert filled["status"] == "crash", filled.to_dict()
    assert "stopped by the loop" in filled["error"] and "disk_floor_mb" in filled["error"]
    assert "X to 1.0" not in set(df["description"])  # the loop stopped after it
    assert (shutil.disk_usage(root).free >> 20) > free_mb - 3000  # stopped early, not at 20 GB
