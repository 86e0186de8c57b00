"""C2SP signed notes and tlog-checkpoints, signed with Ed25519.

Formats (c2sp.org/signed-note, c2sp.org/tlog-checkpoint; the key strings are
those of golang.org/x/mod/sumdb/note, which C2SP signed-note follows):

* A **signed note** is a text ending in a newline, a blank line, then one or
  more signature lines ``— <key name> <base64(key ID || signature)>`` (em dash
  U+2014). The text is separated from the signatures by the *last* blank line.
* A **key ID** is ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``
  (signature type ``0x01``: Ed25519 over the note text, RFC 8032).
* A **verifier key** (vkey) is ``<name>+<hex key ID>+<base64(0x01 || public key)>``;
  a **signer key** (skey) is ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.
* A **checkpoint** is a signed note whose text is the origin line, the tree size
  in decimal without leading zeros, the base64 root hash, then optional
  non-empty extension lines, which we accept and ignore.

Invariants:

* :func:`open_note` returns a text only if a signature by the trusted key
  (same name *and* key ID) verifies. Signatures by other keys are ignored, even
  when they share the name or the key ID but not both (signed-note, "Signatures").
  A signature by the trusted key that fails to verify rejects the whole note, as
  does a second signature line by the trusted key.
* Parsing is strict: base64 must be canonical (RFC 4648 §4, padded, zero pad
  bits), so every accepted note has exactly one spelling; notes are limited to
  :data:`MAX_NOTE_SIZE` characters and :data:`MAX_SIGNATURES` signature lines
  (the spec asks verifiers to accept at least 16).
* Verification failures raise :class:`~clearance.errors.ProofError` whose
  ``step`` is ``"vkey"``, ``"note-format"``, ``"signature"``,
  ``"checkpoint-format"`` or ``"origin"``. Malformed signer keys raise
  :class:`~clearance.errors.SigningKeyError`; caller misuse (a bad name or
  text to sign) raises :class:`~clearance.errors.InputError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clearance._internal.ledger.merkle import HASH_SIZE
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import InputError, ProofError, SigningKeyError

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "NoteSigner",
    "NoteVerifier",
    "b64decode_strict",
    "format_checkpoint",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "sign_checkpoint",
    "valid_key_name",
]

MAX_NOTE_SIZE = 1 << 20
"""Longest note (in characters) we parse; room for 16 post-quantum signatures and more."""

MAX_SIGNATURES = 100
"""Most signature lines we parse in one note (golang.org/x/mod/sumdb/note uses the same)."""

ED25519_TYPE = b"\x01"
"""The signed-note signature type byte for Ed25519."""

_SIG_PREFIX = "\u2014 "
_MAX_TREE_SIZE = 2**64 - 1
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


def b64decode_strict(text: str) -> bytes:
    """Decode standard, padded base64 (RFC 4648 §4), accepting only its canonical spelling.

    Raises ValueError otherwise. Rejecting non-zero pad bits means a one-character
    change to an accepted string always changes the decoded bytes.
    """
    if not text.isascii():
        raise ValueError("base64 text contains non-ASCII characters")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("base64 is not in canonical form")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def valid_key_name(name: object) -> bool:
    """True when ``name`` is a valid signed-note key name.

    Non-empty, no Unicode spaces, no ``+`` (signed-note "Format"), and no
    control characters (which no note may contain).
    """
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(ch.isspace() or ord(ch) < 0x20 for ch in name)
    )


def key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``: the Ed25519 key ID."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public_key).digest()[:4]


def _require_name(name: str) -> None:
    if not valid_key_name(name):
        raise InputError(
            f"invalid note key name {name!r}: use a non-empty name without spaces or '+'"
        )


class NoteVerifier:
    """An Ed25519 signed-note verifier: a key name, its key ID and the public key."""

    def __init__(self, name: str, key: Ed25519PublicKey) -> None:
        """Wrap ``key`` under ``name``; raises InputError for an invalid key name."""
        _require_name(name)
        self.name = name
        self.public_key = key
        self.key_id = key_id(name, key.public_bytes_raw())

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

        Raises ProofError(step="vkey") when the string is malformed, is not an
        Ed25519 key, or its key ID does not match the name and key.
        """
        if not isinstance(vkey, str):
            raise ProofError("verifier key must be a string", step="vkey")
        # The base64 part may itself contain '+', so split at most twice.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise ProofError(
                "verifier key must look like <name>+<8 hex digits>+<base64 key>", step="vkey"
            )
        name, hex_id, encoded = parts
        if not valid_key_name(name):
            raise ProofError(f"verifier key has an invalid key name {name!r}", step="vkey")
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise ProofError(
                f"verifier key ID {hex_id!r} must be 8 lowercase hex digits", step="vkey"
            )
        try:
            raw = b64decode_strict(encoded)
        except ValueError as exc:
            raise ProofError(
                f"verifier key material is not valid base64: {exc}", step="vkey"
            ) from None
        if len(raw) != 33 or raw[:1] != ED25519_TYPE:
            raise ProofError(
                "verifier key is not an Ed25519 key (expected 0x01 followed by 32 bytes)",
                step="vkey",
            )
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id.hex() != hex_id:
            raise ProofError(
                f"verifier key ID {hex_id} does not match its name and key "
                f"(computed {verifier.key_id.hex()}): the key string is corrupted",
                step="vkey",
            )
        return verifier

    def vkey(self) -> str:
        """The C2SP verifier key string."""
        raw = ED25519_TYPE + self.public_key.public_bytes_raw()
        return f"{self.name}+{self.key_id.hex()}+{_b64(raw)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature over ``text``."""
        if len(signature) != 64:
            return False
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey()!r})"


