# python -m pytest tests/test_agents_claude.py -q
"""The Claude agent through the real anthropic SDK, against a local server speaking the Messages API."""
from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path

import pytest

from autoresearch_nb.agents.base import Context
from autoresearch_nb.agents.claude import ClaudeAgent
from autoresearch_nb.agents.pricing import cost
from autoresearch_nb.config import Config, looks_secret
from autoresearch_nb.errors import AgentError, BudgetExceeded
from autoresearch_nb.records import Experiment, Status

sys.path.insert(0, str(Path(__file__).parent))  # fake_anthropic.py sits beside this file, whatever the rootdir
from fake_anthropic import (FakeAnthropic, Reply, error, message, overloaded, text,  # noqa: E402
                            thinking, tool_block, tool_use, usage)

KEY = "sk-ant-" + "test-KEY-0123456789abcdef"  # a fake, split so no scanner mistakes it for a real key
SOURCE = """\
# Hyperparameters
MATRIX_LR = 0.04
DEPTH = 8


def main():
    print("---")
    print("val_bpb: 1.0")


main()
"""
PROGRAM = "# program\nMake val_bpb go down. Prefer simple changes.\n"
GOOD = {"description": "Lower MATRIX_LR to 0.03", "edits": [{"search": "MATRIX_LR = 0.04", "replace": "MATRIX_LR = 0.03"}]}


# Fast retries, as settings (the environment holds only the key).
FAST = {"sdk_max_retries": 0, "backoff_base_s": 0.001, "backoff_max_s": 0.002, "backoff_total_s": 5.0}


