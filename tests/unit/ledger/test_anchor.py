"""Anchor files: safe names, atomic writes that only advance, refusal of what does not verify."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import pytest

from clearance._internal.ledger.anchor import (
    AnchorFile,
    AnchorKeeper,
    CheckpointAnchor,
    stale_problem,
    witness_file_name,
)
from clearance._internal.ledger.checkpoint import NoteSigner, sign_checkpoint
from clearance._internal.ledger.store import Checkpoint
from clearance.errors import InputError, LedgerError, TamperError

ORIGIN = "anchor.test.example/log"
FISHY_ORIGINS = [
    "clearance.local/host/ab12",
    ".",
    "..",
    "../../etc/passwd",
    ".hidden",
    "a/b\\c",
    "tab\there",
    "new\nline",
    "nul\x00byte",
    "ünïcödé/λ",
    "%2F",
    "x" * 1000,
]


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def _cp(signer: NoteSigner, size: int, salt: bytes = b"") -> Checkpoint:
    return sign_checkpoint(signer, ORIGIN, size, hashlib.sha256(b"%d" % size + salt).digest())


@pytest.mark.parametrize("origin", FISHY_ORIGINS)
def test_witness_file_names_are_one_safe_component(origin: str, tmp_path: Path) -> None:
    name = witness_file_name(origin)
    assert name == witness_file_name(origin)  # deterministic
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert not name.startswith(".")
    assert name.isascii()
    assert name.isprintable()
    assert 0 < len(name) <= 200
    (tmp_path / name).write_text("x")  # a real file name, directly in the directory
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_distinct_origins_get_distinct_names() -> None:
    names = {witness_file_name(o) for o in FISHY_ORIGINS}
    assert len(names) == len(FISHY_ORIGINS)
    assert witness_file_name("x" * 1000) != witness_file_name("x" * 999)
    with pytest.raises(InputError):
        witness_file_name("")


def test_the_anchor_only_advances(tmp_path: Path, signer: NoteSigner) -> None:
    verifier = signer.verifier()
    anchor = CheckpointAnchor.for_home(tmp_path / "checkpoints", origin=ORIGIN)
    (file,) = anchor.files
    assert file.read(verifier, ORIGIN) is None
    anchor.advance(_cp(signer, 5), verifier)
    assert file.path == tmp_path / "checkpoints" / "latest"
    assert file.read(verifier, ORIGIN) == _cp(signer, 5)
    anchor.advance(_cp(signer, 3), verifier)  # smaller: ignored
    anchor.advance(_cp(signer, 5), verifier)  # equal: nothing to do
    assert file.read(verifier, ORIGIN) == _cp(signer, 5)
    anchor.advance(_cp(signer, 9), verifier)
    assert file.path.read_text(encoding="utf-8") == _cp(signer, 9).note
    with pytest.raises(TamperError, match="different root at size 9"):
        anchor.advance(_cp(signer, 9, b"fork"), verifier)
    assert file.read(verifier, ORIGIN) == _cp(signer, 9)
    leftovers = [p.name for p in file.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", "\u2014 not a note\n".encode(), b"\xff\xfe", None],
)
def test_a_file_that_does_not_verify_is_refused_and_never_replaced(
    tmp_path: Path, signer: NoteSigner, content: bytes | None
) -> None:
    verifier = signer.verifier()
    anchor = CheckpointAnchor.for_home(tmp_path, origin=ORIGIN)
    (file,) = anchor.files
    if content is None:  # signed by another key
        other = NoteSigner.generate(ORIGIN)
        content = sign_checkpoint(other, ORIGIN, 7, bytes(32)).note.encode()
    file.path.write_bytes(content)
    with pytest.raises(TamperError, match="anchor"):
        file.read(verifier, ORIGIN)
    with pytest.raises(TamperError):
        anchor.advance(_cp(signer, 10), verifier)
    assert file.path.read_bytes() == content
    anchor.adopt(_cp(signer, 10))  # the operator's explicit step replaces it
    assert file.read(verifier, ORIGIN) == _cp(signer, 10)


def test_a_symbolic_link_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    target = tmp_path / "elsewhere"
    target.write_text(_cp(signer, 4).note, encoding="utf-8")
    file = AnchorFile(tmp_path / "latest", "anchor")
    os.symlink(target, file.path)
    with pytest.raises(TamperError, match="symbolic link"):
        file.read(signer.verifier(), ORIGIN)


def test_witnesses_are_written_and_never_created(tmp_path: Path, signer: NoteSigner) -> None:
    verifier = signer.verifier()
    present, absent = tmp_path / "w1", tmp_path / "w2"
    present.mkdir()
    anchor = CheckpointAnchor.for_home(
        tmp_path / "home", [present, absent], origin=ORIGIN, sync=False
    )
    with pytest.raises(LedgerError, match="does not exist"):
        anchor.advance(_cp(signer, 2), verifier)
    assert not absent.exists()
    # The other files were written all the same.
    assert anchor.files[0].read(verifier, ORIGIN) == _cp(signer, 2)
    witness = present / witness_file_name(ORIGIN)
    assert witness.read_text(encoding="utf-8") == _cp(signer, 2).note
    assert "is it mounted" in str(anchor.files[2].missing(2))


def test_concurrent_writers_leave_the_largest(tmp_path: Path, signer: NoteSigner) -> None:
    verifier = signer.verifier()
    anchor = CheckpointAnchor.for_home(tmp_path, origin=ORIGIN, sync=False)
    sizes = list(range(1, 81))
    checkpoints = {size: _cp(signer, size) for size in sizes}
    barrier = threading.Barrier(8)

    def work(offset: int) -> None:
        barrier.wait()
        for size in sizes[offset::8]:
            anchor.advance(checkpoints[size], verifier)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert anchor.files[0].read(verifier, ORIGIN) == checkpoints[80]


def test_stale_problem_applies_the_grace_both_ways() -> None:
    now = 1_800_000_000.0
    at = "2027-01-15T08:00:00.000000Z"  # = now
    assert stale_problem(4, {"at": at}, now, 300) is None
    assert stale_problem(4, {"at": at}, now + 299, 300) is None
    old = stale_problem(4, {"at": at}, now + 301, 300)
    assert old is not None
    assert "indistinguishable from forged" in old
    future = stale_problem(4, {"at": at}, now - 301, 300)
    assert future is not None
    assert "future" in future
    for bad in (None, 5, "yesterday", "2027-01-15T08:00:00"):
        problem = stale_problem(4, {"at": bad}, now, 300)
        assert problem is not None
        assert "no valid 'at'" in problem


def test_a_checkpoint_not_anchored_in_the_background_is_logged_once_on_clearance_ledger(
    tmp_path: Path, signer: NoteSigner, caplog: pytest.LogCaptureFixture
) -> None:
    unmounted = tmp_path / "unmounted"
    anchor = CheckpointAnchor.for_home(tmp_path / "home", [unmounted], origin=ORIGIN, sync=False)
    keeper = AnchorKeeper(anchor, signer.verifier(), 0)
    with caplog.at_level(logging.WARNING, logger="clearance.ledger"):
        keeper.advance_quietly(_cp(signer, 2))
        keeper.advance_quietly(_cp(signer, 2))  # retried on the next tick: not logged again
    records = [r for r in caplog.records if r.name == "clearance.ledger"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].getMessage().startswith("checkpoint 2 is not anchored: ")
    assert "does not exist" in records[0].getMessage()
