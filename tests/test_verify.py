"""PYTHONPATH=. python -m pytest -q tests/test_verify.py

Verification and the guard on a generic target, through the real CLI: the loop decides on the verify command's
number, a faked print is ``tampered``, a failing guard is ``guard_failed``, an honest change is still kept.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch_nb.config import Config
from autoresearch_nb.errors import ConfigError
from autoresearch_nb.records import RunResult, Status
from autoresearch_nb.trial import classify
from autoresearch_nb.verify import MODEL, Verification, close_enough, prune, resolve
from autoresearch_nb.view import load_results
from research_repo import cli, make_repo

SOLVE = '''X = 3.0


def value():
    return 10 - (X - 1) ** 2


if __name__ == "__main__":
    print("step 1 | loss: 0.5")
    print("---")
    print(f"score: {value():.6f}")
'''
CHECK = 'import solve\nprint("---")\nprint(f"score: {solve.value():.6f}")\n'
GUARD = 'import solve\nassert solve.X >= 0, f"X must not be negative, got {solve.X}"\nprint("guard ok")\n'
QUEUE = """[[experiment]]
description = "fake the score"
edits = [{ search = 'print(f"score: {value():.6f}")', replace = 'print("score: 1000000")' }]

[[experiment]]
description = "X negative"
edits = [{ search = "X = 3.0", replace = "X = -0.5" }]

