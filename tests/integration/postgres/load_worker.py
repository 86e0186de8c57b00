"""One process of the PostgreSQL concurrency test: a gate, many threads, one shared trace.

Run as ``python -m tests.integration.postgres.load_worker HOME TRACE_ID THREADS CALLS OUT``
with ``CLEARANCE_DATABASE`` naming the shared PostgreSQL database. Each of ``THREADS``
threads makes ``CALLS`` governed calls through ``gate.authorize`` + ``gate.execute``
(signed grants, consumed in the shared replay store); every tenth call is a EUR 100
payment in the shared trace ``TRACE_ID`` (opened by the test with a spend cap), the
others are file reads outside any trace. The worker writes, as JSON to ``OUT``, every
acknowledged request (request id, decision index, jti, effect) and every refusal.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from pathlib import Path
from typing import Any

from clearance import open_gate
from clearance._internal.grants.token import peek_claims
from clearance.errors import Denied

PRINCIPAL = "agent:ops-bot"


def main(home: str, trace_id: str, threads: int, calls: int, out: str) -> None:
    gate = open_gate(home, principal=PRINCIPAL)
    results: list[dict[str, Any]] = []
    guard = threading.Lock()
    try:
        trace = gate.resume_trace(trace_id, principal=PRINCIPAL)

        def run(worker: int) -> None:
            for call in range(calls):
                paying = call % 10 == 0
                intent: dict[str, Any]
                if paying:
                    intent = {
                        "action": "pay_invoice",
                        "args": {"to": "acme-supplies", "amount": 100, "currency": "EUR"},
                    }
                else:
                    intent = {"action": "read_file", "args": {"path": f"reports/{worker}.txt"}}
                try:
                    auth = gate.authorize(intent, trace=trace if paying else None)
                except Denied as exc:
                    with guard:
                        results.append({"effect": "deny", "rules": list(exc.reasons)})
                    continue
                gate.execute(auth.grant, auth.intent, functools.partial(int, call))
                claims = peek_claims(auth.grant)
                assert claims is not None
                row = {
                    "effect": "allow",
                    "action": intent["action"],
                    "request_id": auth.request_id,
                    "decision_index": auth.decision_index,
                    "jti": claims["jti"],
                }
                with guard:
                    results.append(row)

        workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        gate.close()
    Path(out).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
