"""The headless CLI, ``autoresearch-nb``: run the loop unattended, print results, list runs, prepare data.

Exit codes: 0 done; 1 the loop or a command failed (message on stderr); 2 a wrong flag or setting;
130 stopped by Ctrl-C; 143 stopped by SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from .config import Config, check_tag
from .errors import AgentError, AutoresearchError, BudgetExceeded, ConfigError
from .layout import RunPaths
from .safetext import printable

_SKIP_FLAGS = {"max_experiments"}  # given explicitly below


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong flag in one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`Config` field, with the field's help (settings are described in one place)."""
    group = p.add_argument_group("settings", "each also readable from autoresearch.toml; a notebook parameter "
                                             "of the same name")
    for f in fields(Config):
        if f.name in _SKIP_FLAGS:
            continue
        names = [f"--{f.name.replace('_', '-')}"]
        if f.name.endswith("_s"):
            names.append(f"--{f.name[:-2].replace('_', '-')}")  # --time-budget as well as --time-budget-s
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        shown = "" if f.default is None or f.default == () else f" (default: {default})"
        group.add_argument(*names, dest=f.name, default=None, metavar=f.name.upper(),
                           help=f.metadata["help"] + shown)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autoresearch-nb", description="The Karpathy Loop, Jupyter-native: run it headless.")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the loop unattended (or execute a notebook with papermill)")
    run.add_argument("--tag", required=False, help="the run's name; an existing tag is resumed")
    run.add_argument("--repo", default=".", help="the research repo (default: current directory)")
    run.add_argument("--agent", default=None, help="tuner (default without a key), claude, or queue")
    run.add_argument("--max-experiments", dest="max_experiments", type=int, default=None,
                     help="stop when the run holds this many experiments (baseline included)")
    run.add_argument("--n", type=int, default=None, help="run this many more experiments in this call")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--notebook", default=None, help="execute this notebook with papermill instead")
    run.add_argument("--output", default=None, help="the executed notebook (with --notebook; default: "
                     ".autoresearch/notebooks/<tag>/<name>.out.ipynb in the repository, outside its files)")
    _add_config_flags(run)

    res = sub.add_parser("results", help="print a run's experiments (and, for a tuner run, its parameter "
                                         "importance and recent history)")
    res.add_argument("--tag", default=None, help="the run (default: every run)")
    res.add_argument("--repo", default=".")
    res.add_argument("--format", choices=("table", "tsv", "csv", "json"), default="table")

    st = sub.add_parser("status", help="list runs with their best metric")
    st.add_argument("--repo", default=".")

    ad = sub.add_parser("adopt", help="put a run's best file onto a branch of yours, as one commit with the "
                                      "evidence in its message")
    ad.add_argument("--tag", default=None, help="the run (default: the latest)")
    ad.add_argument("--branch", required=True, help="the branch to commit onto (created when missing)")
    ad.add_argument("--repo", default=".")
    ad.add_argument("--start", default=None, help="where a new branch starts (default: the run's base commit)")
    ad.add_argument("--force-current", action="store_true",
                    help="allow the branch checked out here (its editable file is updated to match)")

    gc = sub.add_parser("gc", help="free the disk finished runs no longer need (logs, run dirs, refs, worktrees "
                                   "with their model files); kept experiments and open runs stay")
    gc.add_argument("--tag", default=None, help="only this run (default: every run)")
    gc.add_argument("--repo", default=".")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.add_argument("--keep-last", dest="gc_keep_last", default=None, metavar="N",
                    help=Config.help()["gc_keep_last"])
    gc.add_argument("--keep-days", dest="gc_keep_days", default=None, metavar="DAYS",
                    help=Config.help()["gc_keep_days"])

    so = sub.add_parser("study", help="print a tuner run's parameter importance and history, write its Optuna "
                                      "study file from the store (when missing or behind) and print the "
                                      "optuna-dashboard command")
    so.add_argument("--tag", default=None, help="the run (default: the latest)")
    so.add_argument("--repo", default=".")
    so.add_argument("--rebuild", action="store_true", help="replace the file instead of adding what it lacks")

    sub.add_parser("prepare", help="prepare a training corpus (see: autoresearch-nb prepare --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        from .harness.prepare import cli as prepare_cli
        return prepare_cli(argv[1:])
    args = build_parser().parse_args(argv)
    commands = {"run": _run, "results": _results, "status": _status, "adopt": _adopt, "gc": _gc, "study": _study}
    try:
        return commands[args.cmd](args)
    except ConfigError as e:
        print(f"autoresearch-nb: error: {e}", file=sys.stderr)
        return 2
    except AutoresearchError as e:
        print(f"autoresearch-nb: {printable(str(e))}", file=sys.stderr)  # may quote a run's output
        return 1


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(Config) if getattr(args, f.name, None) is not None}