class NoteSigner:
    """An Ed25519 signed-note signer: a private key and the key name it signs under."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        """Wrap ``key`` under ``name``; raises InputError for an invalid key name."""
        _require_name(name)
        self.name = name
        self._key = key
        self.key_id = key_id(name, key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A signer with a fresh random Ed25519 key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        Raises SigningKeyError when the string is malformed or its key ID does
        not match (the message never repeats the key material).
        """
        if not isinstance(skey, str):
            raise SigningKeyError("signer key must be a string")
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise SigningKeyError(
                "signer key must look like PRIVATE+KEY+<name>+<8 hex digits>+<base64 seed>"
            )
        _, _, name, hex_id, encoded = parts
        if not valid_key_name(name):
            raise SigningKeyError(f"signer key has an invalid key name {name!r}")
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise SigningKeyError("signer key ID must be 8 lowercase hex digits")
        try:
            raw = b64decode_strict(encoded)
        except ValueError:
            raise SigningKeyError("signer key material is not valid base64") from None
        if len(raw) != 33 or raw[:1] != ED25519_TYPE:
            raise SigningKeyError(
                "signer key is not an Ed25519 key (0x01 followed by a 32-byte seed)"
            )
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id:
            raise SigningKeyError(
                "signer key ID does not match its name and key: the key string is corrupted"
            )
        return signer

    def skey(self) -> str:
        """The C2SP-style private key string. It is a secret: store it like one."""
        raw = ED25519_TYPE + self._key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(raw)}"

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self.name, self._key.public_key())

    def vkey(self) -> str:
        """The C2SP verifier key string for this signer."""
        return self.verifier().vkey()

    def sign(self, text: str) -> str:
        """Sign ``text`` and return the whole signed note (text, blank line, signature line).

        ``text`` must end with a newline and hold no control characters other
        than newlines (InputError otherwise).
        """
        if not isinstance(text, str) or not text.endswith("\n"):
            raise InputError("note text must be a string ending with a newline")
        if _CONTROL.search(text):
            raise InputError("note text must not contain control characters other than newline")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("note text is not valid Unicode") from None
        signature = self._key.sign(data)
        return f"{text}\n{_SIG_PREFIX}{self.name} {_b64(self.key_id + signature)}\n"

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()!r})"


