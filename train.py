"""
Train a small GPT on the prepared corpus for a fixed time budget, then let the harness score it (val_bpb).

This is the one file the agent edits. Everything it imports from autoresearch_nb.harness (data, tokenizer,
the val_bpb metric, the summary block) is fixed. Run by hand: `python train.py`.
"""
import math
import os

# Sleep, don't spin, while waiting at a thread barrier: with a busy neighbour on a small CPU, spinning OpenMP
# threads make training up to 5x slower. Read when torch loads, so it must come first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch_nb import harness as H

DEVICE = H.device()                 # cuda > mps > cpu
DEVICE_CLASS = H.device_class(DEVICE)
CUDA = DEVICE_CLASS == "cuda"       # the big-GPU branch (forced on a CPU by tests, see tests/test_train.py)

# ---------------------------------------------------------------------------
# Hyperparameters: edit these
# ---------------------------------------------------------------------------
DEPTH = 8 if CUDA else 4            # the one dial: transformer layers; width follows
ASPECT_RATIO = 64 if CUDA else 32   # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 64 if CUDA else 32
MLP_RATIO = 4
# Structure, from the nanoGPT speedrun line of work: each alternative is a few lines below
ACTIVATION = "relu2"                # choices: relu2, gelu, swiglu   (swiglu keeps the MLP's parameter count)
NORM = "layernorm"                  # choices: layernorm, rmsnorm
QK_NORM = True                      # normalise queries and keys before attention (keeps high LRs stable)
TIE_EMBED = False                   # the output head shares the input embedding's weights
ROPE_BASE = 10000.0                 # rotary embedding's base period
TOKENIZER = "bpe-8192" if CUDA else "bpe-2048"  # or "byte"; a BPE is trained once on the corpus, then cached
SEQ_LEN = H.seq_len(DEVICE)         # context length; evaluation uses the same
BATCH_SIZE = 64 if CUDA else 16     # sequences per forward/backward
GRAD_ACCUM = 4 if CUDA else 1       # micro-batches per optimizer step
# "muon": Muon (orthogonalized momentum) for the block matrices, AdamW for the embedding and head
OPTIMIZER = "adamw"                 # choices: adamw, muon
LR = 3e-3                           # only when OPTIMIZER = adamw: its peak learning rate for matrices
MUON_LR = 0.02                      # only when OPTIMIZER = muon: its peak learning rate for matrices
EMBED_LR = 1e-2                     # embeddings and the output head
WEIGHT_DECAY = 0.0
BETAS = (0.9, 0.95)
WARMUP_FRAC = 0.02                  # of the time budget
WARMDOWN_FRAC = 0.4                 # decay to FINAL_LR_FRAC over the last part of the budget
WARMDOWN_SHAPE = "linear"           # choices: linear, cosine
FINAL_LR_FRAC = 0.05
GRAD_CLIP = 1.0
# bf16 on GPUs; on a CPU only in the big config: at CPU widths the casts cost more than AMX saves (0.92x vs 1.06x)
AUTOCAST = H.fast_bf16(DEVICE) and (CUDA or DEVICE.type != "cpu")
# torch.compile on a 2-core CPU: 1.30x faster steps but 45 s to compile, a loss at the 120 s CPU budget
COMPILE = CUDA and DEVICE.type == "cuda"
UNTIMED_STEPS = 5 if COMPILE else 1 # warm-up/compile steps not counted in the budget
TIME_BUDGET = H.time_budget(DEVICE) # training seconds on the budget clock, H.now() (the loop sets both)
SEED = H.seed()                     # the loop sets AUTORESEARCH_SEED


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
def model_dim(depth, aspect_ratio, head_dim):
    """The width: depth * aspect_ratio rounded up to whole heads, so any DEPTH, ASPECT_RATIO, HEAD_DIM is valid."""
    return -(-depth * aspect_ratio // head_dim) * head_dim


def norm(x):
    # Parameter-free. LayerNorm by default (it also centres the mean): one fused kernel forward and backward on
    # a CPU, where F.rms_norm runs as a chain of small ops at about 3x the cost; RMSNorm is the GPU speedruns' choice.
    if NORM == "rmsnorm":
        return F.rms_norm(x, (x.size(-1),))
    return F.layer_norm(x, (x.size(-1),))


def rotary_table(seq_len, head_dim, base=10000.0):
    """Rotary embedding as unit complex numbers, one per (position, pair of channels)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return torch.view_as_real(torch.polar(torch.ones_like(angles), angles))[None, :, None, None]


def rotate(x, table):
    # One complex multiply rotates each channel pair (forward and backward are single kernels, unlike chunk+cat)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * torch.view_as_complex(table)).flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.qk = nn.Linear(dim, 2 * dim, bias=False)  # apart from v: norm and rotary get a contiguous input
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, rope):
        B, T, C = x.shape
        qk = self.qk(x).view(B, T, 2, self.n_heads, -1)
        qk = rotate(norm(qk) if QK_NORM else qk, rope)
        q, k, v = (t.transpose(1, 2) for t in (*qk.unbind(2), self.v(x).view(B, T, self.n_heads, -1)))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class ReluSquared(torch.autograd.Function):
    """relu(x)^2 with a two-op backward (autograd's own chain is five small ops, about a tenth of a CPU step)."""

    @staticmethod
    def forward(ctx, x):
        r = F.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        return grad * (r + r)


class CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy whose backward is softmax minus one-hot, in place (F.cross_entropy's backward also
    zero-fills a logits-sized tensor and re-reads it: about a twentieth of a CPU step at vocab 2048)."""

    @staticmethod
    def forward(ctx, logits, targets):
        logp = torch.log_softmax(logits, dim=-1)
        ctx.save_for_backward(logp, targets)
        return -logp.gather(1, targets[:, None]).mean()

    @staticmethod
    def backward(ctx, grad):
        logp, targets = ctx.saved_tensors
        probs = logp.exp()
        probs[torch.arange(targets.numel(), device=targets.device), targets] -= 1
        return probs.mul_(grad / targets.numel()), None


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        gated = ACTIVATION == "swiglu"
        hidden = MLP_RATIO * dim * 2 // 3 if gated else MLP_RATIO * dim  # a gated MLP: the same parameters
        self.up = nn.Linear(dim, (2 if gated else 1) * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        h = self.up(x)
        if ACTIVATION == "swiglu":
            gate, h = h.chunk(2, dim=-1)
            return self.down(F.silu(gate) * h)
        return self.down(ReluSquared.apply(h) if ACTIVATION == "relu2" else F.gelu(h))


class Block(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.attn = Attention(dim, n_heads)
        self.mlp = MLP(dim)

    def forward(self, x, rope):
        x = x + self.attn(norm(x), rope)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, depth, dim, head_dim, seq_len):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(Block(dim, dim // head_dim) for _ in range(depth))
        self.head = nn.Linear(dim, vocab_size, bias=False)
        if TIE_EMBED:
            self.head.weight = self.embed.weight
        self.register_buffer("rope", rotary_table(seq_len, head_dim, ROPE_BASE), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        for name, p in self.named_parameters():
            if p.dim() == 2:  # a tied embedding is also the head: small, so the first logits are small
                nn.init.normal_(p, std=p.size(-1) ** -0.5 if name != "embed.weight" or TIE_EMBED else 1.0)
            if name.endswith(("proj.weight", "down.weight")) or name == "head.weight":
                nn.init.zeros_(p)  # residual branches and logits start at zero

    def forward(self, idx, targets=None):
        rope = self.rope[:, :idx.size(1)]
        x = norm(self.embed(idx))
        for block in self.blocks:
            x = block(x, rope)
        logits = self.head(norm(x))
        if targets is None:
            return logits
        return CrossEntropy.apply(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    def flops_per_token(self, seq_len):
        """Matmul FLOPs of one forward+backward per token (6N for weights plus attention scores)."""
        n = sum(p.numel() for name, p in self.named_parameters() if name != "embed.weight")
        n += self.head.weight.numel() if TIE_EMBED else 0  # the head's matmul, under the embedding's name
        layers, dim = len(self.blocks), self.embed.embedding_dim
        return 6 * n + 12 * layers * dim * seq_len


# ---------------------------------------------------------------------------
# Optimizer and schedule
# ---------------------------------------------------------------------------
def orthogonalize(g, steps=5):
    """Newton-Schulz iteration towards the nearest semi-orthogonal matrix (Keller Jordan's quintic)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalized: every direction of a matrix moves alike."""

    def __init__(self, params, lr, momentum=0.95):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = orthogonalize(p.grad.lerp(buf, group["momentum"]))
                p.add_(update.type_as(p), alpha=-group["lr"] * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def make_optimizers(model):
    embed = [model.embed.weight] + ([] if TIE_EMBED else [model.head.weight])
    matrices = [p for p in model.parameters() if all(p is not e for e in embed)]
    fused = DEVICE.type in ("cuda", "cpu")  # one kernel per step on a CPU too: about 3x faster than foreach
    if OPTIMIZER == "muon":
        optimizers = [Muon(matrices, lr=MUON_LR), torch.optim.AdamW(
            [dict(params=embed, lr=EMBED_LR)], betas=BETAS, weight_decay=WEIGHT_DECAY, eps=1e-10, fused=fused)]
    else:
        groups = [dict(params=matrices, lr=LR), dict(params=embed, lr=EMBED_LR)]
        optimizers = [torch.optim.AdamW(groups, betas=BETAS, weight_decay=WEIGHT_DECAY, eps=1e-10, fused=fused)]
    for opt in optimizers:
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    return optimizers


def lr_multiplier(progress):
    if progress < WARMUP_FRAC:
        return (progress + 1e-3) / WARMUP_FRAC
    if progress < 1 - WARMDOWN_FRAC:
        return 1.0
    left = (1 - progress) / WARMDOWN_FRAC  # 1 -> 0 over the warm-down
    shape = left if WARMDOWN_SHAPE == "linear" else 0.5 * (1 - math.cos(math.pi * left))
    return FINAL_LR_FRAC + (1 - FINAL_LR_FRAC) * shape


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    elif DEVICE.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
def main():
    torch.manual_seed(SEED)
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    corpus = H.load_corpus()
    tokenizer = H.get_tokenizer(corpus, TOKENIZER)
    batches = H.Batches(corpus, tokenizer, BATCH_SIZE, SEQ_LEN, DEVICE, SEED)
    model = GPT(tokenizer.vocab_size, DEPTH, model_dim(DEPTH, ASPECT_RATIO, HEAD_DIM), HEAD_DIM, SEQ_LEN).to(DEVICE)
    optimizers = make_optimizers(model)
    step_model = torch.compile(model) if COMPILE else model
    dtype = torch.bfloat16 if AUTOCAST else None
    autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=AUTOCAST)
    flops_per_token = model.flops_per_token(SEQ_LEN)
    tokens_per_step = BATCH_SIZE * SEQ_LEN * GRAD_ACCUM
    peak = H.peak_flops(DEVICE, dtype)
    num_params = sum(p.numel() for p in model.parameters())
    print(f"device: {DEVICE} ({DEVICE_CLASS} config) | params: {num_params / 1e6:.2f}M | depth: {DEPTH} | "
          f"seq_len: {SEQ_LEN} | tokens/step: {tokens_per_step:,} | budget: {TIME_BUDGET:.0f}s "
          f"({H.budget_clock(DEVICE)} clock) | seed: {SEED}", flush=True)

    step, training_time, timed_tokens, smooth = 0, 0.0, 0, None
    while True:
        progress = min(training_time / TIME_BUDGET, 1.0)
        for opt in optimizers:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * lr_multiplier(progress)
        t0 = H.now()  # the budget clock: CPU seconds per thread on a CPU (neighbours don't count), wall on a GPU
        for _ in range(GRAD_ACCUM):
            x, y = next(batches)
            with autocast:
                loss = step_model(x, y)
            (loss / GRAD_ACCUM).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        loss_value = loss.item()  # also waits for the device
        H.work(flops_per_token * tokens_per_step)  # what the flops clock counts (a work budget); else nothing
        dt = H.now() - t0
        if H.diverged(loss_value):
            H.fail(f"loss is {loss_value} at step {step}")
        step += 1
        if step > UNTIMED_STEPS:
            training_time += dt
            timed_tokens += tokens_per_step
        smooth = loss_value if smooth is None else 0.9 * smooth + 0.1 * loss_value
        tok_per_s = tokens_per_step / dt
        H.progress(step=step, fraction=progress, loss=smooth, lr=optimizers[0].param_groups[0]["lr"],
                   tok_per_s=tok_per_s, mfu=100 * flops_per_token * tok_per_s / peak, elapsed=training_time)
        if training_time >= TIME_BUDGET:
            break

    H.export(model, dtype=dtype)  # the loop's verifier re-scores this exported model (the one constraint: it must export)
    H.report(model, corpus, tokenizer, training_seconds=training_time, num_steps=step,
             total_tokens=timed_tokens, flops_per_token=flops_per_token, depth=DEPTH, device=DEVICE, dtype=dtype)


if __name__ == "__main__":
    main()