@pytest.fixture
def env(monkeypatch):
    """A fake key in the environment (as a user would set it), and nothing else of ours."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    return monkeypatch


def serve(env, script):
    api = FakeAnthropic(script).__enter__()
    env.setenv("ANTHROPIC_BASE_URL", api.url)
    return api


@pytest.fixture
def fake(env):
    servers = []

    def start(script):
        api = serve(env, script)
        servers.append(api)
        return api

    yield start
    for api in servers:
        api.__exit__(None, None, None)


def context(history=(), config=None, **kw) -> Context:
    config = config or Config(max_repairs=2)
    return Context(program=PROGRAM, editable="train.py", source=SOURCE, history=tuple(history), config=config, **kw)


def agent(config=None, **kw) -> ClaudeAgent:
    return ClaudeAgent(config or Config(max_repairs=2, **FAST), Path("."), **kw)


def exp(n, status, metric=None, description="", content=None, error=None) -> Experiment:
    return Experiment(number=n, tag="t", status=status, metric=metric, description=description, content=content,
                      error=error)


# --- proposals -------------------------------------------------------------------------------------

def test_a_good_tool_use_becomes_a_proposal_that_applies(fake):
    api = fake([tool_use(GOOD, before=[thinking("the LR looks high")])])
    p = agent().propose(context())
    assert p.error is None
    assert p.description == "Lower MATRIX_LR to 0.03"
    assert "MATRIX_LR = 0.03" in p.content and "MATRIX_LR = 0.04" not in p.content
    assert p.edits[0].search == "MATRIX_LR = 0.04"
    assert p.model == "claude-sonnet-5-5" and p.usage.input_tokens == 100 and p.usage.output_tokens == 50
    assert len(api.requests) == 1
    body = api.requests[0]["json"]
    assert api.requests[0]["path"] == "/v1/messages"
    assert body["model"] == "claude-sonnet-5-5"
    assert body["tool_choice"] == {"type": "auto"}
    assert [t["name"] for t in body["tools"]] == ["propose_experiment"]
    assert "thinking" not in body  # models don't allow it disabled; leave the default


def test_the_request_is_laid_out_for_caching_with_program_file_history_and_log_tail(fake):
    api = fake([tool_use(GOOD)])
    history = [exp(0, Status.KEEP, 1.10, "baseline", SOURCE)] + [
        exp(i, Status.DISCARD, 1.10 + i / 100, f"idea {i}") for i in range(1, 13)]
    history.append(exp(13, Status.CRASH, None, "double the depth", error="CUDA out of memory"))
    ctx = context(history, best=history[0], last_log_tail="Traceback...\nRuntimeError: CUDA out of memory")
    agent().propose(ctx)
    body = api.requests[0]["json"]
    system = body["system"]
    assert system[-1]["text"] == PROGRAM.strip() and system[-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    blocks = body["messages"][0]["content"]
    assert SOURCE.strip() in blocks[0]["text"] and blocks[0]["cache_control"]["ttl"] == "1h"
    everything = "\n".join(b["text"] for b in blocks)
    for i in range(1, 13):
        assert f"#{i} discard val_bpb {1.10 + i / 100:.6g} (+{i / 100:.6g} vs best 1.1): idea {i}" in everything
    assert "#13 crash [CUDA out of memory]: double the depth" in everything
    assert "RuntimeError: CUDA out of memory" in blocks[-1]["text"]
    # stable prefix first: the log tail and the request come last, and at most 4 breakpoints in all
    marks = [b for b in system + blocks if "cache_control" in b]
    assert len(marks) <= 4
    assert blocks[-1]["cache_control"]["ttl"] == "5m"
    assert all(m["cache_control"]["ttl"] == "1h" for m in marks[:-1])


def test_a_text_only_reply_is_asked_again(fake):
    api = fake([message([thinking("hmm"), text("I think we should lower the LR.")]), tool_use(GOOD)])
    p = agent().propose(context())
    assert p.error is None and "MATRIX_LR = 0.03" in p.content
    second = api.requests[1]["json"]["messages"]
    assert second[1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig-abc123"},
        {"type": "text", "text": "I think we should lower the LR."}]}
    assert "without calling propose_experiment" in json.dumps(second[2])
    assert p.usage.input_tokens == 200 and p.meta["turns"] == 2


def test_text_only_replies_until_the_repair_budget_is_spent_give_an_error(fake):
    api = fake([message([text("no")]) for _ in range(3)])
    p = agent().propose(context())
    assert p.error and "2 repair turns" in p.error and "without calling" in p.error
    assert p.content is None and len(api.requests) == 3


def test_an_edit_that_does_not_apply_goes_back_to_the_model_with_thinking_unchanged(fake):
    bad = {"description": "x", "edits": [{"search": "MATRIX_LR = 0.05", "replace": "MATRIX_LR = 0.06"}]}
    first = tool_use(bad, before=[thinking("signed thought", "sig-XYZ")])
    api = fake([first, tool_use(GOOD)])
    p = agent().propose(context())
    assert p.error is None and "MATRIX_LR = 0.03" in p.content
    msgs = api.requests[1]["json"]["messages"]
    assert msgs[1]["content"][0] == {"type": "thinking", "thinking": "signed thought", "signature": "sig-XYZ"}
    assert msgs[1]["content"][1]["type"] == "tool_use"
    result = msgs[2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == first["content"][1]["id"]
    assert "not found" in result["content"]


def test_a_syntax_error_is_repaired_then_recorded_as_failed(fake):
    broken = {"description": "oops", "edits": [{"search": "DEPTH = 8", "replace": "DEPTH = (8"}]}
    api = fake([tool_use(broken) for _ in range(3)])
    p = agent().propose(context())
    assert p.error and "does not compile" in p.error
    assert p.description == "oops" and p.content is None
    assert len(api.requests) == 3 and p.usage.output_tokens == 150


def test_a_whole_file_proposal_works(fake):
    fake([tool_use({"description": "deeper", "new_file": SOURCE.replace("DEPTH = 8", "DEPTH = 10")})])
    p = agent().propose(context())
    assert p.error is None and "DEPTH = 10" in p.content and p.edits == ()


def test_a_duplicate_goes_back_to_the_model_and_a_new_idea_is_taken(fake):
    tried = SOURCE.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.03")
    other = {"description": "deeper", "edits": [{"search": "DEPTH = 8", "replace": "DEPTH = 10"}]}
    api = fake([tool_use(GOOD), tool_use(other)])
    p = agent().propose(context([exp(0, Status.KEEP, 1.0, "base", SOURCE), exp(1, Status.DISCARD, 1.1, "lr", tried)]))
    assert "DEPTH = 10" in p.content
    assert "identical to experiment #1" in json.dumps(api.requests[1]["json"]["messages"][2])


def test_a_duplicate_the_model_insists_on_is_returned_for_the_loop_to_skip(fake):
    tried = SOURCE.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.03")
    fake([tool_use(GOOD) for _ in range(3)])
    p = agent().propose(context([exp(1, Status.DISCARD, 1.1, "lr", tried)]))
    assert p.error is None and p.content == tried


def test_extra_tool_calls_each_get_a_result(fake):
    two = message([tool_block({"description": "x", "edits": [{"search": "nope", "replace": "y"}]}),
                   tool_block(GOOD)])
    api = fake([two, tool_use(GOOD)])
    agent().propose(context())
    results = api.requests[1]["json"]["messages"][2]["content"]
    assert len(results) == 2 and all(r["type"] == "tool_result" for r in results)


def test_a_reply_cut_off_at_max_tokens_asks_for_smaller_edits(fake):
    api = fake([message([thinking("long...")], stop_reason="max_tokens"), tool_use(GOOD)])
    p = agent().propose(context())
    assert p.error is None
    assert "max_tokens" in json.dumps(api.requests[1]["json"]["messages"][-1])


# --- faults ----------------------------------------------------------------------------------------

def test_529_twice_then_success_rides_out_the_overload(fake):
    slept = []
    api = fake([overloaded(), overloaded(), tool_use(GOOD)])
    p = agent(sleep=slept.append).propose(context())
    assert p.error is None and len(api.requests) == 3 and len(slept) == 2
    assert slept[1] >= slept[0]


def test_the_sdk_own_retries_also_absorb_a_529(fake):
    slept = []
    api = fake([overloaded(), overloaded(), tool_use(GOOD)])
    p = agent(Config(**{**FAST, "sdk_max_retries": 2}), sleep=slept.append).propose(context())
    assert p.error is None and len(api.requests) == 3 and slept == []


def test_a_rate_limit_429_is_retried(fake):
    api = fake([error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
                      headers={"retry-after": "0"}), tool_use(GOOD)])
    assert agent(sleep=lambda s: None).propose(context()).error is None
    assert len(api.requests) == 2


def test_overload_that_lasts_past_the_backoff_limit_stops_with_a_clear_message(fake):
    fake([overloaded() for _ in range(50)])
    with pytest.raises(AgentError, match="gave up after .* 529"):
        agent(sleep=lambda s: None, backoff_total_s=0.01, backoff_base_s=0.004, backoff_max_s=0.004).propose(context())


@pytest.mark.parametrize("reply", [
    error(429, "rate_limit_error", "You have reached your specified API usage limits.",
          code="enforced_spend_limit_reached", headers={"x-should-retry": "false"}),
    error(429, "rate_limit_error", "Your spend limit for this workspace is exhausted."),
])
def test_a_spend_limit_429_stops_the_loop(fake, reply):
    api = fake([reply, tool_use(GOOD)])
    with pytest.raises(AgentError, match="spend limit"):
        agent().propose(context())
    assert len(api.requests) == 1


@pytest.mark.parametrize("reply, words", [
    (error(401, "authentication_error", "invalid x-api-key"), "rejected the API key"),
    (error(400, "invalid_request_error", "model: unknown effort 'huge'"), "invalid"),
    (error(404, "not_found_error", "model: claude-nope"), "does not know"),
])
def test_401_400_404_stop_the_loop_with_a_clear_message(fake, reply, words):
    api = fake([reply])
    with pytest.raises(AgentError, match=words) as info:
        agent().propose(context())
    assert reply.body["error"]["message"] in str(info.value)
    assert len(api.requests) == 1


def test_a_malformed_body_is_retried(fake):
    api = fake([Reply(200, b"{not json"), Reply(200, {"unexpected": True}), tool_use(GOOD)])
    assert agent().propose(context()).error is None
    assert len(api.requests) == 3


def test_malformed_bodies_that_persist_stop_the_loop(fake):
    fake([Reply(200, b"<html>gateway</html>") for _ in range(5)])
    with pytest.raises(AgentError, match="malformed"):
        agent().propose(context())


def test_no_credentials_at_all_is_a_clear_agent_error(fake, env, tmp_path):
    fake([tool_use(GOOD)])
    env.delenv("ANTHROPIC_API_KEY")
    env.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))  # no profile on disk either
    with pytest.raises(AgentError, match="ANTHROPIC_API_KEY"):
        agent().propose(context())


# --- cost ------------------------------------------------------------------------------------------

def test_usage_and_cost_add_up_over_repair_turns_against_the_price_table(fake):
    u1 = usage(input_tokens=1000, output_tokens=500, cache_write=2000, cache_read=0, write_1h=1500)
    u2 = usage(input_tokens=300, output_tokens=200, cache_write=0, cache_read=3000)
    bad = {"description": "x", "edits": [{"search": "absent", "replace": "y"}]}
    fake([tool_use(bad, use=u1), tool_use(GOOD, use=u2)])
    p = agent().propose(context())
    assert (p.usage.input_tokens, p.usage.output_tokens) == (1300, 700)
    assert (p.usage.cache_write_tokens, p.usage.cache_read_tokens) == (2000, 3000)
    # claude-sonnet-5-5: $2 in, $10 out, $2.50 5-min write, $4 1-h write, $0.10 read (per million)
    expected = (1300 * 2 + 700 * 10 + 500 * 2.5 + 1500 * 4 + 3000 * 0.1) / 1e6
    assert p.usage.cost_usd == pytest.approx(expected)
    assert cost("claude-sonnet-5-5", input_tokens=1300, output_tokens=700, cache_write_5m_tokens=500,
                cache_write_1h_tokens=1500, cache_read_tokens=3000) == pytest.approx(expected)


def test_a_user_price_table_overrides_the_built_in_one(fake, env, tmp_path):
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"claude-sonnet-5-5": {"input": 1000, "output": 0}}))
    fake([tool_use(GOOD, use=usage(input_tokens=1000, output_tokens=10, cache_write=100))])
    p = agent(Config(prices_file=str(table), **FAST)).propose(context())
    # cache writes without a TTL breakdown are priced as 1-h writes: 2x input by default
    assert p.usage.cost_usd == pytest.approx((1000 * 1000 + 100 * 2000) / 1e6)


def test_max_cost_stops_before_the_call_that_would_pass_it(fake):
    api = fake([tool_use(GOOD)])
    ctx = context(config=Config(max_cost_usd=1.0), cost_so_far_usd=0.999)
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        agent().propose(ctx)
    assert api.requests == []
    p = agent().propose(context(config=Config(max_cost_usd=1.0), cost_so_far_usd=0.5))
    assert p.error is None and len(api.requests) == 1


def test_reaching_max_cost_during_repairs_returns_a_failed_proposal_with_its_cost(fake):
    bad = {"description": "x", "edits": [{"search": "absent", "replace": "y"}]}
    api = fake([tool_use(bad, use=usage(input_tokens=100_000, output_tokens=1000)), tool_use(GOOD)])
    p = agent().propose(context(config=Config(max_cost_usd=0.3, max_repairs=2)))
    assert len(api.requests) == 1
    assert p.error and "max_cost_usd" in p.error and p.usage.cost_usd == pytest.approx(0.21)


def test_the_registry_builds_it_from_config_and_repo(env, tmp_path):
    from autoresearch_nb.agents import make_agent

    a = make_agent("claude", Config(model="claude-haiku-5-5"), tmp_path)
    assert isinstance(a, ClaudeAgent) and a.name == "claude" and a.model == "claude-haiku-5-5"


def test_model_effort_and_max_tokens_are_settings(fake, env):
    api = fake([tool_use(GOOD), tool_use(GOOD)])
    agent(Config(model="claude-opus-5-5", effort="low")).propose(context())
    # The environment is for secrets only: the old variables no longer change anything.
    env.setenv("AUTORESEARCH_MODEL", "claude-opus-5-5")
    env.setenv("AUTORESEARCH_MAX_TOKENS", "99")
    agent(Config(model="claude-haiku-5-5", max_tokens=2048)).propose(context())
    first, second = api.requests[0]["json"], api.requests[1]["json"]
    assert first["model"] == "claude-opus-5-5" and first["output_config"] == {"effort": "low"}
    assert first["max_tokens"] == 16000
    assert second["model"] == "claude-haiku-5-5" and second["max_tokens"] == 2048
    assert "output_config" not in second


# --- the key ---------------------------------------------------------------------------------------

def test_the_key_never_appears_in_proposals_errors_or_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and httpx's included
    api = fake([overloaded(), tool_use(GOOD), error(401, "authentication_error", f"invalid x-api-key {KEY}")])
    a = agent()
    p = a.propose(context())
    with pytest.raises(AgentError) as info:
        a.propose(context())
    assert api.requests[0]["headers"].get("x-api-key") == KEY or KEY in api.requests[0]["headers"].get(
        "Authorization", "")  # the SDK did send it, from the environment
    assert KEY not in caplog.text
    assert KEY not in repr(p) and KEY not in json.dumps(p.meta, default=str)
    assert KEY not in pickle.dumps(p).decode("latin-1")
    assert KEY not in str(info.value) and "[redacted]" in str(info.value)
    assert looks_secret("ANTHROPIC_API_KEY")  # so the runner strips it from the child's environment


def test_a_lone_surrogate_in_the_description_is_stored_escaped(fake):
    # JSON can spell "\ud800"; no store row can hold it, so it is kept as the text \ud800.
    fake([tool_use({**GOOD, "description": "Lower MATRIX_LR \ud800"})])
    p = agent().propose(context())
    assert p.error is None and p.description == "Lower MATRIX_LR \\ud800"
    p.description.encode("utf-8")


# --- how runs went: curves, noise, near-misses, a bounded prompt -----------------------------------------------

def test_a_curve_summary_reads_the_loss_at_each_quarter_of_the_budget():
    from autoresearch_nb.records import CurvePoint, CurveSummary

    full = [CurvePoint(i, 3.0 * i, 4.0 - i / 10, {"progress": i / 20}) for i in range(1, 21)]
    summary = CurveSummary.of(full, budget_s=60)
    assert summary.losses == pytest.approx((3.5, 3.0, 2.5, 2.0)) and summary.reached == 1.0
    # no progress in the lines: elapsed seconds over the budget; a run stopped at 40 % has no later quarters
    stopped = [CurvePoint(i, 6.0 * i, 5.0 - i / 10) for i in range(1, 5)]
    cut = CurveSummary.of(stopped, budget_s=60)
    assert cut.losses[0] == pytest.approx(4.8) and cut.losses[2:] == (None, None) and cut.reached == pytest.approx(0.4)
    assert CurveSummary.of([CurvePoint(1, 1.0)], budget_s=60) is None  # no loss anywhere: nothing to say


def _prompt_text(ctx) -> str:
    from autoresearch_nb.agents import prompt

    return "\n".join(b["text"] for b in prompt.system_blocks(ctx) + prompt.user_blocks(ctx)) + json.dumps(prompt.TOOL)


def test_the_prompt_says_how_each_run_went_the_noise_and_the_near_misses(fake):
    from autoresearch_nb.records import CurveSummary

    history = [
        Experiment(0, "t", Status.KEEP, "baseline", metric=1.10, summary={"total_tokens_M": 12.0,
                   "training_seconds": 300.0, "peak_memory_mb": 2048.0}, agent="baseline", runs=[1.1, 1.1]),
        Experiment(1, "t", Status.DISCARD, "warmup 0.1 -> 0.2", metric=1.098, effect_sigma=0.7, threshold=0.004),
        Experiment(2, "t", Status.PRUNED, "LR x4", reason="stopped: its curve stayed 5.1σ above the best's"),
        Experiment(3, "t", Status.DISCARD, "DEPTH 8 -> 9", metric=1.12, threshold=0.0042)]
    curves = {0: CurveSummary((3.2, 2.9, 2.7, 2.6), 1.0), 2: CurveSummary((3.9, None, None, None), 0.31)}
    ctx = context(history, best=history[0], curves=curves, noise={"sigma": 0.0021, "mad_sigma": 0.0019, "n": 3})
    text = _prompt_text(ctx)
    assert "#0 keep val_bpb 1.1 (baseline) (over 2 runs): baseline {loss@25/50/75/100%: 3.2/2.9/2.7/2.6; " \
           "40k tok/s; peak 2 GB}" in text
    assert "#2 pruned [stopped: its curve stayed 5.1σ above the best's]: LR x4 {loss@25/50/75/100%: 3.9/-/-/-; " \
           "stopped early at 31% of the budget}" in text
    assert "Noise: runs of one unchanged file spread by σ = 0.0021 val_bpb, robust σ 0.0019 over 3 runs." in text
    assert "The last decision (#3) needed a gain over 0.0042 val_bpb" in text
    misses = text.split("Near-misses")[1].split("\n\n")[0]
    assert "#1 val_bpb 1.098 (-0.002 vs best 1.1, 0.7σ): warmup 0.1 -> 0.2" in misses and "#3" not in misses
    api = fake([tool_use(GOOD)])  # and it is what the agent sends
    agent().propose(ctx)
    sent = "\n".join(b["text"] for b in api.requests[0]["json"]["messages"][0]["content"])
    assert "stopped early at 31% of the budget" in sent and "Near-misses" in sent


def long_history(n: int) -> tuple[list[Experiment], dict]:
    """``n`` experiments as a long campaign leaves them: every few a keep, near-misses, crashes, pruned runs,
    long descriptions and reasons, a curve and a summary for each."""
    from autoresearch_nb.records import CurveSummary

    rows, curves, best = [], {}, 1.2
    for i in range(n):
        desc = f"experiment {i}: MATRIX_LR 0.04 -> {0.04 - i * 1e-5:.5f}, DEPTH 8 -> {8 + i % 5}, " \
               "because the last keep suggests a longer warm-down with a deeper model helps"
        summary = {"total_tokens_M": 500.0 + i, "training_seconds": 300.0, "peak_memory_mb": 40_000.0 + i}
        if i == 0 or i % 17 == 0:
            best -= 0.001
            e = Experiment(i, "t", Status.KEEP, desc, metric=best, summary=summary, threshold=0.004,
                           reason="beats the noise: 3 paired seeds, -0.001 ± 0.0002 vs #0 (t = 5.0, bar 3.1)")
        elif i % 11 == 0:
            e = Experiment(i, "t", Status.CRASH, desc, error="torch.OutOfMemoryError: CUDA out of memory. Tried to "
                           "allocate 2.00 GiB. GPU 0 has a total capacity of 79.1 GiB of which 1.2 GiB is free")
        elif i % 7 == 0:
            e = Experiment(i, "t", Status.PRUNED, desc, reason="stopped at 31% of the budget: its curve stayed above "
                           "the best's by more than 3σ for 15% of the budget (σ 0.004 from the baseline's 3 curves)")
        else:
            e = Experiment(i, "t", Status.DISCARD, desc, metric=best + (0.0005 if i % 3 else -0.0003),
                           summary=summary, threshold=0.004, effect_sigma=0.3,
                           reason="within the noise: 2 paired seeds, +0.0005 ± 0.002 vs #0 (t = -0.25, bar 3.1)")
        rows.append(e)
        curves[i] = CurveSummary((3.41 - i * 1e-4, 3.02, 2.93, 2.87) if e.status != Status.PRUNED
                                 else (3.5, None, None, None), 1.0 if e.status != Status.PRUNED else 0.31)
    return rows, curves


PROMPT_CAP_CHARS = 60_000  # about 15,000 tokens at 4 characters a token, train.py and program.md included


def test_the_prompt_stays_bounded_at_1000_experiments():
    """Every experiment's line would be ~300 characters: 1,000 of them alone would be 300 kB (75,000 tokens)."""
    root = Path(__file__).resolve().parents[1]
    source, program = (root / "train.py").read_text(), (root / "program.md").read_text()
    sizes = {}
    for n in (80, 1000):
        rows, curves = long_history(n)
        ctx = Context(program=program, editable="train.py", source=source, history=tuple(rows),
                      config=Config(), best=rows[-1 - (n - 1) % 17], curves=curves,
                      noise={"sigma": 0.0021, "mad_sigma": 0.0019, "n": 3})
        text = _prompt_text(ctx)
        sizes[n] = len(text)
        assert f"#{n - 1} " in text and "#0-#49: " in text or n == 80  # the latest line by line; the oldest summarised
        lines = [line for line in text.splitlines() if line.startswith("#") and " {loss@" in line]
        assert len(lines) <= 80  # RECENT + EPOCH at most, line by line
    print(f"prompt at 80 experiments: {sizes[80]} chars; at 1,000: {sizes[1000]} chars (~{sizes[1000] // 4} tokens)")
    assert sizes[1000] < PROMPT_CAP_CHARS
    assert sizes[1000] < sizes[80] + 15_000  # the 920 older experiments cost a few characters each


