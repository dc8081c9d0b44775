"""The loop's own scorer of a run's exported model: ``python -I -m autoresearch_nb.verifier --artifact-dir D``.

Started by the loop (:mod:`autoresearch_nb.verify`, ``verify = "model"``) after a run, from the installed
package, in isolated mode (``-I``: no ``PYTHONPATH``, no current directory on ``sys.path``), with its working
directory outside the run directory. It

1. reads the run's ``facts.json`` (written by ``H.export``: the harness's training clock, the tokenizer);
2. loads ``model.pt2`` **weights-only**: ``torch.load`` is forced to ``weights_only=True`` and a request for
   anything else (``torch.export.load``'s pickle fallback) raises, so loading never runs code from the run;
3. checks every op of the graph against an allow-list (the ``aten`` and ``prims`` namespaces, without the
   ops that touch files; higher-order ops only for autocast and grad mode);
4. computes val_bpb with the pristine harness (``evaluate_bpb`` on the fixed evaluation bytes, the harness's
   sequence length and precision), and prints it as the ``---`` summary with the facts and versions it used;
   with ``--pins`` (:func:`autoresearch_nb.provenance.pin`) the corpus files are checked against the session's
   hashes before and after, and the tokenizer is built from the bytes checked against its pin (one read);
5. computes ``holdout_bpb`` the same way on the holdout split, which the training process is never given
   (:func:`score_holdout`; kept in a folder beside the corpus that the sandbox does not let a run read);
6. while scoring both, establishes that the model does not see what it predicts (:mod:`autoresearch_nb.causal`):
   each scored batch runs again with the tokens after a secret cut replaced, and the predictions up to the cut
   must not move; rows must not mix; the model must not write to its own state.

A model that is missing, cannot load, uses a refused op or the wrong shapes, or is not causal gives
``verdict: unverified`` and a
``reason``; training longer than the budget (the harness's clock) gives ``verdict: over_budget``. Exit 0 only
with a number. Not covered: the training process itself runs the agent's code, so it could patch the harness's
clock or write a model trained on anything it can read; see the README's "Verification" section.
"""
from __future__ import annotations

import argparse
import json
import math
import operator
import os
import sys
import time
from pathlib import Path
from typing import Any

REFUSED_ATEN = {"from_file", "_print", "save", "load", "_debug_has_internal_overlap"}
HIGHER_ORDER = {"wrap_with_autocast", "wrap_with_set_grad_enabled"}
ALLOWED_NAMESPACES = {"aten", "prims"}
VERSION = "autoresearch_nb.verifier/2"  # in every row (provenance): bump when what it measures changes
# /2: the causality probe (causal.py) and interleaved evaluation batches; /1 scored models that read the answer
# Seconds past the budget the harness's clock may show, per device class, before the budget tolerance applies:
# the untimed warm-up (compilation on CUDA) and the first batch, which a run cannot skip.
UNTIMED_ALLOWANCE_S = {"cpu": 10.0, "mps": 20.0, "cuda": 60.0}


class Refused(Exception):
    """The artifact cannot be verified: the reason goes to the row."""


class OverBudget(Exception):
    """The harness's clock shows training past the budget."""


def strict_torch_load() -> None:
    """Make ``torch.load`` weights-only in this process, with no way back (no pickle fallback)."""
    import torch

    original = torch.load
    if getattr(original, "strict", False):  # already in force
        return

    def load(*args: Any, weights_only: Any = True, **kwargs: Any) -> Any:
        if weights_only is not True:
            raise Refused("the artifact needs a full (pickle) load; only weights-only loading is allowed")
        return original(*args, weights_only=True, **kwargs)

    load.strict = True  # type: ignore[attr-defined]
    torch.load = load  # type: ignore[assignment]


def op_name(target: Any) -> str:
    if target is operator.getitem:
        return "getitem"
    return str(getattr(target, "__name__", None) if not hasattr(target, "_schema") else target)


def check_ops(program: Any) -> int:
    """Raise :class:`Refused` for an op outside the allow-list; return how many calls were checked."""
    count = 0
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if graph is not None else ():
            if node.op != "call_function":
                continue
            count += 1
            target = node.target
            if target is operator.getitem:
                continue
            if hasattr(target, "_schema"):  # an OpOverload: "aten.linear.default"
                namespace, name = str(target).split(".")[:2]
                if namespace in ALLOWED_NAMESPACES and name not in REFUSED_ATEN:
                    continue
                raise Refused(f"the exported graph calls {target}, which is not allowed")
            if getattr(target, "__name__", None) in HIGHER_ORDER:
                continue
            raise Refused(f"the exported graph calls {op_name(target)!r}, which is not allowed")
    return count