[[experiment]]
description = "X to 1"
edits = [{ search = "X = 3.0", replace = "X = 1.0" }]
"""


def run(root: Path, *args: str):
    return cli("run", "--tag", "v", "--repo", str(root), "--agent", "queue", "--metric", "score",
               "--direction", "maximize", "--editable", "solve.py", "--command", "python solve.py",
               "--time-budget", "5", "--noise-repeats", "1", *args)


def test_a_faked_score_is_tampered_a_failing_guard_refuses_and_an_honest_change_is_kept(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"solve.py": SOLVE, "check.py": CHECK, "guard_check.py": GUARD,
                                         "queue.toml": QUEUE})
    done = run(root, "--verify", "python check.py", "--guard", "python guard_check.py")
    assert done.returncode == 0, done.stderr
    df = load_results(root, "v")
    by = {row.description: row for row in df.itertuples()}
    cheat = by["fake the score"]
    assert cheat.status == "tampered"
    assert cheat.metric == pytest.approx(6.0) and cheat.claimed == pytest.approx(1e6)
    assert "1e+06" in cheat.reason and "6" in cheat.reason
    negative = by["X negative"]
    assert negative.status == "guard_failed"
    assert "X must not be negative, got -0.5" in negative.reason
    honest = by["X to 1"]
    assert honest.status == "keep" and honest.verified and honest.metric == pytest.approx(10.0)
    tsv = (root / ".autoresearch" / "results" / "v" / "results.tsv").read_text()
    assert "\tdiscard\tfake the score" in tsv and "\tdiscard\tX negative" in tsv  # Karpathy's five statuses


def test_without_verification_the_faked_score_is_kept_and_marked_unverified(tmp_path: Path) -> None:
    # the control: the same cheat wins when the loop believes the run (so the test above can fail)
    root = make_repo(tmp_path / "repo", {"solve.py": SOLVE, "queue.toml": QUEUE})
    done = run(root, "--verify", "off")
    assert done.returncode == 0, done.stderr
    df = load_results(root, "v")
    cheat = df[df["description"] == "fake the score"].iloc[0]
    assert cheat["status"] == "keep" and not cheat["verified"]


def test_a_verify_command_without_a_number_makes_the_run_unverified(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"solve.py": SOLVE, "queue.toml": QUEUE,
                                         "check.py": "raise SystemExit('no model to score')\n"})
    done = run(root, "--verify", "python check.py", "--max-experiments", "2")
    assert done.returncode == 0, done.stderr
    df = load_results(root, "v")
    assert set(df["status"]) == {"unverified"}
    assert df["reason"].str.contains("no model to score").all()
    assert df["metric"].isna().all()


def test_a_flag_refuses_only_a_clean_run() -> None:
    flagged = RunResult(0, False, 1.0, {"score": 1.0}, False, None, "x.log", flag=Status.TAMPERED,
                        flag_reason="printed 9, measured 1")
    assert classify(flagged, "score") == (Status.TAMPERED, "printed 9, measured 1", 1.0)
    crashed = RunResult(1, False, 1.0, {}, False, "boom", "x.log", flag=Status.TAMPERED, flag_reason="x")
    assert classify(crashed, "score").status == Status.CRASH


def test_the_tolerance_is_relative_and_absolute_below_one() -> None:
    assert close_enough(1.004, 1.0, 0.005) and not close_enough(1.006, 1.0, 0.005)
    assert close_enough(0.003, 0.0, 0.005) and not close_enough(0.01, 0.0, 0.005)
    assert not close_enough(1000.0, 1010.0, 0.005)


def test_auto_is_decided_from_the_file_as_the_loop_opens(tmp_path: Path) -> None:
    harness_train = "from autoresearch_nb import harness as H\n...\nH.export(model)\n"
    (tmp_path / "train.py").write_text(harness_train)
    assert resolve(Config(), tmp_path) == MODEL
    assert resolve(Config(metric="score"), tmp_path) is None
    assert resolve(Config(verify="off"), tmp_path) is None
    (tmp_path / "train.py").write_text("print('---'); print('val_bpb: 1.0')\n")
    assert resolve(Config(), tmp_path) is None
    assert Verification.of(Config(), tmp_path) is None
    assert Verification.of(Config(guard="pytest -q"), tmp_path) == Verification("val_bpb", None, "pytest -q")


def test_the_verify_command_cannot_be_the_editable_file() -> None:
    with pytest.raises(ConfigError, match="editable"):
        Config(editable="score.py", verify="python score.py")


def test_only_the_newest_exported_models_are_kept(tmp_path: Path) -> None:
    import os

    for i in range(5):
        (tmp_path / str(i)).mkdir()
        os.utime(tmp_path / str(i), (1000 + i, 1000 + i))
    removed = prune(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "4"] and len(removed) == 3


def test_parallel_workers_verify_and_guard_too(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"solve.py": SOLVE, "check.py": CHECK, "guard_check.py": GUARD,
                                         "queue.toml": QUEUE})
    done = run(root, "--verify", "python check.py", "--guard", "python guard_check.py", "--workers", "2")
    assert done.returncode == 0, done.stderr
    statuses = dict(zip(load_results(root, "v")["description"], load_results(root, "v")["status"]))
    assert statuses["fake the score"] == "tampered" and statuses["X negative"] == "guard_failed"
    assert statuses["X to 1"] == "keep"


def test_the_best_experiments_model_is_kept_whatever_its_age(tmp_path: Path) -> None:
    import os

    for i in range(5):
        (tmp_path / str(i)).mkdir()
        os.utime(tmp_path / str(i), (1000 + i, 1000 + i))
    removed = prune(tmp_path, 1, protect=("1",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "4"] and len(removed) == 3


def clean_run(summary: dict, log: Path) -> RunResult:
    return RunResult(exit_code=0, timed_out=False, wall_s=1.0, summary=summary, failed=False, error=None,
                     log_path=str(log))


def test_facts_only_the_verifier_may_state_never_come_from_the_run(tmp_path: Path) -> None:
    """A run that prints its own holdout_bpb (the verifier gave none: an old corpus) must not fill the row's."""
    check = Verification(metric="val_bpb", command=MODEL)
    run = clean_run({"val_bpb": 2.0, "holdout_bpb": 0.1, "training_seconds": 1.0, "depth": 4}, tmp_path / "r.log")
    verifier = clean_run({"val_bpb": 2.0, "holdout": "none (prepare the corpus again)", "training_seconds": 9.0},
                         tmp_path / "v.log")
    out = check.verified(run, verifier, tmp_path / "v.log")
    assert out.verified and out.flag is None
    assert "holdout_bpb" not in out.summary and out.summary["training_seconds"] == 9.0 and out.summary["depth"] == 4
    refused = check.verified(run, clean_run({"verdict": "unverified", "reason": "no model"}, tmp_path / "v.log"),
                             tmp_path / "v.log")
    assert refused.flag == Status.UNVERIFIED and "holdout_bpb" not in refused.summary


