"""The Claude agent: one experiment per call, through the ``anthropic`` SDK's Messages API.

What it does per proposal:

* sends the cached context from :mod:`.prompt` with one tool, ``propose_experiment``, and
  ``tool_choice`` auto (current models reject a forced tool choice);
* applies the edit to the current file and compiles it; when that fails, or the reply holds no tool call,
  or the file equals one already tried, it says so to the model and asks again, up to
  ``context.config.max_repairs`` times, passing every earlier content block (thinking included) back unchanged;
  a proposal still broken after that comes back with ``error`` set, and the loop records it as invalid;
* adds up the usage of every call (input, output, cache write, cache read) and prices it with
  :mod:`.pricing`.

Faults: the SDK retries a few times by itself (``max_retries``); around it, a backoff loop rides out
529 overload, 5xx, connection errors and 429 rate limits for up to ``backoff_total_s`` (15 min by default).
A 429 for an exhausted spend limit, 400, 401, 402, 403, 404 and 413 raise :class:`AgentError`, which stops
the loop with the run saved. :class:`BudgetExceeded` is raised before a call that would take the run past
``config.max_cost_usd`` (estimated from the prompt size and the last call's cost).

The API key is read by the SDK from the environment (``ANTHROPIC_API_KEY``, or ``ANTHROPIC_AUTH_TOKEN``,
or a profile); this module never reads it except to blank it out of error messages, never stores it, and
never logs it. ``ANTHROPIC_BASE_URL`` (gateways, tests) works as usual.

Settings come from :class:`~autoresearch_nb.config.Config` (file, flags, notebook parameters): ``model``
(default ``claude-sonnet-5-5``), ``effort``, ``max_tokens``, ``sdk_max_retries``, ``backoff_base_s``,
``backoff_max_s``, ``backoff_total_s``, ``prices_file``, ``max_repairs``, ``max_cost_usd``. The keyword arguments
of :class:`ClaudeAgent` override them (tests, scripts).

>>> agent = ClaudeAgent(config, repo)          # doctest: +SKIP
>>> proposal = agent.propose(context)           # doctest: +SKIP
>>> proposal.description, proposal.usage.cost_usd   # doctest: +SKIP
('Raise MATRIX_LR to 0.05: loss still falling fast at the end', 0.0213)
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import environ
from ..config import Config
from ..edits import Edit, EditError, apply_edits, check_python, content_hash, printable
from ..errors import AgentError, BudgetExceeded
from . import prompt
from .base import Context, Proposal, Usage
from .pricing import Price, cost, load_prices, price_for

log = logging.getLogger("autoresearch_nb")

DEFAULT_MODEL = "claude-sonnet-5-5"
_SPEND = re.compile(r"spend(ing)?[ _]limit|credit balance|billing|usage limit|quota", re.I)
_FATAL = {400: "refused the request as invalid", 401: "rejected the API key", 402: "requires payment",
          403: "denied permission", 404: "does not know this model or endpoint", 413: "found the request too large"}
_SECRET_VARS = environ.SECRETS


class ClaudeAgent:
    """Propose experiments with Claude. Constructed by the registry as ``ClaudeAgent(config, repo)``."""

    name = "claude"

    def __init__(self, config: Config, repo: Path | str = ".", *, model: str | None = None,
                 effort: str | None = None, max_tokens: int | None = None, max_retries: int | None = None,
                 backoff_base_s: float | None = None, backoff_max_s: float | None = None,
                 backoff_total_s: float | None = None, timeout_s: float = 600.0,
                 prices: Mapping[str, Price] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        def pick(given: Any, setting: Any) -> Any:
            return setting if given is None else given

        self.config = config
        self.repo = Path(repo)
        self.model = model or config.model or DEFAULT_MODEL
        self.effort = effort or config.effort or None
        self.max_tokens = int(pick(max_tokens, config.max_tokens))
        self.max_retries = int(pick(max_retries, config.sdk_max_retries))
        self.backoff_base_s = float(pick(backoff_base_s, config.backoff_base_s))
        self.backoff_max_s = float(pick(backoff_max_s, config.backoff_max_s))
        self.backoff_total_s = float(pick(backoff_total_s, config.backoff_total_s))
        self.timeout_s = timeout_s
        self.prices = dict(prices) if prices is not None else load_prices(config.prices_file)
        self._sleep = sleep
        self._client: Any = None
        self._last_call_cost = 0.0

    # --- the agent protocol ----------------------------------------------------------------------

    def propose(self, context: Context) -> Proposal:
        """Ask Claude for one experiment; repair it with Claude until it applies and compiles."""
        system, tools = prompt.system_blocks(context), prompt.tools()
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.user_blocks(context)}]
        tried = {content_hash(e.content): e.number for e in (*context.history, *context.in_flight) if e.content}
        usage, model, meta = Usage(), self.model, {"turns": 0, "request_ids": []}
        problem, description, candidate = "", "", None
        for turn in range(1 + max(0, int(context.config.max_repairs))):
            if not self._affordable(context, usage, system, messages):
                if turn == 0:
                    raise BudgetExceeded(self._budget_message(context, usage))
                problem = f"repairs stopped: the next call would pass max_cost_usd; last problem: {problem}"
                break
            response = self._call(system=system, tools=tools, messages=messages)
            usage = usage + self._usage(response)
            model = getattr(response, "model", None) or model
            meta["turns"] = turn + 1
            meta["stop_reason"] = getattr(response, "stop_reason", None)
            meta["request_ids"].append(getattr(response, "_request_id", None))
            blocks = list(getattr(response, "content", None) or [])
            if blocks:
                messages.append({"role": "assistant", "content": [_as_param(b) for b in blocks]})
            uses = [b for b in blocks if getattr(b, "type", None) == "tool_use"]
            ours = [b for b in uses if getattr(b, "name", None) == prompt.TOOL_NAME]
            if not ours:
                problem = self._no_tool_problem(response, uses)
                feedback: list[dict[str, Any]] = [_result(b, "Unknown tool.", True) for b in uses]
                messages.append({"role": "user", "content": [*feedback, {"type": "text", "text": problem}]})
                log.info("claude: turn %d gave no %s call; asking again", turn + 1, prompt.TOOL_NAME)
                continue
            use, others = ours[0], [b for b in uses if b is not ours[0]]
            if isinstance(use.input, Mapping) and isinstance(use.input.get("description"), str):
                description = printable(" ".join(use.input["description"].split())) or description
            try:
                description, edits, content = self._apply(use.input, context)
                earlier = tried.get(content_hash(content))
                if earlier is not None:
                    candidate = Proposal(description, edits, content)
                    raise EditError(f"this file is identical to experiment #{earlier}, which was already tried. "
                                    "Propose a different experiment.")
            except EditError as e:
                problem = str(e)
                extra = [_result(b, "Ignored: one experiment at a time.", True) for b in others]
                messages.append({"role": "user", "content": [
                    _result(use, f"{problem}\nFix it and call {prompt.TOOL_NAME} again.", True), *extra]})
                log.info("claude: turn %d proposal rejected: %s", turn + 1, _scrub(problem.splitlines()[0]))
                continue
            return Proposal(description=description, edits=edits, content=content, usage=usage, model=model,
                            meta=meta)
        if candidate is not None and "identical to experiment" in problem:
            # the loop records it as skipped; the model keeps repeating itself
            return Proposal(candidate.description, candidate.edits, candidate.content, usage=usage, model=model,
                            meta=meta)
        repairs = meta["turns"] - 1
        return Proposal(description=description or "(no usable proposal)", usage=usage, model=model, meta=meta,
                        error=_scrub(f"no usable proposal after {repairs} repair turn{'s' * (repairs != 1)}: "
                                     f"{problem}"))

    # --- one proposal ----------------------------------------------------------------------------

    def _apply(self, data: Any, context: Context) -> tuple[str, tuple[Edit, ...], str]:
        if not isinstance(data, Mapping):
            raise EditError("the tool input must be an object with 'description' and 'edits' or 'new_file'")
        description = data.get("description")
        if not isinstance(description, str) or not description.strip():
            raise EditError("'description' is missing: give a one-line hypothesis")
        description = printable(" ".join(description.split()))  # a lone surrogate from JSON cannot be stored
        new_file, raw = data.get("new_file"), data.get("edits")
        edits: tuple[Edit, ...] = ()
        if isinstance(new_file, str) and new_file.strip():
            content = new_file
        elif isinstance(raw, list) and raw:
            if not all(isinstance(x, Mapping) and isinstance(x.get("search"), str)
                       and isinstance(x.get("replace"), str) for x in raw):
                raise EditError("each edit needs a 'search' string and a 'replace' string")
            edits = tuple(Edit(x["search"], x["replace"]) for x in raw)
            content = apply_edits(context.source, edits)
        else:
            raise EditError("give 'edits' (a non-empty list of search/replace pairs) or 'new_file'")
        if content_hash(content) == content_hash(context.source):
            raise EditError("the change leaves the file as it is: propose an actual change")
        check_python(context.editable, content)
        return description, edits, content

    def _no_tool_problem(self, response: Any, uses: list[Any]) -> str:
        stop = getattr(response, "stop_reason", None)
        if stop == "max_tokens":
            return (f"Your reply was cut off at max_tokens before a complete {prompt.TOOL_NAME} call. Call it "
                    "now, with small search/replace edits rather than the whole file.")
        if uses:
            return f"Only the {prompt.TOOL_NAME} tool exists. Call it with your experiment."
        return f"You replied without calling {prompt.TOOL_NAME}. Call it now with one experiment."

    # --- the API ---------------------------------------------------------------------------------

    def warm(self) -> None:
        """Import the SDK and create the client now (the loop calls this while the baseline runs): about 3 s
        of the first proposal's time on a small machine."""
        try:
            self.client()
        except Exception:  # met again, with its message, by the first propose()
            pass

    def client(self) -> Any:
        """The SDK client, created on first use; credentials and base URL come from the environment."""
        if self._client is None:
            import anthropic

            try:
                self._client = anthropic.Anthropic(max_retries=self.max_retries, timeout=self.timeout_s)
            except Exception as e:  # the SDK's own credential errors
                raise AgentError(_scrub(f"cannot create the Anthropic client; set ANTHROPIC_API_KEY in the environment "
                                        f"that starts Jupyter or the CLI. The SDK said: {e}")) from None
        return self._client

    def _request(self, system: list, tools: list, messages: list) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(model=self.model, max_tokens=self.max_tokens, system=system, tools=tools,
                                      tool_choice={"type": "auto"}, messages=messages)
        if self.effort:
            kwargs["output_config"] = {"effort": self.effort}
        return kwargs

    def _call(self, system: list, tools: list, messages: list) -> Any:
        import anthropic

        client = self.client()
        kwargs = self._request(system, tools, messages)
        start, delay, malformed = time.monotonic(), self.backoff_base_s, 0
        while True:
            try:
                response = client.messages.create(**kwargs)
            except anthropic.APIStatusError as e:
                fatal = _fatal_message(e, self.model)
                if fatal:
                    raise AgentError(_scrub(fatal)) from None
                why, wait = f"{e.status_code} {_api_text(e)}", _retry_after(e)
            except (anthropic.APIResponseValidationError, ValueError) as e:  # ValueError: body is not JSON
                malformed += 1
                why, wait = f"a malformed response ({_scrub(str(e))[:200]})", None
            except anthropic.APIConnectionError as e:
                why, wait = f"a connection error ({_scrub(str(e))[:200]})", None
            except TypeError as e:  # no credentials at all
                if "authentication" in str(e).lower():
                    raise AgentError("no Anthropic credentials: set ANTHROPIC_API_KEY in the environment that "
                                     "starts Jupyter or the CLI (never as a notebook parameter)") from None
                raise
            else:
                if not isinstance(getattr(response, "content", None), list):
                    malformed += 1
                    why, wait = "a response that is not a Messages API message", None
                else:
                    return response
            if malformed > 2:
                raise AgentError(f"the Anthropic API (or the gateway at ANTHROPIC_BASE_URL) keeps returning "
                                 f"malformed responses: {why}")
            elapsed = time.monotonic() - start
            delay = max(delay, min(wait or 0.0, self.backoff_max_s))
            if elapsed + delay > self.backoff_total_s:
                raise AgentError(f"gave up after {elapsed:.0f} s of retries; last error: {why}")
            log.warning("claude: %s; retrying in %.3g s", why, delay)
            self._sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    def _usage(self, response: Any) -> Usage:
        u = getattr(response, "usage", None)
        if u is None:
            return Usage()
        n_in = int(getattr(u, "input_tokens", 0) or 0)
        n_out = int(getattr(u, "output_tokens", 0) or 0)
        n_write = int(getattr(u, "cache_creation_input_tokens", 0) or 0)
        n_read = int(getattr(u, "cache_read_input_tokens", 0) or 0)
        split = getattr(u, "cache_creation", None)
        w5 = int(getattr(split, "ephemeral_5m_input_tokens", 0) or 0) if split is not None else 0
        w1 = int(getattr(split, "ephemeral_1h_input_tokens", 0) or 0) if split is not None else 0
        if w5 + w1 != n_write:   # no breakdown: our long-lived breakpoints are 1 h ones
            w5, w1 = 0, n_write
        usd = cost(getattr(response, "model", None) or self.model, input_tokens=n_in, output_tokens=n_out,
                   cache_write_5m_tokens=w5, cache_write_1h_tokens=w1, cache_read_tokens=n_read,
                   prices=self.prices)
        self._last_call_cost = usd
        return Usage(n_in, n_out, n_write, n_read, usd)

    # --- the budget ------------------------------------------------------------------------------

    def estimate_call_usd(self, system: list, messages: list) -> float:
        """A rough upper estimate of the next call: the prompt written to the cache, plus some output."""
        chars = len(str(system)) + len(str(messages)) + len(str(prompt.TOOL))
        p = price_for(self.model, self.prices)
        rough = (chars / 3.0) * p.write_1h / 1e6 + min(self.max_tokens, 4000) * p.output / 1e6
        return max(rough, self._last_call_cost)

    def _affordable(self, context: Context, usage: Usage, system: list, messages: list) -> bool:
        limit = context.config.max_cost_usd
        if limit is None:
            return True
        return context.cost_so_far_usd + usage.cost_usd + self.estimate_call_usd(system, messages) <= limit

    def _budget_message(self, context: Context, usage: Usage) -> str:
        return (f"max_cost_usd is ${context.config.max_cost_usd:.2f} and the run has spent "
                f"${context.cost_so_far_usd + usage.cost_usd:.4f}; the next call to {self.model} could pass it. "
                "Raise max_cost_usd to go on.")


