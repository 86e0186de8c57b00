"""Receipts clearance produces verify with an independent RFC 9162 + C2SP implementation.

The verifier below is written from the specs alone and shares no code with
clearance: RFC 8785 via the ``rfc8785`` package, the inclusion proof by the
recursive definition of RFC 9162 §2.1.3.1 (clearance verifies iteratively, per
§2.1.3.2), and the signed note by C2SP signed-note (key ID, signature line,
signed text). If both agree on every entry of a real log, a third party's
correct implementation will too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal.home import init_home
from clearance._internal.ledger.receipts import receipt_for_request
from clearance._internal.wiring import open_gate

EM_DASH = "\u2014"


def spec_root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """Fold PATH(m, D[n]) back to MTH(D[n]) by RFC 9162 §2.1.3.1's recursion."""
    if size == 1:
        assert path == []
        return leaf
    k = 1
    while k * 2 < size:
        k *= 2
    *inner, sibling = path
    if index < k:
        left = spec_root_from_path(index, k, leaf, inner)
        return hashlib.sha256(b"\x01" + left + sibling).digest()
    right = spec_root_from_path(index - k, size - k, leaf, inner)
    return hashlib.sha256(b"\x01" + sibling + right).digest()


def spec_verify(receipt: dict[str, Any], vkey: str) -> None:
    """Verify a docs/design.md §5 receipt with nothing but the specs; raises AssertionError."""
    name, key_hex, key_b64 = vkey.split("+", 2)  # names cannot hold "+"; base64 can
    key_bytes = base64.b64decode(key_b64)
    assert key_bytes[0] == 0x01  # Ed25519 (C2SP signed-note)
    key_id = hashlib.sha256(name.encode() + b"\n" + key_bytes).digest()[:4]
    assert key_id.hex() == key_hex
    public = Ed25519PublicKey.from_public_bytes(key_bytes[1:])

    note: str = receipt["checkpoint"]
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    verified = False
    for line in signatures.splitlines():
        dash, signer, blob = line.split(" ")
        assert dash == EM_DASH
        raw = base64.b64decode(blob)
        if signer == name and raw[:4] == key_id:
            public.verify(raw[4:], text.encode())  # raises InvalidSignature
            verified = True
    assert verified

    origin, size_text, root_b64, *_extensions = text.splitlines()
    assert size_text == str(receipt["tree_size"])
    leaf = hashlib.sha256(b"\x00" + rfc8785.dumps(receipt["entry"])).digest()
    path = [base64.b64decode(h) for h in receipt["inclusion_proof"]]
    root = spec_root_from_path(receipt["leaf_index"], receipt["tree_size"], leaf, path)
    assert root == base64.b64decode(root_b64)
    assert origin


def test_every_receipt_of_a_real_log_verifies_independently(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", now=1_795_000_000.0)
    request_ids = []
    with open_gate(home.path, principal="agent:ops-bot") as gate:
        with gate.trace("Pay acme-supplies EUR 30 and keep notes", bounds={"spend_cap": 600}):
            for n in range(9):
                with gate.clearance(
                    {
                        "principal": "agent:ops-bot",
                        "action": "write_file",
                        "args": {"path": f"notes/{n}.md", "content": "é" * n},
                    }
                ) as cleared:
                    request_ids.append(cleared.request_id)
            with gate.clearance(
                {
                    "principal": "agent:ops-bot",
                    "action": "pay_invoice",
                    "args": {"to": "acme-supplies", "amount": 30.5, "currency": "EUR"},
                }
            ) as cleared:
                request_ids.append(cleared.request_id)
        vkey = gate.ledger.vkey
        for request_id in request_ids:
            for kind in ("decision", "execution"):
                spec_verify(receipt_for_request(gate.ledger, request_id, kind), vkey)
    # and once through the command line, as a user would get one
    command = [sys.executable, "-m", "clearance", "receipt", request_ids[-1]]
    out = subprocess.run(
        [*command, "--entry", "execution", "--home", str(home.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    spec_verify(json.loads(out.stdout), vkey)


def test_the_independent_verifier_rejects_a_tampered_receipt(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home", now=1_795_000_000.0)
    with open_gate(home.path, principal="agent:ops-bot") as gate:
        for n in range(3):
            with gate.clearance(
                {"principal": "agent:ops-bot", "action": "read_file", "args": {"path": f"{n}"}}
            ) as cleared:
                pass
        vkey = gate.ledger.vkey
        receipt = receipt_for_request(gate.ledger, cleared.request_id)
    spec_verify(receipt, vkey)
    receipt["entry"]["effect"] = "deny"
    try:
        spec_verify(receipt, vkey)
    except AssertionError:
        return
    raise AssertionError("a tampered entry verified")