def _run(args: argparse.Namespace) -> int:
    if args.tag is not None:
        check_tag(args.tag)  # before papermill or git see it: a bad tag is a wrong flag (exit 2)
    overrides = _config_overrides(args)
    if args.notebook:
        return _run_notebook(args, overrides)
    from .console import ConsolePrinter
    from .loop import Loop

    loop = Loop.open(args.repo, tag=args.tag, agent=args.agent, **overrides)
    printer = ConsolePrinter.for_loop(loop)  # overall progress; 10 % lines when stdout is not a terminal
    loop.subscribe(printer)
    notifier = None
    if loop.config.notify:
        from .notify import Notifier

        notifier = Notifier(loop.config, loop.tag)
        loop.subscribe(notifier)
    got: dict[str, int] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        if got:  # a second signal: stop waiting for a clean end
            raise KeyboardInterrupt
        got["sig"] = signum
        print(f"\n{signal.Signals(signum).name}: stopping; the running experiment is recorded as interrupted",
              file=sys.stderr)
        loop.stop(force=True, reason=signal.Signals(signum).name, quiet=True)  # said above; no print in a handler

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        print(f"run {loop.tag}: {loop.config.command!r} on branch autoresearch/{loop.tag} "
              f"(agent {getattr(loop.agent, 'name', '?')}, budget {loop.config.time_budget_s:g}s, "
              f"{loop.config.metric} {loop.config.direction})")
        loop.optimize(n=args.n, max_seconds=args.duration)
        best = loop.best
        if best is not None:
            print(f"best: #{best.number} {loop.config.metric} {best.metric:.6f}  {printable(best.description)}  "
                  f"(branch {loop.workspace.branch}, results {loop.results_tsv})")
        duty = loop.results.attrs.get("duty_cycle")
        if duty is not None:  # the device's busy share of the loop's wall time (lookahead raises it)
            print(f"duty cycle: {100 * duty:.1f}% of the wall time running experiments")
    except (AgentError, BudgetExceeded) as e:
        print(f"autoresearch-nb: the agent stopped the run: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        loop.close()
        if notifier is not None:
            notifier.wait()  # the last notification must not die with this process
    if got:
        return 128 + got["sig"]
    return code


def _notebook_output(notebook: str, repo: str | None, tag: str | None) -> str:
    """The executed notebook's default path: under the run's ``.autoresearch/notebooks/<tag>/`` (outside the
    checkout's files: an output beside a notebook in the repository would read as the user's edit), or beside
    the notebook when the repository cannot be found (the notebook will say why)."""
    from .git import find_repo

    name = Path(notebook).name.replace(".ipynb", ".out.ipynb")
    try:
        folder = RunPaths(find_repo(repo or Path(notebook).resolve().parent), check_tag(tag)).notebooks
    except ConfigError:
        return notebook.replace(".ipynb", f".{tag or 'run'}.out.ipynb")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)


