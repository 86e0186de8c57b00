"""``GET``/``PUT /v1/policies`` and ``POST /v1/policies/evaluate`` (a dry run).

Invariants (fail-closed rule 2): a bundle is activated only after the project's loader
accepted it whole; a bad one is 422 with the loader's messages and the active bundle
does not change. A dry run writes nothing: not the ledger, not the policy directory.
Its principal is the key's, except that an ``auditor`` may ask about any principal
(it may read every decision anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from clearance._internal.gate.decide import decide
from clearance._internal.policy.engine import EvaluationInput
from clearance._internal.server.auth import Caller, caller
from clearance._internal.server.errors import ApiError, field_of
from clearance._internal.server.models.admin import (
    EvaluateRequest,
    EvaluateResult,
    PolicyActivated,
    PolicyBundle,
    PolicyView,
)
from clearance._internal.server.routes.authorize import binding_error, intent_for
from clearance._internal.server.routing import StrictJSONRoute, errors
from clearance._internal.server.state import server_state
from clearance.errors import BindingError, InputError, PolicyError

router = APIRouter(route_class=StrictJSONRoute, tags=["policies"])


@router.get(
    "/v1/policies",
    response_model=PolicyView,
    summary="The active bundle and its activation history",
    responses=errors(),
)
def read_policies(
    request: Request, who: Annotated[Caller, Depends(caller("auditor"))]
) -> dict[str, Any]:
    """The active bundle's digest and canonical document, and every activation logged."""
    state = server_state(request)
    engine = state.gate.engine
    return {
        "digest": engine.digest,
        "document": engine.document(),
        "activations": state.bundles.history(),
    }


@router.put(
    "/v1/policies",
    response_model=PolicyActivated,
    summary="Validate and activate a bundle",
    responses=errors(),
)
def put_policies(
    body: PolicyBundle, request: Request, who: Annotated[Caller, Depends(caller("admin"))]
) -> dict[str, Any]:
    """Activate ``files`` as the home's bundle (a ``policy`` entry records it)."""
    state = server_state(request)
    try:
        digest, index = state.bundles.activate(body.files)
    except PolicyError as exc:
        raise ApiError("invalid_input", f"the bundle was refused: {exc}", field="files") from None
    return {"digest": digest, "ledger_index": index}


@router.post(
    "/v1/policies/evaluate",
    response_model=EvaluateResult,
    summary="Dry run: what would the policy decide?",
    responses=errors(),
)
def evaluate(
    body: EvaluateRequest,
    request: Request,
    who: Annotated[Caller, Depends(caller("agent", "auditor"))],
) -> dict[str, Any]:
    """Decide ``intent`` with its trace's facts, under the active or a candidate bundle."""
    state = server_state(request)
    members = intent_for(body.intent, who, any_principal=who.may("auditor"))
    principal = str(members["principal"])
    trace_id = body.intent.trace_id
    handle = state.traces.handle(trace_id, principal) if trace_id else None
    try:
        bound, decision, facts = state.gate.evaluate(
            members, trace=handle, parent=body.intent.parent_id
        )
    except BindingError as exc:
        raise binding_error(exc, prefix="intent.") from None
    except InputError as exc:
        raise ApiError("invalid_input", str(exc), field=field_of(str(exc), "intent.")) from None
    if body.files is not None:
        try:
            engine = state.bundles.load(body.files)
        except PolicyError as exc:
            raise ApiError(
                "invalid_input", f"the candidate bundle was refused: {exc}", field="files"
            ) from None
        now = datetime.fromtimestamp(state.clock(), UTC)
        decision = decide(engine, EvaluationInput.for_intent(bound, trace=facts, now=now))
    return {
        "effect": decision.effect,
        "reasons": [r.to_json() for r in decision.reasons],
        "facts": facts,
        "policy_digest": decision.policy_digest,
        "intent_digest": bound.digest,
    }