def read_facts(folder: Path, not_before: float | None) -> dict[str, Any]:
    """The run's facts.json, checked: present, fresh, an object, and with the model beside it."""
    path, model = folder / "facts.json", folder / "model.pt2"
    if not path.is_file():
        raise Refused(f"no exported model in {folder}: train.py must call H.export(model) after training")
    if not_before is not None and path.stat().st_mtime < not_before:
        # a leftover of an earlier run with the same number (a repeat, a resume) must not stand in for this one
        raise Refused("the exported model is older than this run (a leftover): H.export(model) was not called")
    try:
        facts = json.loads(path.read_text()[:1_000_000])
    except (OSError, ValueError) as e:
        raise Refused(f"facts.json is unreadable: {e}") from None
    if not isinstance(facts, dict):
        raise Refused("facts.json is not an object")
    if facts.get("export_error"):
        raise Refused(f"the model could not be exported ({str(facts['export_error'])[:600]}): the forward pass "
                      "must be torch.export-able (token ids -> logits, no data-dependent Python control flow)")
    if not model.is_file() or (not_before is not None and model.stat().st_mtime < not_before):
        raise Refused(f"no fresh exported model in {folder}: train.py must call H.export(model) after training")
    return facts


class Padded:
    """The exported forward pass on any number of rows: pads a short batch to the exported one."""

    def __init__(self, forward: Any, batch: int) -> None:
        self.forward, self.batch = forward, batch

    def __call__(self, x: Any) -> Any:
        import torch

        n = x.size(0)
        if n > self.batch:
            return torch.cat([self(x[i:i + self.batch]) for i in range(0, n, self.batch)])
        if n < self.batch:
            x = torch.cat([x, x.new_zeros(self.batch - n, x.size(1))])
        return self.forward(x)[:n]


def verify(folder: Path, budget_s: float | None, tolerance: float, not_before: float | None,
           pins: str | None = None, clock: str | None = None) -> dict[str, Any]:
    """The summary of one artifact (see the module docstring). With ``pins`` the tokenizer file is read once,
    checked against its pin and built from those same bytes. ``clock``: the session's budget clock (wall or
    cpu); the harness must have counted on it."""
    import torch

    from . import harness as H
    from .causal import Leak, Probe
    from .harness import constants as C
    from .harness.export import EXPORT_BATCH

    facts = read_facts(folder, not_before)
    device = H.device()
    cls = H.device_class(device)
    seconds = facts.get("training_seconds")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise Refused("the harness counted no training: draw the training data through H.Batches")
    counted = facts.get("clock", "wall")  # facts before the budget clock existed counted wall time
    if clock is not None and counted != clock:
        raise Refused(f"the harness counted training on the {counted!r} clock, the session's budget clock is "
                      f"{clock!r} (AUTORESEARCH_BUDGET_CLOCK was changed inside the run)")
    if budget_s is not None:
        limit = budget_s * (1 + tolerance) + UNTIMED_ALLOWANCE_S[cls]
        if seconds > limit:
            raise OverBudget(f"trained {seconds:.1f} s by the harness's clock ({counted}), over the budget of {budget_s:g} s "
                             f"(limit {limit:.1f} s with the tolerance and warm-up allowance)")
    seq_len = C.SEQ_LEN[cls]
    if facts.get("seq_len") != seq_len or facts.get("batch") != EXPORT_BATCH:
        raise Refused(f"the model was exported for rows of {facts.get('seq_len')} tokens, the harness's are "
                      f"{seq_len}: call H.export(model) without changing its shape")
    tokenizer_name = facts.get("tokenizer")
    if not isinstance(tokenizer_name, str):
        raise Refused("no harness tokenizer was used (H.Batches records it)")
    strict_torch_load()
    started = time.perf_counter()
    try:
        program = torch.export.load(str(folder / "model.pt2"))
    except Refused:
        raise
    except Exception as e:  # a broken or hostile file: whatever it raises is the reason
        raise Refused(f"the exported model does not load: {type(e).__name__}: {e}") from None
    ops = check_ops(program)
    corpus = H.load_corpus(auto_prepare=False)  # never prepares: the corpus must not change under a session
    tokenizer = pinned_tokenizer(pins, corpus, tokenizer_name)
    forward = program.module()
    # The precision the run evaluated with (its facts); only fp32 or bf16 autocast, whatever the facts claim.
    dtype = torch.bfloat16 if facts.get("autocast") == "bfloat16" else None
    model = Padded(forward, EXPORT_BATCH)
    probe = Probe(model, dtype, state=forward)  # every scored batch: causal, rows apart, no memory (causal.py)
    try:
        bpb = H.evaluate_bpb(model, corpus, tokenizer, seq_len=seq_len, batch_size=EXPORT_BATCH, device=device,
                             dtype=dtype, check=probe)
    except Leak as e:
        raise Refused(str(e)) from None
    except Exception as e:
        raise Refused(f"the exported model does not run on the evaluation rows: {type(e).__name__}: {e}") from None
    if not math.isfinite(bpb):
        raise Refused(f"the exported model scores val_bpb = {bpb}")
    holdout = score_holdout(model, corpus, tokenizer, seq_len, device, dtype, probe)
    return {"val_bpb": round(bpb, 6), **holdout, "training_seconds": round(float(seconds), 1),
            "verify_seconds": round(time.perf_counter() - started, 2), "graph_ops": ops, **probe.facts(),
            "corpus": corpus.fingerprint, "tokenizer": tokenizer_name, "eval_bytes": len(H.eval_bytes(corpus, device)),
            "torch": torch.__version__, "verifier": VERSION}


