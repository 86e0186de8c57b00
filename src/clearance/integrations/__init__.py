"""Where agents already are: clearance at the tool-call hooks of MCP and agent frameworks.

Each module integrates one framework and imports nothing but it and clearance, so
``import clearance.integrations.<name>`` needs only that framework installed (its extra:
``pip install 'clearance[mcp]'``, ``[langchain]``, ``[openai-agents]``, ``[pydantic-ai]``,
``[google-adk]``, ``[claude-agent-sdk]``, ``[otel]``). Every integration goes through the
same gate (in process) or the runtime API (``clearance.Client``), with the same intents,
policies, ledger entries and fail-closed rules: a gate error or timeout denies.
"""

__all__: list[str] = []
