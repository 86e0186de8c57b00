"""The proof viewer (``GET /console/proof``): verify a receipt in the browser.

Invariants:

* The page is public: no login, no scope, no form that changes anything. It reads one
  thing from the server, the log's verifier key, shown as a convenience the page
  labels as the server's own claim (verifying with it proves only what this server
  signed).
* The verification runs in the visitor's browser (``static/proof_*.js``: WebCrypto
  Ed25519 and SHA-256, RFC 8785, RFC 9162), in the order and with the step names of
  :mod:`clearance._internal.ledger.receipts`; the page asks the server nothing while
  verifying. Only the consistency button reads the public ``/v1/log`` endpoints.
* The page's own scripts and styles are linked relatively (``static/...``), so a copy
  saved to disk next to a ``static`` folder works without a server.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from clearance._internal.console.web import render, viewer
from clearance._internal.server.state import server_state

router = APIRouter(include_in_schema=False)


@router.get("/console/proof")
def proof_viewer(request: Request) -> Response:
    """The proof viewer, for anyone."""
    seen = viewer(request)
    vkey = server_state(request).gate.ledger.vkey
    return render(request, "proof.html", seen, {"server_vkey": vkey})
