"""PYTHONPATH=. python -m pytest -q tests/test_verifier.py

The model verifier on the repository's own train.py (a tiny copy, 2 s budgets, one corpus for the module): every
cheat of benchmarks/integrity.py goes through the real CLI and gets its status, an honest change is still kept; and
the verifier's own refusals (pickle, refused ops, leftovers, no harness clock) one by one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autoresearch_nb.harness.export import ENV_EXPORT as HARNESS_ENV_EXPORT
from autoresearch_nb.verifier import Refused, check_ops, read_facts
from autoresearch_nb.verify import ENV_EXPORT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import integrity  # noqa: E402


BUDGET = 1  # training seconds per experiment: the outcomes hold by construction (integrity.TINY), not by steps


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's small corpus, prepared once for the module."""
    return integrity.corpus(tmp_path_factory.mktemp("integrity"))


def test_every_cheat_is_caught_and_an_honest_change_is_kept(tmp_path: Path, data: Path) -> None:
    rows, overhead = integrity.table(BUDGET, tmp_path, control=False, data=data)
    got = {r["description"]: r for r in rows}
    assert got["baseline"]["status"] == "keep" and got["baseline"]["verified"] is not None
    cheats = integrity.CHEATS + [c for c in integrity.AFTER_HONEST if c[0] != "training on the validation split"]
    assert len(cheats) == 7
    for description, _, _, expected in cheats:
        assert got[description]["status"] == expected, got[description]
    monkeypatched = got["evaluate_bpb monkeypatched"]
    assert monkeypatched["printed"] == pytest.approx(monkeypatched["verified"] / 2, rel=1e-3)
    assert "printed val_bpb" in monkeypatched["reason"] and "verifier measured" in monkeypatched["reason"]
    assert "H.export" in got["fake summary without training"]["reason"]
    assert "could not be exported" in got["model that cannot be exported"]["reason"]
    assert "by the harness's clock" in got["training past the budget"]["reason"]
    for cheat in ("attention that sees the future", "logits that read the next input token"):
        assert "not causal: the prediction at position" in got[cheat]["reason"], got[cheat]
    honest = got[integrity.HONEST[0]]
    assert honest["status"] == "keep" and honest["verified"] == pytest.approx(honest["printed"], rel=0.005)
    assert all(r["holdout_bpb"] is not None and r["holdout_bpb"] == r["holdout_bpb"] for r in rows if r["verified"])
    assert overhead is not None and overhead > 0
    # training on val (on top of the honest keep) is never kept. When val says "better" (as on a quiet machine:
    # 0.03 against 0.74 bpb) the holdout did not follow and the row is overfit, flagged with the gap; a machine so
    # loaded that 2 s train a few steps can leave it no better on val, then it is simply discarded.
    # (tests/test_loop_noise.py checks the rule itself on a deterministic target.)
    on_val = got["training on the validation split"]
    assert on_val["status"] in ("overfit", "discard"), on_val
    if on_val["status"] == "discard":
        assert on_val["verified"] >= honest["verified"], on_val  # discarded only for not improving val
        return
    assert on_val["verified"] < honest["verified"]                      # val alone says: better
    assert on_val["holdout_gap"] > honest["holdout_gap"] + 0.02         # the gap widened
    assert on_val["holdout_gap"] == pytest.approx(on_val["holdout_bpb"] - on_val["verified"])
    assert f"{honest['holdout_bpb']:.6g}" in on_val["reason"] and f"{on_val['holdout_bpb']:.6g}" in on_val["reason"]


def test_without_verification_the_fake_summary_is_kept(tmp_path: Path, data: Path) -> None:
    # the control: the loop believes the run when verify is off, so the test above can fail
    env = integrity.env_for(tmp_path, data)
    df = integrity.run_loop(integrity.make_repo(tmp_path / "off", [integrity.CHEATS[0]]), env, BUDGET,
                            "--verify", "off")
    row = df[df["description"] == integrity.CHEATS[0][0]].iloc[0]
    assert row["status"] == "keep" and row["metric"] == 0.5 and not row["verified"]


def test_the_loop_and_the_harness_name_the_same_export_variable() -> None:
    assert ENV_EXPORT == HARNESS_ENV_EXPORT