def _malformed(reason: str) -> ProofError:
    return ProofError(f"signed note is malformed: {reason}", step="note-format")


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a note into its text and its ``(name, key ID, signature)`` lines."""
    if not isinstance(note, str):
        raise _malformed("expected text")
    if len(note) > MAX_NOTE_SIZE:
        raise _malformed(f"longer than {MAX_NOTE_SIZE} characters")
    if _CONTROL.search(note):
        raise _malformed("it contains control characters other than newline")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("it is not valid Unicode") from None
    split = note.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line separates the text from the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise _malformed("it has no signature lines")
    if not block.endswith("\n"):
        raise _malformed("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signature lines")
    signatures: list[tuple[str, bytes, bytes]] = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise _malformed(f"signature line {number} does not start with an em dash and a space")
        name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        if not space or not valid_key_name(name):
            raise _malformed(f"signature line {number} has no valid key name")
        try:
            raw = b64decode_strict(encoded)
        except ValueError as exc:
            raise _malformed(f"signature line {number}: {exc}") from None
        if len(raw) < 5:
            raise _malformed(f"signature line {number} is shorter than a key ID and a signature")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str, verifier: NoteVerifier) -> str:
    """Verify ``note`` against ``verifier`` and return its text (with its final newline).

    Raises ProofError(step="note-format") for a malformed note and
    ProofError(step="signature") when no signature by the trusted key verifies
    or one by the trusted key fails. Signatures by other keys are ignored.
    """
    text, signatures = _split_note(note)
    data = text.encode("utf-8")
    trusted = f"{verifier.name}+{verifier.key_id.hex()}"
    verified = False
    for name, kid, signature in signatures:
        # C2SP signed-note: a key is known only when both name and key ID match.
        if name != verifier.name or kid != verifier.key_id:
            continue
        if verified:
            raise _malformed(f"the trusted key {trusted} signed it twice")
        if not verifier.verify(data, signature):
            raise ProofError(
                f"the signature by the trusted key {trusted} does not verify: "
                "the note was altered after signing",
                step="signature",
            )
        verified = True
    if not verified:
        names = ", ".join(sorted({name for name, _, _ in signatures}))
        raise ProofError(
            f"the note has no signature by the trusted key {trusted} (signed by: {names}); "
            "check that you hold the right verifier key",
            step="signature",
        )
    return text


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint note text: origin, decimal size, base64 root, each ending in a newline.

    Raises InputError for an empty origin or one with control characters, a
    negative size, or a root that is not 32 bytes.
    """
    if not isinstance(origin, str) or origin == "" or "\n" in origin or _CONTROL.search(origin):
        raise InputError("checkpoint origin must be a non-empty line without control characters")
    if type(size) is not int or not 0 <= size <= _MAX_TREE_SIZE:
        raise InputError(f"checkpoint tree size must be an integer in [0, 2**64), got {size!r}")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise InputError(f"checkpoint root must be {HASH_SIZE} bytes")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def sign_checkpoint(signer: NoteSigner, origin: str, size: int, root: bytes) -> Checkpoint:
    """Sign a checkpoint for the tree of ``size`` leaves with root hash ``root``."""
    note = signer.sign(format_checkpoint(origin, size, root))
    return Checkpoint(origin=origin, size=size, root=bytes(root), note=note)


def _bad_checkpoint(reason: str) -> ProofError:
    return ProofError(f"checkpoint is malformed: {reason}", step="checkpoint-format")


def parse_checkpoint(note: str, verifier: NoteVerifier, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and return it.

    Steps, in order: the note's signature by ``verifier`` (``"signature"``; a
    malformed note envelope is ``"checkpoint-format"``), the checkpoint body
    (``"checkpoint-format"``), then, when ``origin`` is given, the origin line
    (``"origin"``). Extension lines are accepted and ignored.
    """
    try:
        text = open_note(note, verifier)
    except ProofError as exc:
        if exc.step == "note-format":
            raise ProofError(str(exc), step="checkpoint-format") from None
        raise
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _bad_checkpoint("expected an origin, a tree size and a root hash line")
    claimed_origin, size_line, root_line, *extensions = lines
    if claimed_origin == "":
        raise _bad_checkpoint("the origin line is empty")
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > _MAX_TREE_SIZE:
        raise _bad_checkpoint(
            f"tree size {size_line[:40]!r} is not a decimal without leading zeros"
        )
    try:
        root = b64decode_strict(root_line)
    except ValueError as exc:
        raise _bad_checkpoint(f"root hash: {exc}") from None
    if len(root) != HASH_SIZE:
        raise _bad_checkpoint(f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    if any(line == "" for line in extensions):
        raise _bad_checkpoint("extension lines must not be empty")
    if origin is not None and claimed_origin != origin:
        raise ProofError(
            f"checkpoint is for log {claimed_origin!r}, expected {origin!r}", step="origin"
        )
    return Checkpoint(origin=claimed_origin, size=int(size_line), root=root, note=note)