def test_a_model_verification_without_an_export_folder_is_unverified_not_a_crash(tmp_path: Path) -> None:
    """The verifier never started (no AUTORESEARCH_EXPORT in the run's environment): the row says why."""
    pending = Verification(metric="val_bpb", command=MODEL).begin(tmp_path, {}, tmp_path / "3.log")
    try:
        out = pending(clean_run({"val_bpb": 2.0}, tmp_path / "3.log"))
    finally:
        pending.close()
    assert out.flag == Status.UNVERIFIED and "no export folder" in out.flag_reason


HOSTILE_SOLVE = SOLVE.replace('if __name__ == "__main__":\n', 'if __name__ == "__main__":\n'
                              '    open("out.txt", "w").write("ran")  # an output the check reads\n')
# the check imports json (which a run could shadow) and reads the run's output from AUTORESEARCH_OUTPUTS only
HOSTILE_CHECK = ('import json, os, solve\n'
                 'assert not os.path.exists("out.txt"), "the run\'s files are not in the clean tree"\n'
                 'assert open(os.path.join(os.environ["AUTORESEARCH_OUTPUTS"], "out.txt")).read() == "ran"\n'
                 'print("---")\nprint("score: " + json.dumps(round(solve.value(), 6)))\n')
HOSTILE_TEST = "import solve\n\n\ndef test_x_not_negative():\n    assert solve.X >= 0\n"
HOSTILE_QUEUE = """[[experiment]]
description = "plant json.py"
edits = [{ search = 'print(f"score: {value():.6f}")', replace = '''open("json.py", "w").write("def dumps(x):\\\\n    return '1000000'\\\\n")
    print("score: 1000000")''' }]

[[experiment]]
description = "plant conftest.py with X negative"
edits = [{ search = "X = 3.0", replace = "X = -0.5" },
         { search = 'print("---")', replace = '''open("conftest.py", "w").write("def pytest_pyfunc_call(pyfuncitem):\\\\n    return True\\\\n")
    print("---")''' }]

[[experiment]]
description = "X to 1"
edits = [{ search = "X = 3.0", replace = "X = 1.0" }]
"""


def test_files_a_run_leaves_cannot_fool_the_verify_or_guard_command(tmp_path: Path) -> None:
    """Issue 22: a json.py beside the check made it report 1000000, a conftest.py passed an unsafe change. The
    commands now run in a clean copy of the commit; the run's files are data in AUTORESEARCH_OUTPUTS."""
    root = make_repo(tmp_path / "repo", {"solve.py": HOSTILE_SOLVE, "check.py": HOSTILE_CHECK,
                                         "test_solve.py": HOSTILE_TEST, "queue.toml": HOSTILE_QUEUE})
    done = run(root, "--verify", "python check.py", "--guard", "python -m pytest -q -p no:cacheprovider test_solve.py")
    assert done.returncode == 0, done.stderr
    by = {row.description: row for row in load_results(root, "v").itertuples()}
    assert by["baseline"].status == "keep" and by["baseline"].metric == pytest.approx(6.0)  # outputs were read
    planted_json = by["plant json.py"]
    assert planted_json.status == "tampered", planted_json
    assert "1e+06" in planted_json.reason and "verifier measured 6" in planted_json.reason
    planted_conftest = by["plant conftest.py with X negative"]
    assert planted_conftest.status == "guard_failed", planted_conftest
    assert "1 failed" in planted_conftest.reason
    assert by["X to 1"].status == "keep" and by["X to 1"].metric == pytest.approx(10.0)
    # every row says the boundary it actually ran under
    from autoresearch_nb import sandbox
    bwrap = sandbox.bubblewrap()[0] is not None and not sandbox.gpu_present()
    landlocked = sandbox.landlock_abi()[0] > 0
    expected = ("bubblewrap" if bwrap else "") + ("+" if bwrap and landlocked else "") + \
        ("landlock" if landlocked else "") or "none"
    assert {row.sandbox for row in by.values()} == {expected}
