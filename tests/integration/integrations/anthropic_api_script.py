"""A scripted model behind a local Anthropic Messages API, for the real Claude Code CLI.

The Claude Agent SDK's bundled ``claude`` binary talks to the model over the Messages API
at ``ANTHROPIC_BASE_URL``. This server answers ``POST /v1/messages`` on 127.0.0.1 (no
network) with a scripted turn: the n-th request that offers tools (n = the number of
tool results already in the conversation) gets the n-th scripted tool call, streamed as
the API streams (server-sent events ``message_start``, ``content_block_start``,
``content_block_delta`` with ``input_json_delta``, ``content_block_stop``,
``message_delta`` with ``stop_reason: tool_use``, ``message_stop``); past the script, or
a request without tools, gets the text ``done``. Every request body is kept in
:attr:`ScriptedMessagesApi.requests`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ScriptedMessagesApi:
    """The server; ``calls`` are ``(tool name, input)`` pairs, one per model turn."""

    calls: list[tuple[str, dict[str, Any]]]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._send(404, "application/json", b"{}")

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                api.requests.append(body)
                if "count_tokens" in self.path:
                    self._send(200, "application/json", b'{"input_tokens": 10}')
                    return
                events = api.turn(body)
                if body.get("stream"):
                    stream = "".join(
                        f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events
                    )
                    self._send(200, "text/event-stream", stream.encode())
                else:
                    self._send(200, "application/json", json.dumps(_whole(events)).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last request: what the model was shown."""
        last = self.requests[-1]["messages"] if self.requests else []
        return [
            block
            for message in last
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]

    def turn(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        done = sum(
            1
            for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
        message = {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "scripted"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message})
        ]
        if body.get("tools") and done < len(self.calls):
            name, given = self.calls[done]
            block = {"type": "tool_use", "id": f"toolu_{done:02d}", "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(given)}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": "done"}
            stop = "end_turn"
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 1},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return events


def _whole(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The non-streaming form of a scripted turn."""
    message: dict[str, Any] = dict(events[0][1]["message"])
    block = dict(events[1][1]["content_block"])
    delta = events[2][1]["delta"]
    if block["type"] == "tool_use":
        block["input"] = json.loads(delta["partial_json"])
    else:
        block["text"] = delta["text"]
    message["content"] = [block]
    message["stop_reason"] = events[4][1]["delta"]["stop_reason"]
    return message
