"""C2SP signed notes and tlog-checkpoints: public vectors, round trips and mutations."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.ledger import checkpoint as cp
from clearance._internal.ledger.checkpoint import (
    NoteSigner,
    NoteVerifier,
    format_checkpoint,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
)
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import InputError, ProofError, SigningKeyError

VECTORS = Path(__file__).resolve().parents[2] / "assets" / "vectors"
"""RFC 9162 proof vectors and C2SP signed-note vectors (sources and licence: README there)."""
NOTE_VECTORS_FILE = VECTORS / "signed_note_vectors.json"


def _note_vectors() -> list[dict[str, Any]]:
    if not NOTE_VECTORS_FILE.is_file():
        return []
    data: list[dict[str, Any]] = json.loads(NOTE_VECTORS_FILE.read_text(encoding="utf-8"))
    return data


NOTE_VECTORS = _note_vectors()

ORIGIN = "clearance.test/log"
SIGNER = NoteSigner.generate(ORIGIN)
VERIFIER = SIGNER.verifier()
ROOT = hashlib.sha256(b"root").digest()
ED25519, ECDSA = b"\x01", b"\x02"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _step(note: str, verifier: NoteVerifier = VERIFIER) -> str:
    with pytest.raises(ProofError) as info:
        open_note(note, verifier)
    return info.value.step


def _sig_line(name: str, raw: bytes) -> str:
    return f"\u2014 {name} {_b64(raw)}\n"


# --- the public vectors -------------------------------------------------------------------


def test_note_vectors_file_is_present() -> None:
    assert NOTE_VECTORS_FILE.is_file(), f"missing {NOTE_VECTORS_FILE}"
    assert len(NOTE_VECTORS) >= 3


@pytest.mark.parametrize("vector", NOTE_VECTORS, ids=[v["id"] for v in NOTE_VECTORS])
def test_note_vector(vector: dict[str, Any]) -> None:
    verifier = NoteVerifier.from_vkey(vector["vkey"])
    assert verifier.vkey() == vector["vkey"]
    note: str = vector["note"]
    if vector["expect"].startswith("valid"):
        text = open_note(note, verifier)
        assert note.startswith(text + "\n\u2014 ")
    else:
        with pytest.raises(ProofError):
            open_note(note, verifier)


def test_reference_skey_reproduces_vkey_and_signature() -> None:
    with_skey = [v for v in NOTE_VECTORS if "skey_for_reference" in v]
    assert with_skey
    for vector in with_skey:
        signer = NoteSigner.from_skey(vector["skey_for_reference"])
        assert signer.skey() == vector["skey_for_reference"]
        assert signer.vkey() == vector["vkey"]
        text = open_note(vector["note"], signer.verifier())
        # Ed25519 is deterministic: signing the same text yields the published note.
        assert signer.sign(text) == vector["note"]


def test_unknown_signatures_in_the_two_signature_vector_are_ignored() -> None:
    two = next(v for v in NOTE_VECTORS if "two-sigs" in v["id"])
    peter = next(v for v in NOTE_VECTORS if v["id"] == "sumdb-note-PeterNeumann")
    # Either signer alone opens the note; the other's line is ignored.
    assert open_note(two["note"], NoteVerifier.from_vkey(two["vkey"]))
    assert open_note(two["note"], NoteVerifier.from_vkey(peter["vkey"]))
    assert _step(two["note"], VERIFIER) == "signature"


# --- keys -----------------------------------------------------------------------------------


def test_key_id_is_the_c2sp_hash_of_name_type_and_key() -> None:
    pub = VERIFIER.public_key.public_bytes_raw()
    want = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pub).digest()[:4]
    assert SIGNER.key_id == VERIFIER.key_id == cp.key_id(ORIGIN, pub) == want
    assert SIGNER.vkey() == f"{ORIGIN}+{want.hex()}+{_b64(ED25519 + pub)}"


def test_skey_and_vkey_round_trip() -> None:
    again = NoteSigner.from_skey(SIGNER.skey())
    assert again.vkey() == SIGNER.vkey()
    assert NoteVerifier.from_vkey(SIGNER.vkey()).vkey() == SIGNER.vkey()
    assert SIGNER.skey().startswith(f"PRIVATE+KEY+{ORIGIN}+{SIGNER.key_id.hex()}+")
    assert "PRIVATE" not in repr(SIGNER)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u2003b", "a\x01b"])
def test_invalid_key_names_are_refused(name: str) -> None:
    assert not cp.valid_key_name(name)
    with pytest.raises(InputError, match="key name"):
        NoteSigner(name, Ed25519PrivateKey.generate())
    with pytest.raises(InputError, match="key name"):
        NoteVerifier(name, Ed25519PrivateKey.generate().public_key())


def _vkey_parts() -> tuple[str, str, bytes]:
    name, hex_id, encoded = SIGNER.vkey().split("+", 2)
    return name, hex_id, base64.b64decode(encoded)


def _upper_hex(hex_id: str) -> str:
    """``hex_id`` with at least one upper-case letter, whatever its digits (never valid)."""
    upper = hex_id.upper()
    return upper if upper != hex_id else "A" + hex_id[1:]


def _bad_vkeys() -> list[str]:
    name, hex_id, raw = _vkey_parts()
    other = NoteSigner.generate(ORIGIN).key_id.hex()
    return [
        "",
        name,
        f"{name}+{hex_id}",
        # upper-case hex; a key id without hex letters gets one made upper-case by hand
        f"{name}+{_upper_hex(hex_id)}+{_b64(raw)}",
        f"{name}+{hex_id[:7]}+{_b64(raw)}",
        f"{name}+{other}+{_b64(raw)}",
        f"other.name+{hex_id}+{_b64(raw)}",
        f"+{hex_id}+{_b64(raw)}",
        f"{name}+{hex_id}+{_b64(ECDSA + raw[1:])}",
        f"{name}+{hex_id}+{_b64(raw[1:])}",
        f"{name}+{hex_id}+{_b64(raw + bytes(1))}",
        f"{name}+{hex_id}+{_b64(raw)[:-1]}",
        f"{name}+{hex_id}+{_b64(raw)} ",
        f"{name}+{hex_id}+{_b64(raw)[:-2]}B=",  # truncated, non-zero pad bits
    ]


@pytest.mark.parametrize(
    "vkey", [pytest.param(vkey, id=f"case{i}") for i, vkey in enumerate(_bad_vkeys())]
)
def test_malformed_vkeys_fail_at_the_vkey_step(vkey: str) -> None:
    with pytest.raises(ProofError) as info:
        NoteVerifier.from_vkey(vkey)
    assert info.value.step == "vkey"


def test_non_string_vkey_fails_at_the_vkey_step() -> None:
    with pytest.raises(ProofError) as info:
        NoteVerifier.from_vkey(b"bytes")  # type: ignore[arg-type]
    assert info.value.step == "vkey"


def _bad_skeys() -> list[str]:
    skey = SIGNER.skey()
    _, _, name, hex_id, encoded = skey.split("+", 4)
    raw = base64.b64decode(encoded)
    return [
        "",
        skey.replace("PRIVATE+KEY+", "PRIVATE+KEYS+"),
        skey.replace("PRIVATE+KEY+", "KEY+"),
        f"PRIVATE+KEY+{name}+{hex_id}",
        f"PRIVATE+KEY+{name}+{'0' * 8}+{encoded}",
        f"PRIVATE+KEY+{name}+{hex_id}+{_b64(ECDSA + raw[1:])}",
        f"PRIVATE+KEY+{name}+{hex_id}+{_b64(raw[:-1])}",
        f"PRIVATE+KEY+{name}+{hex_id}+{encoded[:-1]}",
        f"PRIVATE+KEY+a b+{hex_id}+{encoded}",
    ]


@pytest.mark.parametrize(
    "skey", [pytest.param(skey, id=f"case{i}") for i, skey in enumerate(_bad_skeys())]
)
def test_malformed_skeys_raise_signing_key_error_without_echoing_the_seed(skey: str) -> None:
    with pytest.raises(SigningKeyError) as info:
        NoteSigner.from_skey(skey)
    seed = SIGNER.skey().split("+", 4)[4]  # names hold no "+", base64 may
    assert seed not in str(info.value)


# --- notes ----------------------------------------------------------------------------------


def test_sign_produces_the_c2sp_layout() -> None:
    text = "hello\n\nworld\n"
    note = SIGNER.sign(text)
    head, _, line = note.rpartition("\n\n")
    assert head + "\n" == text
    prefix = f"\u2014 {ORIGIN} "
    assert line.startswith(prefix)
    assert line.endswith("\n")
    raw = base64.b64decode(line[len(prefix) : -1], validate=True)
    assert raw[:4] == SIGNER.key_id
    assert len(raw) == 68
    assert VERIFIER.verify(text.encode(), raw[4:])
    assert open_note(note, VERIFIER) == text


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "cr\r\n", "\ud800\n"])
def test_sign_refuses_text_that_is_not_a_note_text(text: str) -> None:
    with pytest.raises(InputError):
        SIGNER.sign(text)


def test_signatures_by_unknown_keys_are_ignored() -> None:
    text = "shared text\n"
    note = SIGNER.sign(text)
    stranger = NoteSigner.generate("someone.else/key")
    impostor = NoteSigner.generate(ORIGIN)  # same name, other key ID
    stranger_line = stranger.sign(text).rpartition("\n\n")[2]
    impostor_line = impostor.sign(text).rpartition("\n\n")[2]
    # Same key ID as the trusted key but another name: unknown too, even with junk.
    same_id_line = _sig_line("other.name", VERIFIER.key_id + b"\x00" * 64)
    for extra in (stranger_line, impostor_line, same_id_line):
        assert open_note(note + extra, VERIFIER) == text
        assert open_note(text + "\n" + extra + note.rpartition("\n\n")[2], VERIFIER) == text
    # Only unknown signatures: rejected.
    assert _step(text + "\n" + stranger_line + impostor_line + same_id_line) == "signature"


def test_a_bad_signature_by_the_trusted_key_rejects_the_note() -> None:
    text = "text\n"
    stranger = NoteSigner.generate("someone.else/key")
    forged = _sig_line(ORIGIN, SIGNER.key_id + b"\x01" * 64)
    assert _step(stranger.sign(text) + forged) == "signature"
    short = _sig_line(ORIGIN, SIGNER.key_id + bytes(63))  # not an Ed25519 signature length
    assert _step(text + "\n" + short) == "signature"
    # A trailing blank line moves the text/signature split: the signature no longer fits.
    good_line = SIGNER.sign(text).rpartition("\n\n")[2]
    assert _step(SIGNER.sign(text) + "\n" + good_line) == "signature"
    # A second line by the trusted key is refused even when both are genuine.
    good = SIGNER.sign(text)
    assert _step(good + good.rpartition("\n\n")[2]) == "note-format"


def test_a_signature_over_other_text_fails() -> None:
    note = SIGNER.sign("amount 10\n")
    assert _step(note.replace("amount 10", "amount 99")) == "signature"


def _malformed_notes() -> dict[str, Callable[[], object]]:
    note = SIGNER.sign("a\nb\n")
    head, _, line = note.rpartition("\n\n")
    encoded = line.split(" ")[2].rstrip("\n")
    return {
        "no-blank-line": lambda: note.replace("\n\n", "\n"),
        "no-final-newline": lambda: note[:-1],
        "no-signatures": lambda: head + "\n\n",
        "hyphen-not-em-dash": lambda: note.replace("\u2014", "-"),
        "en-dash": lambda: note.replace("\u2014", "\u2013"),
        "no-space-after-dash": lambda: note.replace("\u2014 ", "\u2014"),
        "empty-name": lambda: note.replace(f" {ORIGIN} ", "  "),
        "plus-in-name": lambda: note.replace(f" {ORIGIN} ", f" {ORIGIN}+x "),
        "no-signature-text": lambda: note.replace(f" {encoded}", ""),
        "empty-signature": lambda: note.replace(f" {encoded}", " "),
        "space-in-signature": lambda: note.replace(encoded, encoded[:10] + " " + encoded[10:]),
        "bad-base64": lambda: note.replace(encoded, "!" + encoded[1:]),
        "unpadded": lambda: note.replace(encoded, encoded.rstrip("=")),
        "non-canonical-pad-bits": lambda: note.replace(encoded, encoded[:-2] + "B="),
        "too-short": lambda: head + "\n\n" + _sig_line(ORIGIN, SIGNER.key_id),
        "control-char": lambda: note.replace("a\n", "a\x07\n"),
        "carriage-return": lambda: note.replace("a\n", "a\r\n"),
        "lone-surrogate": lambda: note.replace("a\n", "\udc00\n"),
        "too-many-signatures": lambda: note + line * cp.MAX_SIGNATURES,
        "too-long": lambda: "x" * cp.MAX_NOTE_SIZE + "\n" + note,
        "not-text": lambda: note.encode(),
    }


@pytest.mark.parametrize("case", sorted(_malformed_notes()))
def test_malformed_notes_fail_at_the_note_format_step(case: str) -> None:
    mutated = _malformed_notes()[case]()
    assert _step(mutated) == "note-format"  # type: ignore[arg-type]


def test_at_most_max_signatures_are_accepted() -> None:
    note = SIGNER.sign("t\n")
    stranger_line = NoteSigner.generate("x").sign("t\n").rpartition("\n\n")[2]
    assert open_note(note + stranger_line * (cp.MAX_SIGNATURES - 1), VERIFIER) == "t\n"


_line_chars = st.characters(codec="utf-8", min_codepoint=0x20)
_texts = st.lists(st.text(_line_chars, max_size=30), min_size=1, max_size=6).map(
    lambda lines: "\n".join(lines) + "\n"
)


@settings(max_examples=150, deadline=None)
@given(_texts)
def test_any_text_round_trips(text: str) -> None:
    assert open_note(SIGNER.sign(text), VERIFIER) == text


@settings(max_examples=200, deadline=None)
@given(_texts, st.data())
def test_any_single_character_change_is_rejected(text: str, data: st.DataObject) -> None:
    note = SIGNER.sign(text)
    position = data.draw(st.integers(0, len(note) - 1), label="position")
    replacement = data.draw(
        st.sampled_from("aZ09+/=\u2014 \nx").filter(lambda c: c != note[position]),
        label="replacement",
    )
    mutated = note[:position] + replacement + note[position + 1 :]
    with pytest.raises(ProofError) as info:
        open_note(mutated, VERIFIER)
    assert info.value.step in {"note-format", "signature"}


# --- checkpoints --------------------------------------------------------------------------------


def test_format_checkpoint_is_the_c2sp_body() -> None:
    assert format_checkpoint(ORIGIN, 42, ROOT) == f"{ORIGIN}\n42\n{_b64(ROOT)}\n"


def test_checkpoint_round_trip() -> None:
    signed = sign_checkpoint(SIGNER, ORIGIN, 7, ROOT)
    assert signed == Checkpoint(origin=ORIGIN, size=7, root=ROOT, note=signed.note)
    assert signed.note.startswith(format_checkpoint(ORIGIN, 7, ROOT) + "\n\u2014 ")
    assert parse_checkpoint(signed.note, VERIFIER) == signed
    assert parse_checkpoint(signed.note, VERIFIER, origin=ORIGIN) == signed


@settings(max_examples=100, deadline=None)
@given(
    st.text(_line_chars, min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
)
def test_any_checkpoint_round_trips(origin: str, size: int, root: bytes) -> None:
    signed = sign_checkpoint(SIGNER, origin, size, root)
    assert parse_checkpoint(signed.note, VERIFIER, origin=origin) == signed


def test_extension_lines_are_accepted_and_ignored() -> None:
    note = SIGNER.sign(format_checkpoint(ORIGIN, 3, ROOT) + "ext one\next two\n")
    parsed = parse_checkpoint(note, VERIFIER)
    assert (parsed.origin, parsed.size, parsed.root) == (ORIGIN, 3, ROOT)


_R = _b64(ROOT)


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n1\n",
        f"{ORIGIN}\n",
        f"\n1\n{_R}\n",
        f"{ORIGIN}\n01\n{_R}\n",
        f"{ORIGIN}\n-1\n{_R}\n",
        f"{ORIGIN}\n+1\n{_R}\n",
        f"{ORIGIN}\n 1\n{_R}\n",
        f"{ORIGIN}\n1 \n{_R}\n",
        f"{ORIGIN}\n1.0\n{_R}\n",
        f"{ORIGIN}\n\n{_R}\n",
        f"{ORIGIN}\n\u0661\n{_R}\n",
        f"{ORIGIN}\n{2**64}\n{_R}\n",
        f"{ORIGIN}\n1\n{_b64(ROOT[:31])}\n",
        f"{ORIGIN}\n1\n{_b64(ROOT + bytes(1))}\n",
        f"{ORIGIN}\n1\n{_R.rstrip('=')}\n",
        f"{ORIGIN}\n1\n{_R[:-2]}9=\n",
        f"{ORIGIN}\n1\n\n",
        f"{ORIGIN}\n1\n{_R}\n\next\n",
    ],
)
def test_malformed_checkpoint_bodies_fail_at_the_checkpoint_format_step(body: str) -> None:
    with pytest.raises(ProofError) as info:
        parse_checkpoint(SIGNER.sign(body), VERIFIER)
    assert info.value.step == "checkpoint-format"


def test_largest_tree_size_is_accepted() -> None:
    note = SIGNER.sign(f"{ORIGIN}\n{2**64 - 1}\n{_R}\n")
    assert parse_checkpoint(note, VERIFIER).size == 2**64 - 1


def test_checkpoint_failures_name_their_step() -> None:
    signed = sign_checkpoint(SIGNER, ORIGIN, 5, ROOT)
    other = NoteSigner.generate(ORIGIN).verifier()
    cases: dict[str, Callable[[], object]] = {
        "signature": lambda: parse_checkpoint(signed.note, other),
        "origin": lambda: parse_checkpoint(signed.note, VERIFIER, origin="other.log"),
        "checkpoint-format": lambda: parse_checkpoint(signed.note[:-1], VERIFIER),
    }
    for step, call in cases.items():
        with pytest.raises(ProofError) as info:
            call()
        assert info.value.step == step
    tampered = signed.note.replace(f"\n5\n{_R}", f"\n6\n{_R}")
    with pytest.raises(ProofError) as info:
        parse_checkpoint(tampered, VERIFIER)
    assert info.value.step == "signature"


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("a\x00b", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, 2**64, ROOT),
        (ORIGIN, True, ROOT),
        (ORIGIN, 1, ROOT[:31]),
        (ORIGIN, 1, _R),
    ],
)
def test_format_checkpoint_refuses_bad_input(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(InputError):
        format_checkpoint(origin, size, root)


def test_b64decode_strict_accepts_only_canonical_base64() -> None:
    assert cp.b64decode_strict("AAE=") == b"\x00\x01"
    assert cp.b64decode_strict("") == b""
    for bad in ("AAF=", "AAE", "AAE==", "AA E=", "AAE=\n", "A\u00e9E=", "AA-_"):
        with pytest.raises(ValueError):
            cp.b64decode_strict(bad)
