"""Adopt a run's result: put the best kept version of the editable file onto a branch the user names.

Only git plumbing is used (``commit-tree``, ``update-ref``): no checkout, no index of the user's, no working
tree is touched. The new commit is the target branch's tip with the editable file replaced by its content at
the run's best commit, so the branch's other files stay as they are; its message lists the kept experiments
and their evidence (metric, runs, noise σ, effect in σ). A branch that is checked out is refused unless the
caller says so (``force_current``); a branch checked out in another worktree is always refused.

>>> adopted = adopt(".", "nov27", "tuned")     # doctest: +SKIP
>>> adopted.sha, adopted.best                   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, GitError, StateError
from .plumbing import checked_out, commit_file, git, ok
from .records import Experiment, Status, is_baseline
from .view import RunView

_ZERO = "0" * 40


@dataclass(frozen=True)
class Adopted:
    """What :func:`adopt` did: the branch, the commit it now points at, the one before (None: a new branch)."""

    branch: str
    sha: str
    previous: str | None
    best: int            # the experiment whose file was adopted
    message: str
    changed: bool        # False: the branch already had that file, nothing was committed


def _fmt(x: float | None, spec: str = ".6f") -> str:
    return "-" if x is None else format(x, spec)


def evidence(exp: Experiment, metric: str) -> str:
    """One line of evidence for a kept experiment: its metric, the runs behind it, σ and the effect."""
    parts = [f"{metric} {_fmt(exp.metric)}"]
    if len(exp.runs) > 1:
        parts.append(f"{len(exp.runs)} runs ({', '.join(_fmt(r) for r in exp.runs)})")
    else:
        parts.append("1 run")
    if exp.noise_sigma is not None:
        parts.append(f"noise σ {_fmt(exp.noise_sigma, '.4g')}")
    if exp.effect_sigma is not None:
        parts.append(f"effect {_fmt(exp.effect_sigma, '.2f')}σ")
    return ", ".join(parts)


def summary_message(view: RunView, best: Experiment) -> str:
    """The commit message: a subject with the gain, then each kept change with its evidence."""
    cfg = view.config
    exps = view.experiments
    base = next((e for e in exps if is_baseline(e) and e.metric is not None), None)
    kept = [e for e in exps if e.status == Status.KEEP and not is_baseline(e) and e.number <= best.number]
    gain = ""
    if base is not None and best.metric is not None:
        gain = f": {cfg.metric} {base.metric:.6f} -> {best.metric:.6f} ({best.metric - base.metric:+.6f})"
    lines = [f"Adopt autoresearch run {view.tag}{gain}", ""]
    lines.append(f"{len(kept)} kept change(s) of {sum(e.status.ran for e in exps)} experiments run "
                 f"({cfg.metric}, {cfg.direction}; editable {cfg.editable}):")
    for e in kept:
        lines.append(f"- #{e.number} {' '.join(e.description.split())[:100]}")
        lines.append(f"  {evidence(e, cfg.metric)}")
        if e.reason:
            lines.append(f"  why kept: {' '.join(e.reason.split())[:200]}")
    if base is not None:
        lines.append(f"Baseline #{base.number}: {evidence(base, cfg.metric)}")
    lines += ["", f"From experiment #{best.number}, commit {best.sha} (refs/autoresearch/{view.tag}/{best.number})."]
    return "\n".join(lines) + "\n"


def adopt(repo: str | Path, tag: str | None, branch: str, *, force_current: bool = False,
          start: str | None = None) -> Adopted:
    """Bring run ``tag``'s best file onto ``branch`` as one commit; returns what was done.

    ``branch`` is created when missing, from ``start`` (default: the commit the run started from). A branch
    checked out in the user's checkout needs ``force_current=True``; then the editable file must be
    unmodified there, and after the branch moves that one file (and its index entry) is updated to match, so
    the checkout stays clean. Raises :class:`StateError` when the run has nothing kept beyond its baseline.
    """
    with RunView.open(repo, tag) as view:
        best = view.best
        if best is None or is_baseline(best) or best.sha is None:
            raise StateError(f"run {view.tag!r} has kept nothing beyond its baseline yet; nothing to adopt")
        root = view.repo_root
        editable = view.config.editable
        base = next((e for e in view.experiments if is_baseline(e)), None)
        message = summary_message(view, best)
        tag = view.tag
    if not ok(root, "check-ref-format", "--branch", branch) or branch.startswith("-"):
        raise ConfigError(f"{branch!r} is not a valid branch name")
    if branch == f"autoresearch/{tag}" or branch.startswith("autoresearch/"):
        raise ConfigError(f"{branch!r} is a run's own branch; choose a branch of yours")
    ref = f"refs/heads/{branch}"
    if not ok(root, "cat-file", "-e", f"{best.sha}^{{commit}}"):
        raise GitError(f"the best commit {best.sha} of run {tag!r} is missing from the repository")
    blob = git(root, "rev-parse", f"{best.sha}:{editable}")
    mode = _mode(root, best.sha, editable) or "100644"
    previous = git(root, "rev-parse", "--verify", "-q", ref, check=False) or None
    holders = checked_out(root)
    current = Path(git(root, "rev-parse", "--show-toplevel")).resolve()
    holder = holders.get(ref)
    if holder is not None and holder.resolve() != current:
        raise StateError(f"branch {branch!r} is checked out in the worktree {holder}; adopt onto another branch")
    if holder is not None and not force_current:
        raise StateError(f"branch {branch!r} is checked out in {current}; adopting would change the files under "
                         "you. Choose another branch (it is created if missing), or pass --force-current")
    if holder is not None and git(root, "status", "--porcelain", "--", editable):
        raise StateError(f"{editable} has uncommitted changes in {current}; commit or stash them first")
    if previous is None:
        parent = start or (base.parent_sha or base.sha if base is not None else None) or best.parent_sha
        parent = git(root, "rev-parse", "--verify", f"{parent}^{{commit}}")
    else:
        parent = previous
    if _blob(root, parent, editable) == blob and previous is not None:
        return Adopted(branch, previous, previous, best.number, message, changed=False)
    sha = commit_file(root, parent, editable, blob, mode, message)
    git(root, "update-ref", "-m", f"autoresearch_nb adopt {tag}", ref, sha, previous or _ZERO)
    if holder is not None:
        # The user asked for their checked-out branch: the one file (known clean above) follows the branch.
        git(root, "checkout", sha, "--", editable)
    return Adopted(branch, sha, previous, best.number, message, changed=True)


def _blob(root: Path, commit: str, path: str) -> str | None:
    return git(root, "rev-parse", "-q", "--verify", f"{commit}:{path}", check=False) or None


def _mode(root: Path, commit: str, path: str) -> str | None:
    line = git(root, "ls-tree", commit, "--", path)
    return line.split()[0] if line else None


__all__ = ["adopt", "Adopted", "summary_message", "evidence"]
