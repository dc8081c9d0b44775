"""Agents propose experiments. Pick one by name: ``queue``, ``tuner`` (Optuna, no key) or ``claude``."""
from __future__ import annotations

from pathlib import Path

from .. import environ
from ..config import Config
from ..errors import ConfigError
from .base import Agent, Context, Proposal, QueueExhausted, Usage

AGENTS = ("tuner", "claude", "queue")


def default_agent_name() -> str:
    """``claude`` when an Anthropic key is in the environment, else the offline ``tuner``."""
    return "claude" if environ.api_key() else "tuner"


def make_agent(agent: str | Agent | None, config: Config, repo: Path) -> Agent:
    """An agent instance from a name, or ``agent`` itself when it already is one."""
    if agent is None:
        agent = default_agent_name()
    if not isinstance(agent, str):
        if not callable(getattr(agent, "propose", None)):
            raise ConfigError(f"{agent!r} is not an agent: it needs a propose(context) method")
        return agent
    name = agent.strip().lower()
    if name == "queue":
        from .queue import QueueAgent
        return QueueAgent(config, repo)
    if name == "tuner":
        from ..study import study_dir
        from .tuner import TunerAgent
        return TunerAgent(config, repo, study_dir=study_dir(repo))  # <tag>.db there, for optuna-dashboard
    if name == "claude":
        from .claude import ClaudeAgent
        return ClaudeAgent(config, repo)
    raise ConfigError(f"unknown agent {agent!r}; choose one of: {', '.join(AGENTS)}")


__all__ = ["Agent", "Context", "Proposal", "QueueExhausted", "Usage", "make_agent", "AGENTS"]