def tokenizer_key(corpus: Any, name: Any) -> str | None:
    """The pin key (path relative to the corpus folder) of the BPE tokenizer file ``name``; None for bytes."""
    from .harness.tokenizer import tokenizer_path

    if not isinstance(name, str) or name == "byte":
        return None
    return tokenizer_path(corpus, name).relative_to(corpus.path).as_posix()


def pinned_tokenizer(pins: str | None, corpus: Any, name: str) -> Any:
    """The tokenizer ``name``; with ``pins``, built from the bytes that were checked against the pin (one read:
    a run writing the cache between the check and the build changes nothing)."""
    from . import harness as H
    from .harness.tokenizer import BPETokenizer
    from .provenance import pinned_bytes

    key = tokenizer_key(corpus, name)
    if not pins or key is None:
        return H.get_tokenizer(corpus, name)
    try:
        return BPETokenizer.from_bytes(pinned_bytes(json.loads(pins), corpus.path, key), name)
    except ValueError as e:
        raise Refused(str(e)) from None


def check_pins(pins: str | None, folder: Path) -> None:
    """Refuse (:class:`Refused`) when a file this verification reads differs from the hash the loop pinned at
    the start of its session (a run may have written to the shared tokenizer cache), or the run's tokenizer
    was not prepared by a trusted process then. ``pins``: :func:`autoresearch_nb.provenance.pin`'s JSON; None
    checks nothing."""
    if not pins:
        return
    from . import harness as H
    from .provenance import pin_problem

    try:
        corpus = H.load_corpus(auto_prepare=False)
    except H.CorpusError as e:
        raise Refused(str(e)) from None
    try:
        name = json.loads((folder / "facts.json").read_text()[:1_000_000]).get("tokenizer")
    except (OSError, ValueError, AttributeError):
        name = None  # verify() gives the reason for an unreadable facts.json
    problem = pin_problem(json.loads(pins), corpus.path, tokenizer_key(corpus, name))
    if problem:
        raise Refused(problem)


# ---- the holdout: bytes the training process is never given (issue 13) ----

def holdout_eval_bytes(corpus: Any, device: Any) -> bytes:
    """The holdout bytes scored: ``HOLDOUT_EVAL_BYTES[class]`` in evenly spaced slices (as val's), read from
    the holdout folder beside the corpus (checked against the corpus's sha256); empty without a holdout."""
    from .harness import constants as C
    from .harness.corpus import holdout_bytes
    from .harness.evaluate import spaced_slices
    from .harness.runtime import device_class

    split = holdout_bytes(corpus)
    return spaced_slices(split, C.HOLDOUT_EVAL_BYTES[device_class(device)]) if len(split) else b""


