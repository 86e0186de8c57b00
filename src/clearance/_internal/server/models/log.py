"""Bodies of receipts, the transparency-log read API, keys and health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from clearance._internal.server.models.common import JSONObject

_B64 = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g="


class Receipt(BaseModel):
    """A receipt (docs/design.md §5): verifies offline with nothing but the log's vkey."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entry": {"type": "decision", "v": 1, "request_id": "r…"},
                    "leaf_index": 17,
                    "tree_size": 18,
                    "inclusion_proof": [_B64],
                    "checkpoint": "clearance.local/host/1a2b3c4d\n18\n<root>\n\n— …\n",
                    "log_vkey": "clearance.local/host/1a2b3c4d+01234567+AU…",
                }
            ]
        }
    )

    entry: JSONObject
    leaf_index: int
    tree_size: int
    inclusion_proof: list[str]
    checkpoint: str
    log_vkey: str


class InclusionProof(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"index": 3, "size": 8, "proof": [_B64], "root": _B64}]}
    )

    index: int
    size: int
    proof: list[str]
    """Base64 hashes, from the leaf's sibling upward."""
    root: str
    """Base64 root hash of the tree of ``size`` leaves."""


class ConsistencyProof(BaseModel):
    """RFC 9162 §2.1.4 consistency proof from the tree of ``first`` to that of ``second``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "first": 4,
                    "second": 8,
                    "proof": [_B64],
                    "first_root": _B64,
                    "second_root": _B64,
                }
            ]
        }
    )

    first: int
    second: int
    proof: list[str]
    first_root: str
    second_root: str


class LogEntry(BaseModel):
    """One leaf of the log: its index and the entry (the leaf is its RFC 8785 bytes)."""

    index: int
    entry: JSONObject


class LogEntries(BaseModel):
    """A page of log entries and the log's current size."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entries": [{"index": 0, "entry": {"type": "policy", "v": 1}}],
                    "size": 18,
                }
            ]
        }
    )

    entries: list[LogEntry]
    size: int


class Jwk(BaseModel):
    """One Ed25519 public key (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: str | None = None
    use: str | None = None


class Jwks(BaseModel):
    """The keys grants are verified with (RFC 7517)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                            "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                            "alg": "EdDSA",
                            "use": "sig",
                        }
                    ]
                }
            ]
        }
    )

    keys: list[Jwk]


class Health(BaseModel):
    """The process serves."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the gateway can decide: each check is ``ok`` or says what is wrong."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "checks": {"ledger": "ok", "policy": "ok", "signing_key": "ok"},
                },
                {
                    "status": "unavailable",
                    "checks": {
                        "ledger": "ok",
                        "policy": "ok",
                        "signing_key": "grant key ring refused: seal does not verify",
                    },
                },
            ]
        }
    )

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
