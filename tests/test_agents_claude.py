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