def test_a_new_experiment_keeps_the_cached_history_prefix():
    """Within an epoch the blocks up to the history's cache breakpoint do not change when an experiment is added
    (a count in the header once changed the first history block on every call)."""
    from autoresearch_nb.agents import prompt

    def cached_prefix(n: int) -> list:
        rows, curves = long_history(n)
        blocks = prompt.user_blocks(context(rows, curves=curves))
        last = max(i for i, b in enumerate(blocks[:-1]) if "cache_control" in b)
        return blocks[:last + 1]

    for n in (25, 133, 1000):
        assert cached_prefix(n + 1)[1:] == cached_prefix(n)[1:], n


def test_the_loop_gives_the_agent_each_runs_curve_and_the_noise(tmp_path):
    """Through the real loop: the curve points the run printed reach the agent's Context as a summary."""
    from conftest import make_repo

    from autoresearch_nb import Loop
    from autoresearch_nb.agents.base import Proposal, QueueExhausted
    from autoresearch_nb.agents import prompt

    target = "\n".join(["X = 3.0", "for i in range(1, 21):",
                        "    print(f'step {i} ({i * 5}.0%) | loss: {4.0 - i / 10:.2f}')",
                        "print('---')", "print(f'score: {(X - 1) ** 2:.6f}')",
                        "print('total_tokens_M: 6.0')", "print('training_seconds: 2.0')",
                        "print('peak_memory_mb: 300.0')", ""])

    class Recording:
        name = "recording"

        def __init__(self) -> None:
            self.contexts: list = []

        def propose(self, context):
            self.contexts.append(context)
            if len(self.contexts) > 2:
                raise QueueExhausted("done")
            x = f"X = {len(self.contexts)}.5"
            return Proposal(x, content=x + context.source[len(context.source.split(chr(10))[0]):])

    repo = make_repo(tmp_path / "r", {"train.py": target})
    agent = Recording()
    with Loop.open(repo, tag="t", agent=agent, metric="score", time_budget_s=5, noise_repeats=2,
                   lookahead="0") as loop:
        loop.optimize(n=3)
    ctx = agent.contexts[-1]
    assert ctx.noise is not None and ctx.noise["sigma"] == 0 and ctx.noise["n"] == 2  # the baseline's 2 runs
    assert set(ctx.curves) == {0, 1}
    assert ctx.curves[0].losses == pytest.approx((3.5, 3.0, 2.5, 2.0))
    line = prompt.history_lines(ctx.history, ctx.config, ctx.curves)[0]
    assert line.endswith("{loss@25/50/75/100%: 3.5/3/2.5/2; 3M tok/s; peak 300 MB}"), line


def test_near_misses_against_the_current_best_come_first():
    from autoresearch_nb.agents.prompt import near_misses

    history = [exp(0, Status.KEEP, 1.10, "baseline"), exp(1, Status.DISCARD, 1.090, "big miss, older best"),
               exp(2, Status.KEEP, 1.05, "a keep"), exp(3, Status.DISCARD, 1.049, "small miss, current best"),
               exp(4, Status.DISCARD, 1.06, "worse: no miss")]
    got = [line.split()[0] for line in near_misses(history, Config())]
    assert got == ["#3", "#1"]  # #1 gained more, but against a best that #2 has since beaten
