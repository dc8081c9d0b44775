"""What a Claude call costs: a price table in USD per million tokens, which a user can override.

The built-in table holds list prices as published when this was written; prices change, so check them
and override when needed: point the ``prices_file`` setting at a JSON or TOML file such as::

    [claude-sonnet-5-5]
    input = 2.0
    output = 10.0
    cache_write_1h = 4.0   # optional; defaults: 5 min write 1.25x input, 1 h write 2x, read 0.1x
    cache_read = 0.1

Model names match exactly, else by the longest known prefix (``claude-sonnet-5-5-20260901`` uses
``claude-sonnet-5-5``); an unknown model is priced at the ``"*"`` entry (deliberately not cheap, so a
``max_cost_usd`` limit errs on the safe side) with a warning.

>>> round(cost("claude-sonnet-5-5", input_tokens=1_000_000, output_tokens=100_000), 2)
3.0
"""
from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

log = logging.getLogger("autoresearch_nb")

SETTING = "prices_file"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None

    @property
    def write_5m(self) -> float:
        return self.cache_write_5m if self.cache_write_5m is not None else 1.25 * self.input

    @property
    def write_1h(self) -> float:
        return self.cache_write_1h if self.cache_write_1h is not None else 2.0 * self.input

    @property
    def read(self) -> float:
        return self.cache_read if self.cache_read is not None else 0.1 * self.input


# List prices, USD per million tokens: input, output, 5-min cache write, 1-h cache write, cache read. Last
# checked 2026-11-27 against several price trackers that cite Anthropic's pricing page (the page itself is not
# reachable from the build machine); the reduced cache reads of the 5.5 models date from October 2026.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-fable-5-1": Price(10.0, 50.0, 12.5, 20.0, 0.25),
    "claude-mythos-5-1": Price(10.0, 50.0, 12.5, 20.0, 0.25),
    "claude-fable-5": Price(10.0, 50.0, 12.5, 20.0, 1.0),
    "claude-mythos-5": Price(10.0, 50.0, 12.5, 20.0, 1.0),
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 8.0, 0.2),
    "claude-opus-5": Price(5.0, 25.0, 6.25, 10.0, 0.5),
    "claude-opus-4": Price(5.0, 25.0, 6.25, 10.0, 0.5),              # 4.5 to 4.8
    "claude-opus-4-1": Price(15.0, 75.0, 18.75, 30.0, 1.5),
    "claude-opus-4-2025": Price(15.0, 75.0, 18.75, 30.0, 1.5),       # Opus 4 (claude-opus-4-20250514)
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.5, 4.0, 0.1),
    "claude-sonnet-5": Price(2.0, 10.0, 2.5, 4.0, 0.2),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 6.0, 0.3),
    # Haiku 5.5 costs more for prompts over 100k tokens; the loop's prompts stay far below that.
    "claude-haiku-5-5": Price(0.1, 0.5, 0.125, 0.2, 0.01),
    "claude-haiku-4": Price(1.0, 5.0, 1.25, 2.0, 0.1),
    "*": Price(5.0, 25.0),
}

_warned: set[str] = set()


def load_prices(path: str | Path | None = None) -> dict[str, Price]:
    """The built-in table, updated from ``path`` (the ``prices_file`` setting) when given."""
    prices = dict(DEFAULT_PRICES)
    if not path:
        return prices
    p = Path(path).expanduser()
    try:
        text = p.read_text()
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the price table {p} ({SETTING}): {e}") from None
    return {**prices, **parse_prices(data, str(p))}


def parse_prices(data: Mapping[str, Any], where: str = "price table") -> dict[str, Price]:
    """``{"model": {"input": 2, "output": 10, ...}}`` -> ``{"model": Price(...)}``."""
    out = {}
    for model, row in data.items():
        if not isinstance(row, Mapping) or "input" not in row or "output" not in row:
            raise ConfigError(f"{where}: {model!r} needs at least 'input' and 'output' (USD per million tokens)")
        unknown = set(row) - {"input", "output", "cache_write_5m", "cache_write_1h", "cache_read"}
        if unknown:
            raise ConfigError(f"{where}: {model!r} has unknown keys {sorted(unknown)}")
        try:
            out[str(model)] = Price(**{k: float(v) for k, v in row.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {model!r} has a price that is not a number") from None
    return out


def price_for(model: str, prices: Mapping[str, Price] | None = None) -> Price:
    prices = prices if prices is not None else load_prices()
    if model in prices:
        return prices[model]
    matches = [k for k in prices if k != "*" and model.startswith(k)]
    if matches:
        return prices[max(matches, key=len)]
    if model not in _warned:
        _warned.add(model)
        log.warning("no price known for model %r; costing it at the '*' entry. Point %s at a price table "
                    "to fix the cost column and the max_cost_usd limit.", model, SETTING)
    return prices.get("*", DEFAULT_PRICES["*"])


def cost(model: str, *, input_tokens: int = 0, output_tokens: int = 0, cache_write_5m_tokens: int = 0,
         cache_write_1h_tokens: int = 0, cache_read_tokens: int = 0,
         prices: Mapping[str, Price] | None = None) -> float:
    """Cost in USD of one call's usage."""
    p = price_for(model, prices)
    return (input_tokens * p.input + output_tokens * p.output + cache_write_5m_tokens * p.write_5m
            + cache_write_1h_tokens * p.write_1h + cache_read_tokens * p.read) / 1e6
