"""python -m pytest -q tests/test_causal.py

The verifier's causality probe on small exported models, as the verifier loads them (torch.export, then
``program.module()``): a causal model passes with nothing moved, and each way of seeing the answer is refused with
its reason: attention over the future, logits copied from the next input, rows that mix, a model with memory. The
whole loop's cases (the same edits of train.py through the real CLI) are in tests/test_verifier.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch_nb.causal import Leak, Probe, secret_generator
from autoresearch_nb.harness.evaluate import batch_rows, evaluate_bpb
from autoresearch_nb.harness.tokenizer import ByteTokenizer
from autoresearch_nb.verifier import Padded

VOCAB, DIM, T, BATCH = 256, 32, 16, 8
TEXT = b"".join(b"def function_%d(value):\n    return value * %d\n\n" % (i, i % 7) for i in range(40))


class Tiny(nn.Module):
    """One attention layer; ``mode`` picks how it cheats."""

    def __init__(self, mode: str = "honest") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mode = mode
        self.embed = nn.Embedding(VOCAB, DIM)
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.head = nn.Linear(DIM, VOCAB)
        self.register_buffer("memory", torch.zeros(BATCH, T, dtype=torch.long))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx)
        q, k, v = (t.view(idx.size(0), idx.size(1), 2, DIM // 2).transpose(1, 2)
                   for t in self.qkv(h).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.mode != "future")
        h = h + y.transpose(1, 2).reshape(idx.size(0), idx.size(1), DIM)
        if self.mode == "rows":
            h = h + h.mean(dim=0, keepdim=True)  # every row sees the batch
        logits = self.head(h)
        if self.mode == "next":
            logits = logits.scatter(2, idx.roll(-1, 1).unsqueeze(-1), 30.0)  # the next input is the target
        if self.mode == "memory":
            logits = logits + self.memory.float().unsqueeze(-1) * 1e-3
            self.memory.copy_(idx)  # the next call sees this call's tokens
        return logits


def exported(mode: str) -> tuple[Padded, nn.Module]:
    """The model as the verifier runs it: exported, reloaded as a module, padded to the export batch."""
    program = torch.export.export(Tiny(mode).eval(), (torch.zeros(BATCH, T, dtype=torch.long),), strict=False)
    module = program.module()
    return Padded(module, BATCH), module


def score(mode: str, check: bool = True) -> tuple[float, Probe]:
    model, module = exported(mode)
    probe = Probe(model, state=module)
    bpb = evaluate_bpb(model, tokenizer=ByteTokenizer(), data=TEXT, seq_len=T, batch_size=BATCH, device="cpu",
                       check=probe if check else None)
    return bpb, probe


def test_a_causal_model_passes_with_nothing_moved_and_the_same_score() -> None:
    bpb, probe = score("honest")
    plain, _ = score("honest", check=False)
    assert bpb == plain                      # the probe only looks: the scored logits are the scoring run's
    n_rows = -(-(len(TEXT) - 1) // T)
    assert probe.rows == n_rows and probe.positions > n_rows  # every scored row, many positions each
    assert probe.worst == 0.0                # bit-identical prefixes in float32 on a CPU
    assert probe.facts() == {"causal_rows": n_rows, "causal_positions": probe.positions, "causal_worst": 0.0}


@pytest.mark.parametrize("mode", ["future", "next"])
def test_a_model_that_sees_later_tokens_is_not_causal(mode: str) -> None:
    plain, _ = score(mode, check=False)
    honest, _ = score("honest", check=False)
    if mode == "next":
        assert plain < honest - 4            # the cheat pays: this is what the verifier used to keep
    with pytest.raises(Leak, match=r"^not causal: the prediction at position \d+ changes .* when tokens after it change"):
        score(mode)


def test_rows_that_mix_are_refused() -> None:
    with pytest.raises(Leak, match="^rows are mixed"):
        score("rows")


def test_a_model_that_writes_its_own_buffers_is_refused() -> None:
    with pytest.raises(Leak, match="changes its own state while it is scored .*memory"):
        score("memory")


def test_cut_points_come_from_a_secret_source() -> None:
    draws = {tuple(torch.randint(0, 1000, (4,), generator=secret_generator()).tolist()) for _ in range(5)}
    assert len(draws) == 5                   # not a fixed seed a run could know


@pytest.mark.parametrize("n_rows", [1, 2, 3, 7, 8, 9, 31, 32, 33, 100])
@pytest.mark.parametrize("batch", [1, 4, 32])
def test_evaluation_batches_never_hold_neighbouring_rows(n_rows: int, batch: int) -> None:
    batches = [b.tolist() for b in batch_rows(n_rows, batch)]
    assert sorted(r for b in batches for r in b) == list(range(n_rows))  # each row scored exactly once
    assert all(len(b) <= max(batch, 1) for b in batches)
    for b in batches:
        assert not set(b) & {r + 1 for r in b}