def _run_notebook(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    import papermill

    params: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
    # The kernel starts in the notebook's folder, so a relative --repo is made absolute here.
    repo = str(Path(args.repo).resolve()) if args.repo else None
    params.update({k: v for k, v in {"tag": args.tag, "repo": repo, "agent": args.agent,
                                     "max_experiments": args.max_experiments, "n": args.n}.items()
                   if v is not None})
    output = args.output or _notebook_output(args.notebook, repo, args.tag)
    try:
        # cwd: the kernel runs where the notebook lives, as it would in JupyterLab. stdout_file: the kernel's
        # printed lines (the notebook's console display) reach this terminal as they come, as `run` prints them.
        papermill.execute_notebook(args.notebook, output, parameters=params, progress_bar=False,
                                   cwd=str(Path(args.notebook).resolve().parent),
                                   stdout_file=sys.stdout, stderr_file=sys.stderr)
    except papermill.PapermillExecutionError as e:
        print(f"autoresearch-nb: the notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
              f"(output kept in {output})", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} -> {output}")
    return 0


def _results(args: argparse.Namespace) -> int:
    from .view import load_results

    df = load_results(args.repo, args.tag)
    if args.format == "tsv":
        from .git import find_repo
        from .view import store_path
        from .results import tsv_text
        from .store import Store

        store = Store(store_path(find_repo(args.repo)))
        try:
            for tag in [args.tag] if args.tag else [r["tag"] for r in store.runs()]:
                cfg = (store.get_run(tag) or {}).get("config", {})
                sys.stdout.write(tsv_text(store.experiments(tag), cfg.get("metric", "val_bpb"),
                                          cfg.get("memory_key", "peak_memory_mb")))
        finally:
            store.close()
        return 0
    cols = [c for c in ("tag", "number", "status", "metric", "holdout_gap", "delta", "wall_seconds", "cost_usd",
                        "description", "reason") if c in df.columns]
    if "holdout_gap" in cols and df["holdout_gap"].isna().all():  # no holdout scored: no empty column
        cols.remove("holdout_gap")
    text_columns = [c for c in ("description", "reason", "error") if c in df.columns]
    if args.format in ("csv", "table") and len(df):  # agent and run text: escape sequences shown, never sent
        df[text_columns] = df[text_columns].apply(lambda col: col.map(lambda v: printable(v) if isinstance(v, str)
                                                                        else v))
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
    else:
        import pandas as pd
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            print(df[cols].to_string(index=False) if len(df) else "(no experiments yet)")
        if "agent" in df.columns:
            _print_tuner_views(args.repo, sorted(set(df.loc[df["agent"] == "tuner", "tag"])), last=TUNER_LAST)
    return 0


TUNER_LAST = 20  # `results` shows the tuner's last trials; `study` all of them


def _print_tuner_views(repo: str, tags: list[str], last: int | None) -> None:
    """Parameter importance and history of each tuner run in ``tags`` (text, after the table)."""
    from .study import tuner_text
    from .view import RunView

    for tag in tags:
        with RunView.open(repo, tag) as view:
            text = tuner_text(view, last=last)
        if text:
            print(f"\nrun {tag}: {text}")


def _status(args: argparse.Namespace) -> int:
    from .git import find_repo
    from .view import store_path
    from .records import Status
    from .results import run_stats
    from .store import Store

    root = find_repo(args.repo)
    path = store_path(root)
    if not path.exists():
        print(f"no runs in {root} yet")
        return 0
    store = Store(path)
    try:
        runs = store.runs()
        if not runs:
            print(f"no runs in {root} yet")
        for run in runs:
            cfg = run["config"]
            exps = store.experiments(run["tag"])
            kept = [e for e in exps if e.status == Status.KEEP and e.metric is not None]
            maximize = cfg.get("direction") == "maximize"
            best = (max if maximize else min)(kept, key=lambda e: e.metric) if kept else None
            best_txt = f"{best.metric:.6f} (#{best.number})" if best else "-"
            running = sum(e.status == Status.RUNNING for e in exps)
            stats = run_stats(exps, run["state"])
            duty = "" if stats["duty_cycle"] is None else f"  duty {100 * stats['duty_cycle']:.1f}%"
            if stats["reapplied"]:
                duty += f"  conflicts {stats['conflicts']}/{stats['reapplied']}"
            print(f"{run['tag']:<20} {len(exps):>4} experiments  {len(kept):>3} kept  "
                  f"best {cfg.get('metric', 'metric')} {best_txt}{duty}" + ("  [running]" if running else ""))
    finally:
        store.close()
    return 0


def _adopt(args: argparse.Namespace) -> int:
    from .adopt import adopt

    if args.tag is not None:
        check_tag(args.tag)
    done = adopt(args.repo, args.tag, args.branch, force_current=args.force_current, start=args.start)
    if not done.changed:
        print(f"{args.branch} already has experiment #{done.best}'s file at {done.sha[:12]}; nothing to do")
        return 0
    was = f"was {done.previous[:12]}" if done.previous else "new branch"
    print(f"{args.branch} -> {done.sha[:12]} ({was}): experiment #{done.best}\n")
    print(done.message, end="")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from .housekeeping import collect, gc_config, human

    if args.tag is not None:
        check_tag(args.tag)
    config = gc_config(args.repo, gc_keep_last=args.gc_keep_last, gc_keep_days=args.gc_keep_days)
    report = collect(args.repo, args.tag, dry_run=args.dry_run, config=config)
    if args.dry_run:
        for item in report.freed:
            print(f"would remove {item.kind[:-1] if item.kind.endswith('s') else item.kind}: "
                  f"{item.name.split(' ')[0]} ({human(item.bytes)})")
    print(report)
    return 1 if report.warnings else 0


def _study(args: argparse.Namespace) -> int:
    from .study import is_tuner_run, storage_url, tuner_text, write_study
    from .view import RunView

    if args.tag is not None:
        check_tag(args.tag)
    with RunView.open(args.repo, args.tag) as view:
        if not is_tuner_run(view):
            print(f"autoresearch-nb: run {view.tag!r} has no tuner experiments; no study to write", file=sys.stderr)
            return 1
        path = write_study(view, rebuild=args.rebuild)
        text = tuner_text(view)
    print(f"{text}\n\nwrote {path}\nview it with: optuna-dashboard {storage_url(path)}   "
          "(pip install 'autoresearch_nb[dashboard]')")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

