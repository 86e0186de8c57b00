"""Claude Code: ``clearance hook claude-code``, a ``PreToolUse`` / ``PostToolUse`` hook.

Claude Code runs the hook command for every tool call, with the event as JSON on standard
input (hooks reference: https://code.claude.com/docs/en/hooks, "Hook input": the common
fields ``session_id``, ``transcript_path``, ``cwd``, ``permission_mode``,
``hook_event_name``; for tool events ``tool_name``, ``tool_input``, ``tool_use_id``, and
``tool_response`` for ``PostToolUse``, ``error`` / ``is_interrupt`` for
``PostToolUseFailure``). The hook answers in the same protocol ("Hook output",
"PreToolUse decision control"): exit status 0 and a JSON object whose
``hookSpecificOutput`` holds ``hookEventName: "PreToolUse"``, ``permissionDecision``
(``allow`` | ``deny`` | ``ask``) and ``permissionDecisionReason`` (shown to Claude for
``deny``, to the user for ``ask``). Exit status 2 blocks a call whatever the output; any
other non-zero status is a NON-blocking error that lets the call go ahead, so this hook
never uses one for ``PreToolUse``.

Intents (:func:`intent_for`): ``Bash`` → ``claude.bash`` ``{command}``; ``Read``,
``Write``, ``Edit``, ``MultiEdit``, ``NotebookEdit``, ``Glob``, ``Grep``, ``LS`` →
``claude.read`` / ``claude.write`` / ``claude.edit`` / ``claude.multi_edit`` / ... with
``path`` (absolute, ``..`` and links resolved) beside the ``file_path`` as sent, and large
texts bound by digest; an MCP tool ``mcp__server__tool`` → ``mcp.server.tool`` with its
arguments; any other tool ``Name`` → ``claude.<snake_name>`` with its input.

Trust model. The hook is trusted code that Claude Code runs; the model chooses tool
arguments, never the session, the principal, the mandate or the trace:

* One clearance trace per Claude Code session: the first event of a session opens a trace
  (mandate from ``--mandate`` / ``$CLEARANCE_MANDATE``, bounds ``{project_dir,
  session_id}``; ``project_dir`` is ``$CLAUDE_PROJECT_DIR``, which Claude Code sets for
  hooks, else the first event's ``cwd``) and keeps its id in the hook state, keyed by the
  SHA-256 of the session id; later events resume it from the ledger
  (``gate.resume_trace``, proven; over HTTP ``GET /v1/traces/{id}``). A later ``cd``
  cannot move the project: its directory is in the trace's mandate, fixed at opening.
* PreToolUse decides (``gate.authorize``: the decision is in the ledger before the
  answer). On ``allow`` the grant and bound intent are kept under the tool use id;
  PostToolUse (or PostToolUseFailure) takes them and appends the outcome as an
  ``execution`` entry for that request, verified like ``POST /v1/executions``.
* The home (in process) or ``--state-dir`` (HTTP) is trusted state: anyone who can write
  there can change the policy or the session's trace. Bash commands are matched as text
  by the policy, which is no sandbox; keep the home out of the agent's reach (another
  user, or the HTTP variant with the home on a server) and use Claude Code's sandbox for
  a hard boundary.
* A gate error, a damaged state, a bad event or no decision within ``--timeout`` seconds
  denies, with the reason.
"""

from clearance.integrations._claude_code.answers import HookAnswer
from clearance.integrations._claude_code.events import HookEvent, action_for, intent_for
from clearance.integrations._claude_code.hook import HookConfig, run_hook

__all__ = ["HookAnswer", "HookConfig", "HookEvent", "action_for", "intent_for", "run_hook"]
