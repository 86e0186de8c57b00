"""A dry run of a decision that reads the policy and settings and writes nothing.

``clearance check`` uses it: the intent is decided as a governed call made with
no trace open would be (under the home's default mandate, at depth 0), without
opening the ledger, the spool or the replay store, so nothing on disk changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clearance._internal.canonical import canonical_json
from clearance._internal.gate.decide import decide
from clearance._internal.gate.facts import for_request, initial_state
from clearance._internal.home import Home
from clearance._internal.ids import new_id
from clearance._internal.intent import Intent
from clearance._internal.policy.engine import Decision, EvaluationInput
from clearance.errors import BindingError, PolicyError


def dry_run(
    home: Home, intent: Intent, now: float, *, mandate: Mapping[str, Any] | None = None
) -> tuple[Intent, Decision, dict[str, Any]]:
    """Decide ``intent`` under ``home``'s bundle at ``now``; write nothing.

    The mandate is ``mandate`` (as for the first call of a trace opened with it) or
    the home's default mandate.

    Returns the intent with its (fresh) trace id, the decision and the facts used.
    BindingError for an intent that names a trace or a parent; PolicyError when the
    bundle does not load.
    """
    from clearance._internal.policy.reload import PolicyHolder

    if intent.trace_id is not None or intent.parent_id is not None:
        raise BindingError(
            "a dry run decides an intent as if no trace were open: remove trace_id and "
            "parent_id (only trusted code opens traces)"
        )
    try:
        engine = PolicyHolder.load(home.policy_dir).engine
    except PolicyError as exc:
        raise PolicyError(f"cannot decide: {exc}") from None
    trace_id = new_id("t", now)
    bound = intent.with_context(trace_id=trace_id)
    chosen = mandate if mandate is not None else home.settings.default_mandate
    facts = for_request(initial_state(trace_id, json.loads(canonical_json(dict(chosen)))), 0)
    request = EvaluationInput.for_intent(bound, trace=facts, now=datetime.fromtimestamp(now, UTC))
    return bound, decide(engine, request), facts
