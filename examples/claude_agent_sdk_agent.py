"""A Claude Agent SDK agent governed by clearance, offline.

Run: ``.venv/bin/python examples/claude_agent_sdk_agent.py``. The SDK runs its bundled
Claude Code CLI for real (its agent loop, hooks, permission prompts and built-in tools);
only the model is scripted: a tiny Messages API on 127.0.0.1 that the CLI reaches through
``ANTHROPIC_BASE_URL``. The policy is the coding-agent bundle of
``examples/claude_code/policies``. The model writes a file in the project (allowed: it
really is written), tries to read a private key through Bash (denied: Claude reads the
rule), and installs a package (``approval_required``: the PreToolUse hook answers
``ask``, ``can_use_tool`` waits for the approval, nobody approves, so it is denied naming
the approval id).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, query

from clearance import init_home, open_gate
from clearance.integrations.claude_agent_sdk import ClearanceGuard

POLICY = Path(__file__).parent / "claude_code" / "policies" / "coding_agent.yaml"
TASK = "Write the release notes and install the docs tooling"

SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("Write", {"file_path": "NOTES.md", "content": "# Release 1.2\n"}),
    ("Bash", {"command": "cat ~/.ssh/id_rsa", "description": "read key"}),
    ("Bash", {"command": "pip install mkdocs", "description": "install"}),
]


class ScriptedModel(BaseHTTPRequestHandler):
    """``POST /v1/messages``: the next scripted tool call (one per tool result), then text."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        done = sum(
            1
            for m in body.get("messages", [])
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        )
        if body.get("tools") and done < len(SCRIPT):
            name, given = SCRIPT[done]
            block = {"type": "tool_use", "id": f"toolu_{done}", "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(given)}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": "Done."}
            stop = "end_turn"
        message = {"id": "msg", "type": "message", "role": "assistant", "content": [],
                   "model": body.get("model"), "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "content_block_delta", "index": 0, "delta": delta},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop},
                "usage": {"output_tokens": 1},
            },
            {"type": "message_stop"},
        ]
        data = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


async def main() -> None:
    root = Path(tempfile.mkdtemp()).resolve()
    home, project = root / "home", root / "project"
    project.mkdir()
    init_home(home, now=time.time())
    for old in (home / "policies").glob("*.yaml"):
        old.unlink()
    (home / "policies" / "coding.yaml").write_text(POLICY.read_text(encoding="utf-8"))
    model = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()

    with open_gate(home, principal="agent:coder") as gate:
        guard = ClearanceGuard(gate, bounds={"project_dir": str(project)}, wait=0.5)
        options = ClaudeAgentOptions(
            cwd=str(project),
            model="claude-sonnet-4-5",
            env={
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{model.server_port}",
                "ANTHROPIC_API_KEY": "sk-ant-offline-example",
                "CLAUDE_CONFIG_DIR": str(root / "claude-config"),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        )
        async for message in query(prompt=TASK, options=guard.options(options)):
            for block in getattr(message, "content", None) or []:
                if getattr(block, "tool_use_id", None):
                    print(f"tool result: {str(block.content)[:160]}")
        guard.close()
        print("NOTES.md written:", (project / "NOTES.md").exists())
        for entry in gate.ledger.scan():
            if entry.entry["type"] == "decision":
                print("decision:", entry.entry["intent"]["action"], entry.entry["effect"])
    model.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
