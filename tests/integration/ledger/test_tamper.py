"""Tampering with a ledger file is detected, and the first affected index is named.

The attacker here has the file and drops the append-only triggers (``attacker``);
some also hold the signing key. Detection is by :func:`verify` (recomputation and
signed checkpoints) or, for a wholesale rewrite, by consistency with a checkpoint
the user saved outside the ledger (:func:`check_consistency_with`).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearance._internal.canonical import canonical_json
from clearance._internal.ledger.audit import verify
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.consistency import check_consistency_with
from clearance._internal.ledger.sqlite import SQLiteLedger
from clearance.errors import TamperError

from .support import attacker, entry, open_ledger, rehash_from

SIZE = 40
CHECKPOINTS = (8, 16, 24, 32, 40)


class Base:
    """A pristine ledger file, its key and the checkpoints the user saved."""

    def __init__(self, path: Path, signer: NoteSigner, saved: dict[int, str]) -> None:
        self.path = path
        self.signer = signer
        self.saved = saved

    def copy(self, directory: Path) -> Path:
        target = directory / "ledger.db"
        shutil.copyfile(self.path, target)
        return target


def build(path: Path, signer: NoteSigner, content: dict[int, dict[str, object]]) -> dict[int, str]:
    """Write the 40-entry ledger (entry ``i`` unless ``content`` overrides it)."""
    saved: dict[int, str] = {}
    with open_ledger(path, signer, interval=3600) as store:
        for size in CHECKPOINTS:
            base = store.size()
            store.append_many([content.get(i, entry(i)) for i in range(base, size)])
            saved[size] = store.checkpoint_covering(size - 1).note
    return saved


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("base") / "ledger.db"
    signer = NoteSigner.generate("ledger.test.example/log")
    return Base(path, signer, build(path, signer, {}))


@pytest.fixture
def copy(base: Base, tmp_path: Path) -> Path:
    return base.copy(tmp_path)


@pytest.fixture
def raw(copy: Path) -> Iterator[sqlite3.Connection]:
    conn = attacker(copy)
    try:
        yield conn
    finally:
        conn.close()


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def _column(raw: sqlite3.Connection, column: str, idx: int) -> bytes:
    (value,) = raw.execute(f"SELECT {column} FROM entries WHERE idx = ?", (idx,)).fetchone()
    return bytes(value)


def _set(raw: sqlite3.Connection, column: str, idx: int, value: bytes) -> None:
    raw.execute(f"UPDATE entries SET {column} = ? WHERE idx = ?", (value, idx))


def test_the_pristine_ledger_verifies(base: Base, copy: Path) -> None:
    report = verify(copy, vkey=base.signer.vkey())
    assert report.ok, report.message
    assert (report.size, report.checkpoints) == (SIZE, len(CHECKPOINTS))


def test_flipped_byte_in_an_entry_is_located(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    leaf = _column(raw, "leaf", 21)
    _set(raw, "leaf", 21, leaf.replace(b"req-21", b"req-2X"))
    report = verify(copy, vkey=base.signer.vkey())
    assert not report.ok
    assert report.first_bad_index == 21
    assert "entry 21" in report.message
    with pytest.raises(TamperError) as failure:
        report.raise_for_problems()
    assert failure.value.index == 21


def test_flipped_byte_in_a_stored_leaf_hash_is_located(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    _set(raw, "hashes", 12, _flip(_column(raw, "hashes", 12), 5))
    report = verify(copy, vkey=base.signer.vkey())
    assert report.first_bad_index == 12
    assert not report.ok


def test_flipped_byte_in_an_interior_node_names_its_row(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    # Row 23 stores nodes (1, 11) and (2, 5); (2, 5) covers leaves [20, 24).
    _set(raw, "hashes", 23, _flip(_column(raw, "hashes", 23), 64 + 7))
    report = verify(copy, vkey=base.signer.vkey())
    assert report.first_bad_index == 23
    assert "level 2, index 5" in report.message


def test_deleted_row_is_located(base: Base, copy: Path, raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM entries WHERE idx = 13")
    report = verify(copy, vkey=base.signer.vkey())
    assert report.first_bad_index == 13
    assert "entry 13 is missing" in report.message


@pytest.mark.parametrize("columns", ["leaf", "hashes, type, ref, trace_id, leaf"])
def test_swapped_rows_are_located(
    base: Base, copy: Path, raw: sqlite3.Connection, columns: str
) -> None:
    names = [c.strip() for c in columns.split(",")]
    first = raw.execute(f"SELECT {columns} FROM entries WHERE idx = 5").fetchone()
    second = raw.execute(f"SELECT {columns} FROM entries WHERE idx = 30").fetchone()
    assignments = ", ".join(f"{name} = ?" for name in names)
    raw.execute(f"UPDATE entries SET {assignments} WHERE idx = 5", second)
    raw.execute(f"UPDATE entries SET {assignments} WHERE idx = 30", first)
    report = verify(copy, vkey=base.signer.vkey())
    assert report.first_bad_index == 5


def test_truncation_is_detected_by_the_checkpoints_left_behind(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("DELETE FROM entries WHERE idx >= 25")
    report = verify(copy, vkey=base.signer.vkey())
    assert report.first_bad_index == 25
    assert "removed" in report.message
    with pytest.raises(TamperError) as failure:
        open_ledger(copy, base.signer)
    assert failure.value.index == 25


def test_clean_truncation_is_detected_by_a_saved_checkpoint(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("DELETE FROM entries WHERE idx >= 25")
    raw.execute("DELETE FROM checkpoints WHERE size > 25")
    assert verify(copy, vkey=base.signer.vkey()).ok  # a shorter, self-consistent log
    with open_ledger(copy, base.signer) as store:
        with pytest.raises(TamperError, match="truncated") as failure:
            check_consistency_with(store, base.saved[32], base.signer.verifier())
        assert failure.value.index == 25


def test_rewrite_with_recomputed_hashes_is_caught_by_signed_roots(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    _set(raw, "leaf", 18, canonical_json(entry(18, effect="allow", note="forged")))
    rehash_from(raw, 18)
    report = verify(copy, vkey=base.signer.vkey())
    assert not report.ok
    assert report.first_bad_index == 16  # checkpoint 16 still matches; 24 does not
    assert "rewritten" in report.message
    with pytest.raises(TamperError):
        open_ledger(copy, base.signer)  # the latest checkpoint's root no longer matches


def test_a_log_re_signed_by_another_key_is_rejected(base: Base, tmp_path: Path) -> None:
    forged = tmp_path / "forged.db"
    impostor = NoteSigner.generate(base.signer.name)
    build(forged, impostor, {18: entry(18, note="forged")})
    trusted = base.signer.vkey()
    report = verify(forged, vkey=trusted)
    assert not report.ok
    assert report.first_bad_index is None  # no index: every signature is wrong
    assert "does not verify" in report.message
    unchecked = verify(forged)  # trusting the key stored in the file proves nothing
    assert unchecked.ok
    assert unchecked.key_from_store
    with pytest.raises(TamperError, match="does not verify"):
        open_ledger(forged, base.signer)
    with (
        open_ledger(forged, impostor) as store,
        pytest.raises(TamperError, match="latest checkpoint does not verify"),
    ):
        check_consistency_with(store, base.saved[16], base.signer.verifier())


@pytest.mark.parametrize("changed", [5, 18])
def test_a_log_rewritten_with_the_stolen_key_breaks_consistency(
    base: Base, tmp_path: Path, changed: int
) -> None:
    forged = tmp_path / "forged.db"
    build(forged, base.signer, {changed: entry(changed, note="forged")})
    assert verify(forged, vkey=base.signer.vkey()).ok  # self-consistent and validly signed
    with open_ledger(forged, base.signer) as store:
        with pytest.raises(TamperError, match="differs from the saved checkpoint"):
            check_consistency_with(store, base.saved[24], base.signer.verifier())
        if changed >= 16:  # a checkpoint saved before the change still holds, as it should
            head = check_consistency_with(store, base.saved[16], base.signer.verifier())
            assert head.size == SIZE


def test_altered_checkpoint_note_is_detected(
    base: Base, copy: Path, raw: sqlite3.Connection
) -> None:
    (note,) = raw.execute("SELECT note FROM checkpoints WHERE size = 24").fetchone()
    raw.execute("UPDATE checkpoints SET note = ? WHERE size = 24", (note.replace("24\n", "23\n"),))
    report = verify(copy, vkey=base.signer.vkey())
    assert not report.ok
    assert "checkpoint at size 24" in report.message


@settings(max_examples=60, deadline=None)
@given(
    row=st.integers(0, SIZE - 1),
    column=st.sampled_from(["leaf", "hashes"]),
    position=st.floats(0, 1, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_any_single_byte_change_is_located(
    base: Base,
    tmp_path_factory: pytest.TempPathFactory,
    row: int,
    column: str,
    position: float,
    mask: int,
) -> None:
    path = base.copy(tmp_path_factory.mktemp("flip"))
    conn = attacker(path)
    try:
        value = _column(conn, column, row)
        offset = int(position * len(value))
        _set(conn, column, row, _flip(value, offset, mask))
    finally:
        conn.close()
    report = verify(path, vkey=base.signer.vkey())
    assert not report.ok
    assert report.first_bad_index == row


def test_verify_accepts_an_open_store(base: Base, copy: Path) -> None:
    with SQLiteLedger.open(copy, signer=base.signer, origin="ledger.test.example/log") as store:
        assert verify(store).ok
        head = check_consistency_with(store, base.saved[8], base.signer.verifier())
        assert head.size == SIZE
