"""The append-only, tamper-evident ledger (RFC 9162 Merkle log with C2SP checkpoints)."""