# --- helpers ---------------------------------------------------------------------------------------

def _as_param(block: Any) -> dict[str, Any]:
    """A response content block as a request block, unchanged (thinking signatures included)."""
    if hasattr(block, "to_dict"):
        return block.to_dict()
    return dict(block)


def _result(use: Any, text: str, is_error: bool) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": use.id, "content": text, "is_error": is_error}


def _api_text(e: Any) -> str:
    kind = getattr(e, "type", None) or ""
    message = getattr(e, "api_message", None) or ""
    if not (kind or message):
        body = getattr(e, "body", None)
        message = str(body)[:200] if body else ""
    return _scrub(f"{kind}: {message}".strip(": "))


def _fatal_message(e: Any, model: str) -> str | None:
    status = getattr(e, "status_code", None)
    code = getattr(e, "error_code", None) or ""
    text = _api_text(e)
    if status == 429:
        if "spend_limit" in code or "credit" in code or _SPEND.search(getattr(e, "api_message", None) or ""):
            return (f"the Anthropic API says the spend limit is reached (429 {text}). Raise the limit in the "
                    "Console or wait for it to reset; the run is saved and resumes where it stopped.")
        return None
    if status in _FATAL:
        hint = ""
        if status == 401:
            hint = " Set a valid ANTHROPIC_API_KEY in the environment that starts Jupyter or the CLI."
        elif status in (400, 404):
            hint = f" Check the model ({model!r}) and effort settings."
        return f"the Anthropic API {_FATAL[status]} ({status} {text}).{hint}"
    return None


def _retry_after(e: Any) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
    return None


def _scrub(text: str) -> str:
    """Blank out any credential from the environment that found its way into a message."""
    for var in _SECRET_VARS:
        secret = environ.raw(var)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text