def _facts(folder: Path, **facts: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt2").write_bytes(b"not a model")
    (folder / "facts.json").write_text(json.dumps(facts))
    return folder


def test_a_leftover_artifact_is_refused(tmp_path: Path) -> None:
    folder = _facts(tmp_path / "a", training_seconds=1.0)
    assert read_facts(folder, None)["training_seconds"] == 1.0
    with pytest.raises(Refused, match="older than this run"):
        read_facts(folder, time.time() + 5)


def test_an_export_error_is_the_reason(tmp_path: Path) -> None:
    folder = _facts(tmp_path / "a", export_error="GuardOnDataDependentSymNode: idx.sum() > 0")
    with pytest.raises(Refused, match="could not be exported .*idx.sum"):
        read_facts(folder, None)


def test_refused_ops_are_named() -> None:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(torch.ops.aten.relu.default, (x,))
    graph.output(y)
    program = type("P", (), {"graph_module": torch.fx.GraphModule(torch.nn.Module(), graph)})()
    assert check_ops(program) == 1
    bad = torch.fx.Graph()
    x = bad.placeholder("x")
    bad.call_function(torch.ops.aten.from_file.default, ("/etc/passwd",))
    bad.call_function(os.system, ("true",))
    bad.output(x)
    program = type("P", (), {"graph_module": torch.fx.GraphModule(torch.nn.Module(), bad)})()
    with pytest.raises(Refused, match="aten.from_file"):
        check_ops(program)


def test_loading_never_falls_back_to_pickle(tmp_path: Path) -> None:
    # a real process, as the verifier runs: after strict_torch_load a full unpickling request raises
    code = ("import io, torch, collections\n"
            "from autoresearch_nb.verifier import strict_torch_load, Refused\n"
            "buf = io.BytesIO(); torch.save(collections.Counter(a=1), buf); buf.seek(0)\n"
            "strict_torch_load()\n"
            "try:\n    torch.load(buf, weights_only=False)\nexcept Refused as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: the artifact needs a full (pickle) load" in out.stdout


def test_the_holdout_is_scored_only_when_it_matches_its_manifest(tmp_path: Path) -> None:
    from autoresearch_nb.harness.corpus import holdout_dir, prepare_folder
    from autoresearch_nb.harness.tokenizer import ByteTokenizer
    from autoresearch_nb.verifier import score_holdout

    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"d{i:02d}.txt").write_text(f"text number {i} " * 40)
    corpus = prepare_folder(src, tmp_path / "corpus")
    logits = torch.zeros(1, 1, 256)  # uniform over bytes: exactly 8 bits per byte

    def model(x: torch.Tensor) -> torch.Tensor:
        return logits.expand(x.size(0), x.size(1), 256)

    got = score_holdout(model, corpus, ByteTokenizer(), 16, torch.device("cpu"), None)
    assert got["holdout_bpb"] == pytest.approx(8.0) and got["holdout_bytes"] > 0
    (holdout_dir(corpus) / "holdout.bin").write_bytes(b"a swapped holdout")
    assert score_holdout(model, corpus, ByteTokenizer(), 16, torch.device("cpu"), None)["holdout"].startswith(
        "unreadable")


# -- the verifier process: warm start, sandbox, the best's model kept -----------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny train.py run once with an export folder: its folder, environment, printed val_bpb, start time."""
    from autoresearch_nb.runner import run_command

    work = tmp_path_factory.mktemp("trained")
    env = integrity.env_for(work, integrity.corpus(work))
    run_dir = work / "run"
    run_dir.mkdir()
    (run_dir / "train.py").write_text(integrity.tiny_train())
    env.update(AUTORESEARCH_TIME_BUDGET="1", AUTORESEARCH_SEED="1", **{ENV_EXPORT: str(work / "artifacts" / "1")})
    started = time.time()
    done = run_command("python train.py", run_dir, work / "run.log", timeout_s=600, env=env)
    assert done.exit_code == 0, (work / "run.log").read_text()[-2000:]
    return {"work": work, "run_dir": run_dir, "env": env, "printed": done.summary["val_bpb"], "started": started,
            "result": done}


def test_a_sandboxed_verifier_still_verifies_and_cannot_write_the_checkout(trained: dict, tmp_path: Path) -> None:
    from autoresearch_nb.sandbox import landlock_abi
    from autoresearch_nb.verify import MODEL, Verification, confined

    if landlock_abi()[0] == 0:
        pytest.skip("no Landlock on this kernel")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    confine = confined("landlock", repo=checkout, env=trained["env"])
    check = Verification(metric="val_bpb", command=MODEL, budget_s=1)
    pending = check.begin(trained["run_dir"], trained["env"], tmp_path / "v.log", confine=confine,
                          not_before=trained["started"])
    try:
        out = pending(trained["result"])
    finally:
        pending.close()
    assert out.verified and out.flag is None, out.flag_reason
    assert out.summary["val_bpb"] == pytest.approx(trained["printed"], rel=1e-4)
    # the same policy around a probe: its private directory is writable, the checkout and the run are not
    cwd = tmp_path / "probe"
    cwd.mkdir()
    probe = ("import sys\nfor path in sys.argv[1:]:\n    try:\n        open(path, 'w').write('x')\n"
             "        print('wrote', path)\n    except OSError as e:\n        print('refused', path, e.errno)\n")
    argv = confine([sys.executable, "-c", probe, str(cwd / "ok"), str(checkout / "x"),
                    str(trained["run_dir"] / "x")], cwd, (Path(trained["env"][ENV_EXPORT]),))
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert f"wrote {cwd / 'ok'}" in done.stdout, done.stdout + done.stderr
    assert f"refused {checkout / 'x'}" in done.stdout and f"refused {trained['run_dir'] / 'x'}" in done.stdout
    assert not (checkout / "x").exists()


def test_the_warm_verifier_waits_for_the_run_and_goes_with_a_crashed_one(trained: dict, tmp_path: Path) -> None:
    import psutil
    from dataclasses import replace

    from autoresearch_nb.verify import MODEL, Verification

    check = Verification(metric="val_bpb", command=MODEL, budget_s=1)
    pending = check.begin(trained["run_dir"], trained["env"], tmp_path / "v.log")
    process = psutil.Process(pending.process.pid)
    assert process.is_running() and "--wait" in process.cmdline()
    crashed = replace(trained["result"], exit_code=1)
    assert pending(crashed) is crashed  # nothing verified: the run did not end cleanly
    assert pending.process is None
    process.wait(timeout=30)  # gone, not left waiting for a word that never comes
    assert not (tmp_path / "v.verify.log").read_text().strip()  # it printed nothing, not even a summary


def test_the_best_experiments_model_survives_pruning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch_nb import Loop
    from autoresearch_nb.rundir import run_dir_for
    from autoresearch_nb.verify import artifacts_root

    # Worse by construction, whatever the machine's speed (a tiny LR was not: on a loaded machine a 2 s baseline got
    # so few steps that LR = 1e-6 beat it): logits pushed towards the last tokens by tens of nats. The baseline's
    # head starts at zero (uniform logits) and cannot get far worse in 2 s; these cannot get anywhere near it.
    head = "        logits = self.head(norm(x))\n"
    worse = [(f"worse by {k}", head, head + f"        logits = logits + {k} * torch.arange(logits.size(-1), "
              "device=logits.device) / logits.size(-1)\n", "discard") for k in (50.0, 60.0)]
    repo = integrity.make_repo(tmp_path / "repo", worse)
    for key, value in integrity.env_for(tmp_path, integrity.corpus(tmp_path)).items():
        monkeypatch.setenv(key, value)
    folder = artifacts_root(run_dir_for(repo, "b", 0))
    with Loop.open(repo, tag="b", agent="queue", time_budget_s=1, noise_repeats=1, noise_k=0,
                   keep_artifacts=1) as loop:
        loop.baseline()
        for _ in worse:
            for old in folder.iterdir():  # older than a verifier may take: only keep_artifacts and the best count
                os.utime(old, (time.time() - 7200, time.time() - 7200))
            loop.step()
        statuses = [e.status.value for e in loop.experiments]
        assert statuses == ["keep", "discard", "discard"], [(e.status, e.reason) for e in loop.experiments]
        assert loop.best.number == 0
    assert sorted(p.name for p in folder.iterdir()) == ["0", "2"]  # the best and the newest


@pytest.mark.slow
def test_under_ray_the_model_is_verified_and_a_patched_evaluation_is_tampered(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from autoresearch_nb import Loop
    from autoresearch_nb.ray_executor import start_ray

    cheat = next(c for c in integrity.CHEATS if c[3] == "tampered")
    repo = integrity.make_repo(tmp_path / "repo", [cheat])
    ray = start_ray(num_cpus=2)  # before the run's variables: a task gets them with its job
    try:
        for key, value in integrity.env_for(tmp_path, integrity.corpus(tmp_path)).items():
            monkeypatch.setenv(key, value)
        with Loop.open(repo, tag="ray", agent="queue", time_budget_s=2, noise_repeats=1, noise_k=0, workers=2,
                       executor="ray", budget_clock="cpu") as loop:  # the tiny model: CPU seconds, not work
            loop.optimize()
            got = {e.description: e for e in loop.experiments}
    finally:
        ray.shutdown()
    assert got["baseline"].verified and got["baseline"].status.value == "keep"
    patched = got[cheat[0]]
    assert patched.status.value == "tampered" and "verifier measured" in patched.reason, patched.reason
