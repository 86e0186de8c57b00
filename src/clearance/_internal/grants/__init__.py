"""Grants: signing keys, EdDSA JWT issue and verification, the single-use jti store."""
