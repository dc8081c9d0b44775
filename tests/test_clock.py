# python -m pytest tests/test_clock.py -q
"""The budget clock: the harness's ``H.now()``, the loop's measure of a run's whole process tree, the hard
timeout and the over-budget rule on it, the verifier's clock check, and a resume that would mix clocks. Every
verdict here is true by construction (a run that sleeps uses no CPU; CPU burnt in a child is CPU), never a
comparison of two timings."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EditsAgent, make_repo

from autoresearch_nb import Loop, Status
from autoresearch_nb import clock
from autoresearch_nb.provenance import IncomparableRun
from autoresearch_nb.runner import Run, scrub_env
from autoresearch_nb.verifier import OverBudget, Refused, verify

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "run.py"
    path.write_text(textwrap.dedent(body))
    return f"python {path}"


def run(tmp_path: Path, body: str, *, clock_name: str, timeout_s: float = 60, threads: int = 1):
    return Run(script(tmp_path, body), tmp_path, tmp_path / "run.log", timeout_s=timeout_s, env=scrub_env(),
               clock=clock_name, threads=threads).wait()


def test_resolve_picks_cpu_only_for_a_harness_run_on_a_cpu():
    assert clock.resolve("auto", "cpu", harness=True) == "cpu"
    assert clock.resolve("auto", "cuda", harness=True) == "wall"
    assert clock.resolve("auto", "mps", harness=True) == "wall"
    assert clock.resolve("auto", "cpu", harness=False) == "wall"  # a generic command has no harness clock
    assert clock.resolve("CPU", "cuda", harness=False) == "cpu"
    with pytest.raises(ValueError, match="budget_clock"):
        clock.resolve("gpu", "cpu", harness=True)


def test_over_budget_limit_is_budget_with_tolerance_plus_allowance():
    assert clock.over_budget(40.0, "cpu", 30.0, 0.1, 10.0) is None  # 33 + 10 = 43
    why = clock.over_budget(44.0, "cpu", 30.0, 0.1, 10.0)
    assert why and "44.0 CPU seconds per thread" in why and "43.0" in why
    assert clock.overhead_allowance(20.0) == 15.0 and clock.overhead_allowance(30.0) == 15.0 and clock.overhead_allowance(300.0) == 150.0
    assert clock.overhead_allowance(300.0, 12) == 12.0
    assert clock.Budget("cpu", 1, None).over(1e9) is None  # no enforced budget: only the hard timeout


def test_cpu_clock_counts_cpu_burnt_in_a_child_process(tmp_path):
    # "free compute": the training process's own process_time misses its children; the loop's tree measure not
    body = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', %r], check=True)\nprint('---')\n" \
           "print('score: 1')\n" % BURN.format(s=1.5)
    result = run(tmp_path, body, clock_name="cpu")
    assert result.exit_code == 0 and result.clock == "cpu"
    assert result.run_seconds is not None and result.run_seconds >= 1.5


def test_cpu_clock_does_not_count_sleep_and_divides_by_threads(tmp_path):
    slept = run(tmp_path, "import time\ntime.sleep(2)\n", clock_name="cpu")
    assert slept.wall_s >= 2 and slept.run_seconds < 1.5  # start-up only: sleeping uses no CPU
    burnt = run(tmp_path, BURN.format(s=1.2), clock_name="cpu", threads=4)
    assert burnt.run_seconds * 4 >= 1.2 and burnt.run_seconds < 1.2  # CPU seconds per thread given
    wall = run(tmp_path, "import time\ntime.sleep(1)\n", clock_name="wall")
    assert wall.clock == "wall" and wall.run_seconds >= 1.0


def test_hard_timeout_counts_cpu_on_the_cpu_clock(tmp_path):
    spin = run(tmp_path, "while True:\n    pass\n", clock_name="cpu", timeout_s=1.5)
    assert spin.timed_out and "1.5 CPU seconds per thread" in spin.error
    assert spin.run_seconds >= 1.5


def test_a_sleeping_run_meets_the_wall_cap_on_the_cpu_clock(tmp_path):
    slept = run(tmp_path, "import time\ntime.sleep(60)\n", clock_name="cpu", timeout_s=1)
    assert slept.timed_out and "wall time" in slept.error and str(int(clock.WALL_CAP)) in slept.error
    assert clock.WALL_CAP <= slept.wall_s < 30


def test_harness_now_follows_the_clock():
    # one process (torch is imported once), the clock chosen afresh for each setting; on a CPU machine the
    # harness's own default is the cpu clock (the loop always says which)
    code = textwrap.dedent("""\
        import os, time
        from autoresearch_nb import harness as H
        from autoresearch_nb.harness import runtime
        for name in ("cpu", "wall", ""):
            os.environ.pop("AUTORESEARCH_BUDGET_CLOCK", None)
            if name:
                os.environ["AUTORESEARCH_BUDGET_CLOCK"] = name
            runtime._NOW.clear()  # the clock is chosen once per run; here once per setting
            t = H.now(); time.sleep(0.6); slept = H.now() - t
            t = H.now(); s = time.process_time()
            while time.process_time() - s < 0.6:
                pass
            print(name or "default", H.budget_clock(), round(slept, 2), round(H.now() - t, 2))
    """)
    env = {**scrub_env(), "AUTORESEARCH_DEVICE": "cpu", "AUTORESEARCH_THREADS": "2"}
    env.pop("AUTORESEARCH_BUDGET_CLOCK", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    got = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
    assert [got[k][0] for k in ("cpu", "wall", "default")] == ["cpu", "wall", "cpu"]
    for key in ("cpu", "default"):
        slept, burnt = map(float, got[key][1:])
        assert slept < 0.1 and 0.25 <= burnt <= 0.45  # 0.6 CPU s over the 2 threads given; sleep is free
    slept, burnt = map(float, got["wall"][1:])
    assert slept >= 0.6 and burnt >= 0.6


def facts(folder: Path, **values) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt2").write_bytes(b"not read: the clock is checked first")
    (folder / "facts.json").write_text(json.dumps({"training_seconds": 10.0, "clock": "wall", **values}))
    return folder


def test_verifier_refuses_a_run_that_counted_on_another_clock(tmp_path):
    with pytest.raises(Refused, match="'wall' clock, the session's budget clock is 'cpu'"):
        verify(facts(tmp_path / "a"), 10.0, 0.1, None, clock="cpu")
    with pytest.raises(OverBudget, match=r"harness's clock \(cpu\)"):
        verify(facts(tmp_path / "b", clock="cpu", training_seconds=100.0), 10.0, 0.1, None, clock="cpu")


# A fake harness train.py (the loop recognises the harness by its text): its own training "clock" says 0.5 s,
# but it burns CPU in a child process, which the loop's tree measure sees.
CHEAT = textwrap.dedent("""\
    # from autoresearch_nb import harness as H ... H.export(model)
    import subprocess, sys
    BURN = 0.0
    if BURN:
        subprocess.run([sys.executable, "-c", %r], check=True)
    print("---")
    print("score: 1.0")
    print("training_seconds: 0.5")
