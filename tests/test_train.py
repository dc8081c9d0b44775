# Run: python -m pytest tests/test_train.py -q
"""train.py end to end, on a tiny corpus and a tiny model written into a copy of the file: a few seconds each."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch_nb.harness import SUMMARY_KEYS, parse_summary
from autoresearch_nb.harness.corpus import prepare_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = {"DEPTH": "1", "ASPECT_RATIO": "32", "HEAD_DIM": "16", "BATCH_SIZE": "4", "GRAD_ACCUM": "2",
        "TOKENIZER": '"byte"'}


def tiny_copy(tmp_path, **changes) -> Path:
    """train.py with some CAPS hyperparameters replaced (the way the agent edits it)."""
    text = (ROOT / "train.py").read_text()
    for name, value in {**TINY, **changes}.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, count=1, flags=re.M)
        assert n == 1, name
    path = tmp_path / "train.py"
    path.write_text(text)
    return path


def tiny_corpus(src: Path, out: Path):
    """A small folder corpus of twelve Python files, prepared into ``out``."""
    src.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        (src / f"mod{i}.py").write_text(f"def function_{i}(value):\n    return value + {i}\n\n" * 60)
    return prepare_folder(src, out)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("corpus"))


def run(script: Path, data, device_class="cpu", budget="2", **env) -> subprocess.CompletedProcess:
    child = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    child.update(AUTORESEARCH_TIME_BUDGET=budget, AUTORESEARCH_DATA=str(data.path), AUTORESEARCH_DEVICE="cpu",
                 AUTORESEARCH_DEVICE_CLASS=device_class, AUTORESEARCH_PEAK_FLOPS="1e11",
                 AUTORESEARCH_CACHE=str(script.parent / "cache"), PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, script.name], cwd=script.parent, env=child, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.parametrize("device_class,optimizer", [("cpu", "adamw"), ("cuda", "adamw"), ("cuda", "muon")])
def test_summary_holds_every_key(tmp_path, data, device_class, optimizer):
    tokenizer = '"bpe-300"' if device_class == "cuda" else '"byte"'
    script = tiny_copy(tmp_path, TOKENIZER=tokenizer, OPTIMIZER=f'"{optimizer}"')
    result = run(script, data, device_class, AUTORESEARCH_SEED="3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 00001 (" in result.stdout and "elapsed: " in result.stdout
    summary = parse_summary(result.stdout)
    assert set(SUMMARY_KEYS) <= set(summary)
    assert 0 < summary["val_bpb"] < 8.5 and summary["num_steps"] >= 2 and summary["depth"] == 1
    assert summary["training_seconds"] >= 2 and summary["seed"] == 3
    assert summary["corpus"] == data.fingerprint
    assert f"({device_class} config)" in summary["device"]


def test_forced_nan_prints_FAIL_and_exits_nonzero(tmp_path, data):
    script = tiny_copy(tmp_path)
    script.write_text(script.read_text().replace("loss_value = loss.item()", "loss_value = loss.item() * float('nan')"))
    result = run(script, data)
    assert result.returncode != 0
    assert "FAIL" in result.stdout.splitlines() and "---" not in result.stdout


def test_exploding_learning_rate_prints_FAIL(tmp_path, data):
    result = run(tiny_copy(tmp_path, LR="1e6", EMBED_LR="1e6", GRAD_CLIP="1e9", WARMUP_FRAC="0.0"), data,
                 budget="20")
    assert result.returncode != 0 and "FAIL" in result.stdout.splitlines()


def load_train_module(monkeypatch, path: Path = ROOT / "train.py"):
    """train.py imported as a module (its model code, no training), on the CPU."""
    import importlib.util
    monkeypatch.setenv("AUTORESEARCH_DEVICE", "cpu")
    spec = importlib.util.spec_from_file_location("train_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shape_the_tuner_may_try_builds_and_trains(monkeypatch):
    import itertools

    import torch

    from autoresearch_nb.agents.space import discover

    train = load_train_module(monkeypatch)
    space = {p.name: p for p in discover((ROOT / "train.py").read_text())}

    def values(name):
        p = space[name]
        return [p.decode(x) for x in range(int(p.low), int(p.high) + 1)]

    grid = list(itertools.product(values("DEPTH"), values("ASPECT_RATIO"), values("HEAD_DIM")))
    uneven = [g for g in grid if (g[0] * g[1]) % g[2]]
    assert uneven, "the grid should hold widths that are not whole heads (the old crash)"
    for depth, aspect, head_dim in grid:
        dim = train.model_dim(depth, aspect, head_dim)
        assert dim % head_dim == 0 and depth * aspect <= dim < depth * aspect + head_dim
    mlp = space["MLP_RATIO"]
    for (depth, aspect, head_dim), mlp_ratio in zip(uneven, itertools.cycle([int(mlp.low), int(mlp.high)])):
        monkeypatch.setattr(train, "MLP_RATIO", mlp_ratio)
        model = train.GPT(64, depth, train.model_dim(depth, aspect, head_dim), head_dim, 16)
        idx = torch.randint(0, 64, (2, 16))
        loss = model(idx, idx)
        loss.backward()
        assert torch.isfinite(loss), (depth, aspect, head_dim)


STRUCTURE = ("ACTIVATION", "NORM", "QK_NORM", "TIE_EMBED", "WARMDOWN_SHAPE", "OPTIMIZER")


def pairwise(dials: dict[str, list]) -> list[dict]:
    """A small set of configurations in which every pair of values of every two dials appears (greedy)."""
    import itertools
    names = list(dials)
    todo = {(a, x, b, y) for a, b in itertools.combinations(names, 2) for x in dials[a] for y in dials[b]}
    configs = []
    while todo:
        best, gain = None, -1
        for combo in itertools.product(*dials.values()):
            c = dict(zip(names, combo))
            g = sum((a, c[a], b, c[b]) in todo for a, b in itertools.combinations(names, 2))
            if g > gain:
                best, gain = c, g
        configs.append(best)
        todo -= {(a, best[a], b, best[b]) for a, b in itertools.combinations(names, 2)}
    return configs


def test_every_structural_alternative_builds_and_trains_pairwise(monkeypatch):
    """Each `# choices:` of the model's structure (and the optimizer) with every other, pairwise: the model
    builds, two optimizer steps lower a finite loss's gradient path without error, and its flops count the
    head (tied or not). A tiny model: the whole covering set runs in seconds."""
    import torch

    from autoresearch_nb.agents.space import _literal, discover

    train = load_train_module(monkeypatch)
    space = {p.name: p for p in discover((ROOT / "train.py").read_text())}
    dials = {name: [_literal(c) for c in space[name].choices] for name in STRUCTURE}
    assert dials["ACTIVATION"] == ["relu2", "gelu", "swiglu"] and set(dials["TIE_EMBED"]) == {True, False}
    configs = pairwise(dials)
    assert len(configs) < 12  # far fewer than the 96 of the full product
    for config in configs:
        for name, value in config.items():
            monkeypatch.setattr(train, name, value)
        torch.manual_seed(0)
        model = train.GPT(64, 2, 32, 16, 16)
        optimizers = train.make_optimizers(model)
        idx = torch.randint(0, 64, (4, 16))
        losses = []
        for _ in range(2):
            loss = model(idx, idx.roll(-1, 1))
            loss.backward()
            for opt in optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        assert all(torch.isfinite(torch.tensor(losses))), config
        assert (model.head.weight is model.embed.weight) == config["TIE_EMBED"]
        params = sum(p.numel() for p in model.parameters())
        assert model.flops_per_token(16) >= 6 * (params - model.embed.weight.numel()), config
        assert 0 < train.lr_multiplier(0.9) < 1 and abs(train.lr_multiplier(1.0) - train.FINAL_LR_FRAC) < 1e-9


def test_norm_rotary_and_relu_squared_match_their_textbook_forms(monkeypatch):
    import torch
    import torch.nn.functional as F

    train = load_train_module(monkeypatch)
    x = torch.randn(3, 5, 2, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(train.ReluSquared.apply, (x[0, 0].detach().clone().requires_grad_(),))
    relu2 = train.ReluSquared.apply(x)
    assert torch.allclose(relu2, F.relu(x).square())
    table = train.rotary_table(5, 8).double()
    rotated = train.rotate(x, table)
    # a rotation keeps each channel pair's length, and position 0 is not rotated at all
    pairs = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pairs(rotated), pairs(x)) and torch.allclose(rotated[:, 0], x[:, 0])
    assert not torch.allclose(rotated[:, 1], x[:, 1])


def test_cross_entropy_matches_torch_in_value_and_gradient(monkeypatch):
    import torch
    import torch.nn.functional as F

    train = load_train_module(monkeypatch)
    logits = torch.randn(12, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (12,))
    assert torch.autograd.gradcheck(lambda x: train.CrossEntropy.apply(x, targets), (logits,))
    ours, = torch.autograd.grad(3 * train.CrossEntropy.apply(logits, targets), logits)
    theirs, = torch.autograd.grad(3 * F.cross_entropy(logits, targets), logits)
    assert torch.allclose(train.CrossEntropy.apply(logits, targets), F.cross_entropy(logits, targets))
    assert torch.allclose(ours, theirs)


def test_muon_orthogonalizes_and_lowers_the_loss(monkeypatch):
    import torch

    train = load_train_module(monkeypatch)
    g = torch.randn(64, 16)
    singular = torch.linalg.svdvals(train.orthogonalize(g))
    assert singular.min() > 0.5 and singular.max() < 1.5  # about 1 in every direction
    torch.manual_seed(0)
    model = train.GPT(64, 1, 32, 16, 16)
    monkeypatch.setattr(train, "OPTIMIZER", "muon")
    optimizers = train.make_optimizers(model)
    assert isinstance(optimizers[0], train.Muon)
    idx = torch.randint(0, 64, (4, 16))
    losses = []
    for _ in range(30):
        loss = model(idx, idx)
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gpu_check_dry_runs_every_stage_on_the_cpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(PYTHONPATH=str(ROOT), AUTORESEARCH_CACHE=str(tmp_path / "cache"))
    # two experiments (the baseline and one proposal) show the loop stage; the script's default is three
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry", "--budget", "1",
                             "--experiments", "2", "--work", str(tmp_path / "work")], capture_output=True, text=True,
                            env=env, timeout=600)
    import json
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["stage"] for line in lines] == ["env", "prepare", "train", "loop", "done"], result.stderr[-2000:]
    assert result.returncode == 0 and lines[-1]["ok"]
    train, loop = lines[2], lines[3]
    assert 0 < train["val_bpb"] < 10 and train["tokens_per_s"] > 0 and train["eval_bytes"] > 0
    assert loop["experiments"] == 2 and len(loop["statuses"]) == 2


@pytest.mark.slow
def test_train_throughput_tokenizes_before_timing_and_alternates_the_pairs(tmp_path):
    """The benchmark's fairness: the train split is tokenized in the parent before any timed process starts
    (the first timed process once paid for it alone: a 0.86x pair), and each pair's order alternates so
    neither side always runs first."""
    corpus = tiny_corpus(tmp_path / "src", tmp_path / "corpus")  # its own: no other test has tokenized it
    script = tiny_copy(tmp_path, TOKENIZER='"bpe-300"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(AUTORESEARCH_DATA=str(corpus.path), AUTORESEARCH_DEVICE="cpu", AUTORESEARCH_PEAK_FLOPS="1e11",
               AUTORESEARCH_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-u", str(ROOT / "benchmarks" / "train_throughput.py"), "--script",
                             str(script), "--budget", "1", "--rounds", "2", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run_line = re.compile(r"^\s*(train\.py|reference):")
    lines, tokenized_at_header = [], None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("device: ") and tokenized_at_header is None:
                # printed after the parent's preparation, before the first timed process starts
                tokenized_at_header = bool(list(corpus.path.glob("tokens/bpe-300-*/train/manifest.json")))
        assert proc.wait(300) == 0, proc.stderr.read()[-2000:]
    finally:
        proc.kill()
    assert tokenized_at_header, "\n".join(lines)
    runs = [run_line.match(line).group(1) for line in lines if run_line.match(line)]
    assert runs == ["train.py", "reference", "reference", "train.py"]
    ratio = next(line for line in lines if line.startswith("ratio tokens/s"))
    assert float(re.search(r"(\d+\.\d+)x over process wall time", ratio).group(1)) > 0
