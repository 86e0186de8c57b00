"""The implementation of :mod:`clearance.integrations.claude_code` (read its docstring)."""