""") % BURN.format(s=4)


def test_loop_calls_a_run_over_budget_by_its_own_tree_measure(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": CHEAT})
    agent = EditsAgent([("burn in a child", "BURN = 0.0", "BURN = 1.0")])
    with Loop.open(repo, tag="c", agent=agent, metric="score", verify="off", time_budget_s=1, budget_clock="cpu",
                   budget_overhead_s=0.2, noise_repeats=1, noise_k=0, timeout_s=60) as loop:
        loop.optimize(n=2)
        base, burnt = loop.experiments
        frame = loop.results
    # the limit is 1 s x 1.1 + 0.2 s; the child burns 4 CPU seconds (2 per thread on a 2-core machine)
    assert base.status == Status.KEEP and base.budget_clock == "cpu" and base.run_seconds < 1.3
    assert burnt.status == Status.OVER_BUDGET, burnt.reason
    assert "whole process tree" in burnt.reason and burnt.run_seconds >= 1.5
    assert list(frame["budget_clock"]) == ["cpu", "cpu"]


def test_resume_refuses_to_mix_clocks(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": "print('---')\nprint('score: 1.0')\n"})
    kwargs = dict(metric="score", verify="off", time_budget_s=5, noise_repeats=1, noise_k=0)
    with Loop.open(repo, tag="m", agent=EditsAgent([]), budget_clock="wall", **kwargs) as loop:
        loop.optimize(n=1)
    with pytest.raises(IncomparableRun, match="budget_clock: the run's rows were trained on the budget clock wall"):
        Loop.open(repo, tag="m", agent=EditsAgent([]), budget_clock="cpu", **kwargs)
    with Loop.open(repo, tag="m", agent=EditsAgent([]), budget_clock="wall", **kwargs) as loop:
        assert len(loop.experiments) == 1


# -- the flops clock: a work budget --------------------------------------------------------------------------
def test_flops_clock_counts_reported_work_and_nothing_else():
    code = textwrap.dedent("""\
        import time
        from autoresearch_nb import harness as H
        t = H.now(); time.sleep(0.3); s = time.process_time()
        while time.process_time() - s < 0.3:
            pass
        idle = H.now() - t
        H.work(3.0e9)
        print(H.budget_clock(), idle, H.now() - t)
    """)
    env = {**scrub_env(), "AUTORESEARCH_DEVICE": "cpu", "AUTORESEARCH_BUDGET_CLOCK": "flops",
           "AUTORESEARCH_WORK_RATE": "1e9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    name, idle, worked = out.stdout.split()
    assert name == "flops" and float(idle) == 0.0 and float(worked) == pytest.approx(3.0)  # 3e9 FLOPs at 1e9/s
    bad = subprocess.run([sys.executable, "-c", code], env={**env, "AUTORESEARCH_WORK_RATE": "-1"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "AUTORESEARCH_WORK_RATE must be a positive number" in bad.stderr


def test_flops_clock_bounds_the_cpu_a_run_takes_from_outside(tmp_path):
    # the loop cannot count FLOPs: it measures CPU (per thread) and allows FLOPS_SLACK times the budget
    assert clock.counts_cpu("flops") and clock.counts_cpu("cpu") and not clock.counts_cpu("wall")
    assert clock.hard_limit(10, "flops") == 10 * clock.FLOPS_SLACK and clock.hard_limit(10, "cpu") == 10
    assert clock.over_budget(30.0 * clock.FLOPS_SLACK, "flops", 30.0, 0.0, 0.0) is None
    assert "CPU seconds per thread" in clock.over_budget(30.0 * clock.FLOPS_SLACK + 1, "flops", 30.0, 0.0, 0.0)
    spin = run(tmp_path, "while True:\n    pass\n", clock_name="flops", timeout_s=1.5)
    assert spin.timed_out and "CPU seconds per thread" in spin.error and spin.clock == "flops"


# A harness-style train.py on the flops clock that reports no work: by its own clock it never trains at all.
NO_WORK = textwrap.dedent("""\
    # from autoresearch_nb import harness as H ... H.export(model)
    import time
    from autoresearch_nb import harness as H
    REPORT = 1.0
    t0 = H.now()
    while H.now() - t0 < 1.0:
        s = time.process_time()
        while time.process_time() - s < 0.05:
            pass
        H.work(REPORT * 0.05 * H.work_rate())
    print("---")
    print("score: 1.0")
    print(f"training_seconds: {H.now() - t0:.2f}")