def score_holdout(model: Any, corpus: Any, tokenizer: Any, seq_len: int, device: Any, dtype: Any,
                  probe: Any = None) -> dict[str, Any]:
    """``holdout_bpb`` (and how many bytes it covers) of the exported model, at the precision and sequence
    length of val; ``{"holdout": why}`` when the corpus has no usable holdout (then no overfit check).
    ``probe``: the causality probe, which checks the holdout's rows too."""
    from . import harness as H
    from .causal import Leak
    from .harness.corpus import CorpusError
    from .harness.export import EXPORT_BATCH

    try:
        data = holdout_eval_bytes(corpus, device)
    except (CorpusError, OSError) as e:
        return {"holdout": f"unreadable ({' '.join(str(e).split())[:300]})"}
    if len(data) < 2:
        return {"holdout": "none (prepare the corpus again: autoresearch-nb prepare)"}
    try:
        bpb = H.evaluate_bpb(model, tokenizer=tokenizer, data=data, seq_len=seq_len, batch_size=EXPORT_BATCH,
                             device=device, dtype=dtype, check=probe)
    except Leak as e:
        raise Refused(str(e)) from None
    except Exception as e:
        raise Refused(f"the exported model does not run on the holdout rows: {type(e).__name__}: {e}") from None
    if not math.isfinite(bpb):
        raise Refused(f"the exported model scores holdout_bpb = {bpb}")
    return {"holdout_bpb": round(bpb, 6), "holdout_bytes": len(data)}


# Modules torch.export.load imports on first use (its deserializer pulls in dynamo): imported while the run
# trains (``--wait``), they cost nothing after it. Private paths, so each is only tried.
WARM_IMPORTS = ("torch.export", "torch._export.serde.serialize", "torch.export.pt2_archive._package")
GO = "go"


def warm() -> None:
    """Pay the verifier's fixed costs before the run ends: torch and the export loader imported, the harness
    and the corpus read, the CPU kernels touched once. Nothing here reads the run's artifact."""
    import importlib

    import torch
    import torch.nn.functional as F

    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # another torch version: the load imports what it needs later
            pass
    from . import harness as H
    from .harness import export as _export  # noqa: F401  (EXPORT_BATCH, read by verify)

    try:
        H.load_corpus(auto_prepare=False)
    except Exception:  # verify() says what is wrong with the corpus, in the row
        pass
    with torch.no_grad():  # first-call setup of the matmul and loss kernels
        x = torch.randn(8, 64)
        F.cross_entropy(x @ x.T, torch.zeros(8, dtype=torch.long))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -I -m autoresearch_nb.verifier")
    parser.add_argument("--artifact-dir", required=True, type=Path)
    parser.add_argument("--budget", type=float, default=None, help="the run's training budget, in seconds")
    parser.add_argument("--budget-tolerance", type=float, default=0.1)
    parser.add_argument("--clock", choices=("wall", "cpu", "flops"), default=None, help="the session's budget clock")
    parser.add_argument("--not-before", type=float, default=None, help="an artifact older than this is stale")
    parser.add_argument("--pins", default=None, help="the hashes of the corpus and tokenizer files (JSON)")
    parser.add_argument("--wait", action="store_true",
                        help=f"started with the run: warm up, then verify when standard input says {GO!r} "
                             "(anything else, or its end: exit quietly, the run did not end cleanly)")
    args = parser.parse_args(argv)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"  # belt and braces with strict_torch_load
    # Sleep, don't spin, at OpenMP barriers (as train.py does): spinning threads beside a busy neighbour make
    # the evaluation several times slower on a small CPU. Read when torch loads, so set before.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    strict_torch_load()
    if args.wait:
        warm()
        if sys.stdin.readline().strip() != GO:
            return 0
    try:
        check_pins(args.pins, args.artifact_dir)
        summary = verify(args.artifact_dir, args.budget, args.budget_tolerance, args.not_before, args.pins,
                         args.clock)
        check_pins(args.pins, args.artifact_dir)  # again: a parallel worker's run may have written meanwhile
    except (Refused, OverBudget) as e:
        verdict = "over_budget" if isinstance(e, OverBudget) else "unverified"
        print(f"---\nverdict: {verdict}\nreason: {' '.join(str(e).split())}", flush=True)
        return _exit(1, args.wait)
    print("---")
    for key, value in summary.items():
        print(f"{key}: {value}")
    sys.stdout.flush()
    return _exit(0, args.wait)


def _exit(code: int, now: bool) -> int:
    """``code``; with ``now`` (the loop's verifier) the process ends here: tearing torch down at interpreter
    exit takes seconds on a small CPU, while the loop waits, and there is nothing left to flush."""
    if now:
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
