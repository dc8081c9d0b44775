# python -m pytest tests/test_pipeline.py -q
"""The one pipeline: a stop rule added in one place (pipeline.RULES) reaches every run, whatever drives it
(the serial loop, the lookahead, a noise repeat, two local workers, a Ray task), and every mode shows the same
phases; the run-side pieces (a site, a job) on their own."""
from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EditsAgent, make_repo

from autoresearch_nb import EventKind, Loop, Status
from autoresearch_nb import pipeline
from autoresearch_nb.boundary import Boundary
from autoresearch_nb.config import Config
from autoresearch_nb.records import CurvePoint
from autoresearch_nb.runner import scrub_env

# One progress point at once, then three quiet seconds: a rule checked once a second sees the point and can end
# the run long before it finishes; a run the rule lets be ends cleanly with its score.
TARGET = textwrap.dedent("""\
    import time
    A = 0
    print("step 1 | loss: 1.0", flush=True)
    time.sleep(3)
    print("---")
    print(f"score: {10 - A}")
""")
PLAIN = dict(metric="score", time_budget_s=5, timeout_s=60, noise_repeats=1, noise_k=0, verify="off")


@dataclass(frozen=True)
class Dummy:
    """A stop rule for the test: ends every run but the baseline's own first one, once it has a point."""

    def check(self, job: pipeline.Job, points, elapsed_s: float) -> str | None:
        if points and (job.number != 0 or job.repeat >= 1):
            return f"dummy rule saw {len(points)} point(s) of a {job.purpose} run"
        return None


@pytest.fixture()
def dummy_rule(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pipeline, "RULES", [Dummy()])


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", {"train.py": TARGET})


def phases_of(events: list, number: int) -> list[str]:
    return [e.message for e in events if e.kind == EventKind.PHASE and e.experiment is not None
            and e.experiment.number == number]


MODES = {
    "serial": dict(lookahead="0"),
    "lookahead": dict(lookahead="1"),
    "two local workers": dict(workers=2),
    "ray": dict(workers=2, executor="ray"),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_stop_rule_added_in_one_place_ends_runs_in_every_driver(repo: Path, dummy_rule, mode: str) -> None:
    if mode == "ray":
        ray = pytest.importorskip("ray")
        import cloudpickle
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the rule travels with the task
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    events: list = []
    agent = EditsAgent([("A to 1", "A = 0", "A = 1")])
    with Loop.open(repo, tag="d", agent=agent, **{**PLAIN, **MODES[mode]}) as loop:
        loop.subscribe(events.append)
        loop.optimize()
        base, exp = loop.experiments
    if mode == "ray":
        import ray
        ray.shutdown()
    assert base.status == Status.KEEP and base.metric == 10.0  # the rule lets the baseline be
    assert exp.status == Status.CRASH, exp
    assert "stopped by the loop: dummy rule saw 1 point(s) of a experiment run" in exp.reason, exp.reason
    assert phases_of(events, exp.number) == ["prepare", "start", "train", "done"]  # the same, wherever it ran


def test_a_stop_rule_added_in_one_place_ends_a_noise_repeat(repo: Path, dummy_rule) -> None:
    events: list = []
    with Loop.open(repo, tag="n", agent=EditsAgent([]), **{**PLAIN, "noise_repeats": 2, "noise_k": 2.0}) as loop:
        loop.subscribe(events.append)
        base = loop.baseline()
    assert base.status == Status.KEEP and base.runs == [10.0]  # the repeat was stopped, left out of the floor
    assert "repeat 2 of 2 (seed 43) failed" in base.error and "dummy rule saw 1 point(s) of a noise run" in base.error
    noise = [e.message for e in events if e.kind == EventKind.PHASE and e.purpose == "noise"]
    assert noise == ["prepare", "start", "train", "done"]


def test_the_setup_command_carries_no_stop_rule(repo: Path, dummy_rule) -> None:
    """Setup prepares data for the whole run: early stopping is for experiments, never for it."""
    plan_job = None
    with Loop.open(repo, tag="s", agent=EditsAgent([]), **PLAIN) as loop:
        from autoresearch_nb.trial import Plan
        plan = Plan(repo, "s", loop.config)
        plan_job = plan.job("setup", loop.workspace.head(), None, "setup", purpose="setup")
        experiment = plan.job(1, loop.workspace.head(), 42, "0001")
    assert plan_job.rules == () and plan_job.verification is None and "AUTORESEARCH_SEED" not in plan_job.env
    assert experiment.rules == (Dummy(),) and experiment.env["AUTORESEARCH_SEED"] == "42"


# -- the run side on its own ----------------------------------------------------------------------------------

def test_run_job_reports_phases_points_the_sandbox_label_and_changed_paths(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"train.py": 'import time\nprint("step 1 | loss: 2.0", flush=True)\n'
                                                  'open("train.py", "a").write("#")\ntime.sleep(0.6)\n'
                                                  'print("[phase] evaluate", flush=True)\n'
                                                  'print("---")\nprint("score: 1")\n'})
    from conftest import git
    boundary = Boundary(root, "a", Config())
    job = pipeline.Job(1, git(root, "rev-parse", "HEAD"), "python train.py", "train.py", 60.0, scrub_env(),
                       str(tmp_path / "1.log"))
    seen: list[str] = []
    points: list[CurvePoint] = []
    out = pipeline.run_job(job, pipeline.LocalSite(boundary, 1), pipeline.StopSignal(),
                           pipeline.Hooks(on_point=points.append, on_phase=seen.append), worker=3)
    # the run's own phases as the runner saw them: its first progress line, then its "[phase]" line
    assert seen == ["prepare", "start", "train", "evaluate", "done"]
    assert set(out.result.phase_seconds) == {"prepare", "start", "train", "evaluate"}
    assert out.result.phase_seconds["train"] >= 0.5  # the sleep between the two lines
    assert out.number == 1 and out.worker == 3 and out.result.exit_code == 0 and out.halt is None
    assert [p.loss for p in points] == [2.0] and out.changed == ("train.py",)
    assert out.result.sandbox == boundary.label(1)