""")


def test_a_run_that_under_reports_its_work_cannot_train_past_the_cpu_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread given, whatever the machine: CPU s per thread = CPU s
    repo = make_repo(tmp_path / "r", {"train.py": NO_WORK})
    agent = EditsAgent([("report a twelfth of the work", "REPORT = 1.0", "REPORT = 0.08")])
    with Loop.open(repo, tag="f", agent=agent, metric="score", verify="off", time_budget_s=1, budget_clock="flops",
                   budget_overhead_s=5, noise_repeats=1, noise_k=0, timeout_s=60) as loop:
        loop.optimize(n=2)
        base, cheat = loop.experiments
    # honest: 1 budget second of work in ~1 CPU second (+ the harness's import); the cheat burns 12.5 CPU s for
    # its "1 s", past 1 s x 1.1 x FLOPS_SLACK + 5 s
    assert base.status == Status.KEEP and base.budget_clock == "flops"
    assert cheat.status == Status.OVER_BUDGET and "flops clock" in cheat.reason, cheat.reason


def test_auto_is_the_work_clock_for_a_train_py_that_reports_its_work(tmp_path, monkeypatch):
    from autoresearch_nb.config import Config
    from autoresearch_nb.verify import budget_clock

    monkeypatch.setenv("AUTORESEARCH_DEVICE", "cpu")
    harness = "from autoresearch_nb import harness as H\nH.export(model)\n"
    (tmp_path / "train.py").write_text(harness + "H.work(6 * n * tokens)\n")
    assert budget_clock(Config(), tmp_path) == "flops"
    (tmp_path / "train.py").write_text(harness)  # an older train.py: no work to count, so CPU seconds
    assert budget_clock(Config(), tmp_path) == "cpu"
    assert budget_clock(Config(budget_clock="wall"), tmp_path) == "wall"
    assert clock.resolve("auto", "cuda", harness=True, reports_work=True) == "wall"  # a GPU: the wall, as ever
