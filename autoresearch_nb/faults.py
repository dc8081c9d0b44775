"""A test-only hook: pause the loop at a named point so a fault campaign can kill it exactly there.

``AUTORESEARCH_FAULT_PAUSE=saved-running,commit`` makes :func:`pause` print ``fault-pause <point>`` to stderr
and sleep ``AUTORESEARCH_FAULT_PAUSE_S`` seconds (default 5) at those points. Unset (always, outside
``benchmarks/fault_campaign.py``), it costs one dictionary lookup.

Points: ``saved-running`` (the row says running, no run started yet), ``started`` (the run has started, its
pid is not saved: the pid gap), ``commit`` (the experiment's commit exists, no
row yet), ``decide`` (before the decided row is written), ``results-tsv`` (results.tsv's temporary written, not
yet renamed).
"""
from __future__ import annotations

import sys
import time
from . import environ

VARIABLE = "AUTORESEARCH_FAULT_PAUSE"


def pause(point: str) -> None:
    """Stop here for a while when the campaign asked for ``point``; otherwise nothing."""
    wanted = environ.get(VARIABLE)
    if not wanted or point not in wanted.split(","):
        return
    print(f"fault-pause {point}", file=sys.stderr, flush=True)
    time.sleep(float(environ.get(VARIABLE + "_S", "5") or 5))


__all__ = ["pause", "VARIABLE"]
