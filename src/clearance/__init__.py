"""clearance: pre-execution authorization for autonomous AI agents."""