def test_run_job_with_too_little_disk_runs_nothing_and_asks_the_loop_to_halt(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"train.py": 'open("ran", "w").write("1")\n'})
    from conftest import git
    boundary = Boundary(root, "a", Config(min_free_mb=1 << 40, disk_floor_mb=1))  # a petabyte: never free
    job = pipeline.Job(1, git(root, "rev-parse", "HEAD"), "python train.py", "train.py", 60.0, scrub_env(),
                       str(tmp_path / "1.log"))
    seen: list[str] = []
    out = pipeline.run_job(job, pipeline.LocalSite(boundary, 1), pipeline.StopSignal(),
                           pipeline.Hooks(on_phase=seen.append))
    assert out.result.failed and out.halt and "min_free_mb" in out.halt and seen == ["prepare", "done"]
    assert not (boundary.run_dir(1) / "ran").exists()


# train.py's own NaN fast-fail is the agent's to edit; the loop's rule reads the progress lines instead.
DIVERGING = textwrap.dedent("""\
    import time
    LOSS = "1.0"
    print(f"step 1 | loss: {LOSS}", flush=True)
    time.sleep(1 if LOSS == "1.0" else 60)
    print("---")
    print("score: 1.0")
""")


def test_a_non_finite_loss_is_stopped_by_the_loop(tmp_path):
    repo = make_repo(tmp_path / "r", {"train.py": DIVERGING})
    agent = EditsAgent([("diverge", 'LOSS = "1.0"', 'LOSS = "nan"')])
    with Loop.open(repo, tag="n", agent=agent, **PLAIN) as loop:
        loop.optimize(n=2)
        base, nan = loop.experiments
    assert base.status == Status.KEEP
    assert nan.status == Status.CRASH and "the loss is nan at step 1" in nan.reason
    assert nan.wall_seconds < 30  # stopped within seconds, not at its end (60 s) or the hard timeout
