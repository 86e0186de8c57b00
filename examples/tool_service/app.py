"""An example tool service: ``payments.send`` at ``POST /pay``, behind the clearance grant guard.

The handler runs only for a request that carries a grant for exactly that request
(``Authorization: Clearance <grant>``, the payment as the JSON body), issued by the
gateway for the action ``payments.send``; everything else is answered 403 and the
refusal is reported to the gateway's log. Every payment the handler makes is
appended to ``payments.jsonl`` in the state directory (the tool's own record).

Configuration (environment):

``CLEARANCE_GATEWAY_URL``  the gateway, e.g. ``http://127.0.0.1:8470`` (its JWKS and, with a key,
                           where refusals and outcomes are reported)
``CLEARANCE_ISSUER``       the gateway's ``issuer`` setting (``clearance.yaml``)
``CLEARANCE_AUDIENCE``     the gateway's ``audience`` setting
``TOOL_API_KEY``           optional: an ``agent``-scope key of this service, to report to the log
``TOOL_STATE_DIR``         where the replay store, the report spool and payments.jsonl live
                           (default ``./tool-state``)
``TOOL_LEEWAY``            clock leeway in seconds for grant expiry, 0 to 5 (default 5)

Run it with ``uvicorn app:app --app-dir examples/tool_service --port 8471``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from clearance.executor import GrantGuard, GrantGuardMiddleware

STATE = Path(os.environ.get("TOOL_STATE_DIR", "tool-state"))
STATE.mkdir(parents=True, exist_ok=True)
GATEWAY = os.environ["CLEARANCE_GATEWAY_URL"]
API_KEY = os.environ.get("TOOL_API_KEY") or None

guard = GrantGuard(
    routes={("POST", "/pay"): "payments.send"},
    issuer=os.environ["CLEARANCE_ISSUER"],
    audience=os.environ["CLEARANCE_AUDIENCE"],
    replay=STATE / "replay.db",
    gateway_url=GATEWAY,  # its /.well-known/jwks.json is fetched, cached, refetched on a new kid
    api_key=API_KEY,
    spool_dir=STATE / "spool" if API_KEY else None,
    executor="payments-service",
    leeway=float(os.environ.get("TOOL_LEEWAY", "5")),
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await guard.aclose()


app = FastAPI(title="payments (example tool service)", lifespan=lifespan)
app.add_middleware(GrantGuardMiddleware, guard=guard)


class Payment(BaseModel):
    """The body of ``POST /pay``: exactly the intent's args."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=128)
    amount: float = Field(gt=0)
    currency: Literal["EUR", "USD"]


@app.post("/pay")
def pay(payment: Payment) -> dict[str, object]:
    """Send a payment (here: append it to the service's own record)."""
    record = {"payment_id": f"p-{secrets.token_hex(6)}", **payment.model_dump()}
    with (STATE / "payments.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return record


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Unprotected: the guard only guards the routes it was given."""
    return {"status": "ok"}
