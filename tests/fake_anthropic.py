"""A local HTTP server on 127.0.0.1 that speaks the Messages API wire format, for the Claude agent's tests.

It answers ``POST /v1/messages`` from a script: each entry is one response, in order. The real SDK is
pointed at it with ``ANTHROPIC_BASE_URL``; nothing in the SDK is mocked.

    with FakeAnthropic([tool_use({"description": "x", "edits": [...]})]) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        ...
        api.requests[0]["json"]["messages"]

Script entries: a ``dict`` (a 200 JSON body, e.g. from :func:`message`), a :class:`Reply` (any status,
body and headers; a ``bytes`` body is sent as is, e.g. malformed JSON), or a callable taking the request
JSON and returning one of those. When the script runs out, the server answers 500 with a clear body.
"""
from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

_ids = itertools.count(1)


@dataclass
class Reply:
    status: int = 200
    body: Any = None                       # dict -> JSON; bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)


def usage(input_tokens: int = 100, output_tokens: int = 50, cache_write: int = 0, cache_read: int = 0,
          write_1h: int | None = None) -> dict[str, Any]:
    u: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                         "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}
    if write_1h is not None:
        u["cache_creation"] = {"ephemeral_1h_input_tokens": write_1h,
                               "ephemeral_5m_input_tokens": cache_write - write_1h}
    return u


def message(content: list[dict[str, Any]], *, stop_reason: str | None = None, model: str = "claude-sonnet-5-5",
            use: dict[str, Any] | None = None) -> dict[str, Any]:
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {"id": f"msg_fake{next(_ids):04d}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": use if use is not None else usage()}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def thinking(t: str, signature: str = "sig-abc123") -> dict[str, Any]:
    return {"type": "thinking", "thinking": t, "signature": signature}


def tool_block(data: dict[str, Any], name: str = "propose_experiment") -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_fake{next(_ids):04d}", "name": name, "input": data}


def tool_use(data: dict[str, Any], *, before: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """A message whose content is ``before`` (e.g. a thinking block) and one propose_experiment call."""
    return message([*(before or []), tool_block(data)], **kw)


def error(status: int, kind: str, msg: str, *, code: str | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    err: dict[str, Any] = {"type": kind, "message": msg}
    if code:
        err["details"] = {"error_code": code}
    return Reply(status, {"type": "error", "error": err, "request_id": f"req_fake{next(_ids)}"}, headers or {})


def overloaded() -> Reply:
    # retry-after-ms keeps the SDK's own retries at a millisecond
    return error(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"})


class FakeAnthropic:
    """Serve a script of responses on 127.0.0.1; record every request (path, headers, JSON)."""

    def __init__(self, script: list[Any | Callable[[dict], Any]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                    entry = fake.script.pop(0) if fake.script else Reply(
                        500, {"type": "error", "error": {"type": "api_error", "message": "fake: script exhausted"}},
                        {"x-should-retry": "false"})
                if callable(entry):
                    entry = entry(body)
                if not isinstance(entry, Reply):
                    entry = Reply(200, entry)
                if self.path.split("?")[0] != "/v1/messages":
                    entry = Reply(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                data = entry.body if isinstance(entry.body, bytes) else json.dumps(entry.body).encode()
                self.send_response(entry.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_fake{next(_ids)}")
                for k, v in entry.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeAnthropic":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
