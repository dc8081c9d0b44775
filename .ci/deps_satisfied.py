# python .ci/deps_satisfied.py torch==2.13.0 ; exit 0 when `.ci/run` can skip pip
"""Exit 0 when this environment already holds what `.ci/run` would pip-install, so a second CI run is quick.

Checked: ``import autoresearch_nb`` from another directory (as the tests' subprocesses do) resolves to this
checkout; every requirement in pyproject.toml (``dependencies`` and the ``dev`` extra) is installed at a version its
specifier allows; each pin given on the command line (``torch==2.13.0``) holds too. Anything missing, a version out
of range, or a check that cannot be made exits 1 with the reason, and `.ci/run` runs pip.
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def problems(pins: list[str]) -> list[str]:
    """What pip would still have to do, one line each; empty when nothing."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", []), *pins]
    found = []
    for spec in specs:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{req.name} is not installed ({spec})")
            continue
        if not req.specifier.contains(have, prereleases=True):
            found.append(f"{req.name} {have} does not satisfy {spec}")
    with tempfile.TemporaryDirectory() as elsewhere:
        where = subprocess.run([sys.executable, "-c", "import autoresearch_nb; print(autoresearch_nb.__file__)"],
                               cwd=elsewhere, capture_output=True, text=True)
    if where.returncode != 0:
        found.append("autoresearch_nb is not importable outside the checkout")
    elif Path(where.stdout.strip()).resolve().parent != ROOT / "autoresearch_nb":
        found.append(f"autoresearch_nb resolves to {where.stdout.strip()}, not this checkout ({ROOT})")
    return found


if __name__ == "__main__":
    try:
        todo = problems(sys.argv[1:])
    except Exception as exc:  # a check that cannot be made means: install
        todo = [f"cannot check ({type(exc).__name__}: {exc})"]
    for line in todo:
        print(f"ci: {line}", file=sys.stderr)
    sys.exit(1 if todo else 0)
