"""A scripted gateway double for the clients' unit tests: real grants, canned HTTP.

It signs grants with a real key ring exactly as the gateway does, so the client's
checks run for real; what it answers is up to each test (``behaviour``). The real
server is exercised by tests/integration/remote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clearance._internal.grants.keys import GrantKeyRing
from clearance._internal.grants.token import GrantClaims, issue_grant
from clearance._internal.intent import Intent

T0 = time.time() - 60  # the ring's keys exist from a minute ago
ISS, AUD, POL = "clearance://fake", "tools", "sha256:" + "ab" * 32
PRINCIPAL = "agent:fake"

Handler = Callable[[httpx.Request, dict[str, Any]], httpx.Response | None]


class FakeGateway:
    """Answers the contract's paths; ``overrides[path]`` replaces one answer."""

    def __init__(self, directory: Path) -> None:
        self.ring = GrantKeyRing.create(directory / "ring", T0)
        self.requests: list[httpx.Request] = []
        self.overrides: dict[str, Handler] = {}
        self.approval_status = "pending"
        self.collections = 0
        self.sent_intents: dict[str, dict[str, Any]] = {}
        self.reports: list[dict[str, Any]] = []
        self._n = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def allow(
        self, intent_json: dict[str, Any], *, request_id: str | None = None
    ) -> dict[str, Any]:
        """An allow reply for ``intent_json`` (completed as the gateway would)."""
        self._n += 1
        completed = {**intent_json}
        completed.setdefault("principal", PRINCIPAL)
        if completed.get("principal") is None:
            completed["principal"] = PRINCIPAL
        if not completed.get("trace_id"):
            completed["trace_id"] = f"t{self._n}"
        intent = Intent.from_json(completed)
        rid = request_id or f"r{self._n}"
        claims = GrantClaims.for_intent(
            intent,
            issuer=ISS,
            audience=AUD,
            policy_digest=POL,
            request_id=rid,
            ledger_index=self._n,
            now=time.time(),
        )
        return {
            "request_id": rid,
            "effect": "allow",
            "reasons": [{"rule": "ok", "message": "fine"}],
            "facts": {},
            "ledger_index": self._n,
            "policy_digest": POL,
            "intent": intent.to_json(),
            "intent_digest": intent.digest,
            "grant": issue_grant(self.ring.signing_key(), claims),
            "expires_at": claims.exp,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        override = self.overrides.get(path)
        if override is not None:
            answer = override(request, body)
            if answer is not None:
                return answer
        if path == "/.well-known/jwks.json":
            return httpx.Response(200, json=self.ring.jwks(time.time()))
        if path == "/v1/authorize":
            return httpx.Response(200, json=self.allow(body))
        if path == "/v1/executions":
            self.reports.append(body)
            return httpx.Response(201, json={"request_id": "r", "ledger_index": 1})
        if path == "/v1/traces":
            return httpx.Response(201, json={"trace_id": "t-open", "principal": PRINCIPAL})
        if path.startswith("/v1/traces/"):
            trace_id = path.rsplit("/", 1)[1]
            return httpx.Response(
                200,
                json={"trace_id": trace_id, "mandate": {"text": "m", "bounds": {}}, "requests": []},
            )
        if path == "/v1/policies/evaluate":
            return httpx.Response(
                200,
                json={
                    "effect": "deny",
                    "reasons": [{"rule": "no", "message": "m"}],
                    "facts": {"a": 1},
                },
            )
        if path.endswith("/grant"):
            approval_id = path.split("/")[3]
            self.collections += 1
            if self.approval_status != "approved":
                return httpx.Response(202, json={"approval_id": approval_id})
            self.approval_status = "collected"
            return httpx.Response(200, json=self.allow(self.sent_intents[approval_id]))
        if path.startswith("/v1/approvals/"):
            approval_id = path.split("/")[3]
            return httpx.Response(
                200,
                json={
                    "approval_id": approval_id,
                    "status": self.approval_status,
                    "intent": {**self.sent_intents.get(approval_id, {}), "principal": PRINCIPAL},
                    "request_id": "r-pending",
                    "votes": [],
                },
            )
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def needs_approval(self, approval_id: str = "a1") -> None:
        """Make /v1/authorize answer 202 with ``approval_id``."""

        def pending(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
            self.sent_intents[approval_id] = {**body, "trace_id": body.get("trace_id") or "t-a"}
            return httpx.Response(
                202,
                json={
                    "request_id": "r-pending",
                    "effect": "approval_required",
                    "reasons": [{"rule": "big", "message": "needs a human"}],
                    "facts": {},
                    "ledger_index": 3,
                    "approval_id": approval_id,
                    "expires_at": time.time() + 900,
                },
            )

        self.overrides["/v1/authorize"] = pending
