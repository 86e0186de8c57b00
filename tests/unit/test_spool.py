"""The outcome spool: sealed files, generated names, quarantine of anything planted.

Threat (review findings 10 and 11): an attacker who can write files in the home
but cannot read its private keys plants spool files to get entries signed into
the log, or picks where the gate writes through a crafted request id. Every
planted file here is a real file in ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from clearance._internal import sealing
from clearance._internal.canonical import canonical_json
from clearance._internal.gate.spool import DrainReport, Spool, SpoolAction, SpoolVerdict
from clearance.errors import LedgerError

SKEY = "PRIVATE+KEY+clearance.test/home+01020304+AaNeCii32igQJHeWP0BHl10aR4uTO2ArR+8D+/ThKI8W"
OTHER_SKEY = "PRIVATE+KEY+clearance.test/other+05060708+Ab2pWWyOiS1ydyZzS6i5KuZB7jzVL1g0TzrNiK1g0oM"
KEY = sealing.derive_key(SKEY, sealing.SPOOL_PURPOSE)
NAME = re.compile(r"o-[0-9a-f]{32}\.json")


def execution(request_id: str = "r-1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "execution",
        "v": 1,
        "at": "2024-01-01T00:00:00Z",
        "request_id": request_id,
        "trace_id": None,
        "decision_index": 3,
        "jti": "j-1",
        "status": "ok",
        "error_type": None,
        "result_digest": None,
        "duration_us": 12,
        "executor": "in-process",
        **extra,
    }


def sealed_file(key: bytes, entry: Mapping[str, Any]) -> bytes:
    data = canonical_json(dict(entry))
    return json.dumps({"entry": entry, "seal": sealing.seal(key, data)}).encode()


class Ledger:
    """A stand-in ledger: what was appended, and a classifier over it."""

    def __init__(self, fail: bool = False) -> None:
        self.appended: list[Mapping[str, Any]] = []
        self.fail = fail

    def append(self, entry: Mapping[str, Any], *, sync: bool = True) -> int:
        if self.fail:
            raise LedgerError("disk full")
        self.appended.append(entry)
        return len(self.appended) - 1

    def classify(self, entry: Mapping[str, Any]) -> SpoolVerdict:
        if any(e["request_id"] == entry["request_id"] for e in self.appended):
            return SpoolVerdict.ALREADY_LOGGED
        return SpoolVerdict.APPEND


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", KEY)


def plant(spool: Spool, name: str, data: bytes) -> Path:
    spool.directory.mkdir(parents=True, exist_ok=True)
    path = spool.directory / name
    path.write_bytes(data)
    return path


# -- put ---------------------------------------------------------------------------------


def test_put_writes_a_sealed_file_under_a_generated_name(spool: Spool) -> None:
    path = spool.put(execution())
    assert path.parent == spool.directory
    assert NAME.fullmatch(path.name)
    assert path.stat().st_mode & 0o777 == 0o600
    document = json.loads(path.read_bytes())
    assert set(document) == {"entry", "seal"}
    assert document["entry"] == execution()
    assert sealing.check_seal(KEY, canonical_json(execution()), document["seal"])
    assert [p.name for p in spool.directory.iterdir()] == [path.name]  # no temporary left


@pytest.mark.parametrize(
    "request_id",
    [
        "../../keys/grant/jwks",
        "/tmp/clearance-spool-escape",
        "../../../etc/passwd",
        "a/b",
        "..",
        "x\nquarantined spool file 'fake'",
    ],
)
def test_put_never_derives_the_file_name_from_the_request_id(
    tmp_path: Path, request_id: str
) -> None:
    """Finding 11: an absolute or ``..`` rid from an unverified grant chose the path."""
    home = tmp_path / "home"
    (home / "keys" / "grant").mkdir(parents=True)
    spool = Spool(home / "spool", KEY)
    path = spool.put(execution(request_id))
    assert path.parent == spool.directory
    assert NAME.fullmatch(path.name)
    assert [p.name for p in spool.directory.iterdir()] == [path.name]
    assert list((home / "keys" / "grant").iterdir()) == []
    assert not Path("/tmp/clearance-spool-escape.json").exists()
    assert json.loads(path.read_bytes())["entry"]["request_id"] == request_id


def test_every_put_gets_its_own_file(spool: Spool) -> None:
    first, second = spool.put(execution()), spool.put(execution())
    assert first != second
    assert len(spool.pending()) == 2


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "decision", "request_id": "r-1"},
        {"type": "trace", "trace_id": "t-1"},
        {"type": "execution"},
        {"type": "execution", "request_id": 7},
    ],
)
def test_put_refuses_what_drain_would_quarantine(spool: Spool, entry: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="only execution entries"):
        spool.put(entry)


def test_put_into_an_unwritable_place_is_a_ledger_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="spool"):
        Spool(blocker / "spool", KEY).put(execution())


def test_put_refuses_a_spool_directory_that_is_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "spool").symlink_to(elsewhere)
    with pytest.raises(LedgerError, match="spool"):
        Spool(tmp_path / "spool", KEY).put(execution())
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("key", [b"", b"short", "a string key"])
def test_a_seal_key_is_required(tmp_path: Path, key: Any) -> None:
    with pytest.raises(ValueError, match="seal_key"):
        Spool(tmp_path, key)


# -- drain: the good paths ---------------------------------------------------------------


def test_a_good_file_is_appended_once_and_removed(spool: Spool) -> None:
    spool.put(execution("r-1"))
    ledger = Ledger()
    report = spool.drain(ledger.append, ledger.classify)
    assert report == DrainReport(appended=1)
    assert ledger.appended == [execution("r-1")]
    assert spool.pending() == []
    again = spool.drain(ledger.append, ledger.classify)
    assert again == DrainReport()
    assert len(ledger.appended) == 1


def test_already_logged_removes_the_file_without_appending(spool: Spool) -> None:
    """A crash between append and unlink: the next drain must not log the outcome twice."""
    ledger = Ledger()
    ledger.append(execution("r-1"))
    spool.put(execution("r-1"))
    report = spool.drain(ledger.append, ledger.classify)
    assert report == DrainReport(already_logged=1)
    assert len(ledger.appended) == 1
    assert spool.pending() == []


def test_a_sealed_file_copied_under_another_name_is_appended_once(spool: Spool) -> None:
    original = spool.put(execution("r-1"))
    plant(spool, "copy.json", original.read_bytes())
    ledger = Ledger()
    report = spool.drain(ledger.append, ledger.classify)
    assert (report.appended, report.already_logged) == (1, 1)
    assert ledger.appended == [execution("r-1")]


def test_a_missing_spool_directory_drains_nothing(tmp_path: Path) -> None:
    ledger = Ledger()
    assert Spool(tmp_path / "absent", KEY).drain(ledger.append, ledger.classify) == DrainReport()


def test_the_classifier_sees_only_authenticated_execution_entries(spool: Spool) -> None:
    spool.put(execution("r-1"))
    plant(spool, "planted.json", json.dumps(execution("r-2")).encode())
    seen: list[Mapping[str, Any]] = []

    def classify(entry: Mapping[str, Any]) -> SpoolVerdict:
        seen.append(entry)
        return SpoolVerdict.APPEND

    spool.drain(Ledger().append, classify)
    assert seen == [execution("r-1")]


# -- drain: stopping ---------------------------------------------------------------------


def test_an_append_failure_stops_the_drain_and_keeps_the_files(spool: Spool) -> None:
    for n in range(3):
        spool.put(execution(f"r-{n}"))
    report = spool.drain(Ledger(fail=True).append, Ledger().classify)
    assert report.appended == 0
    assert isinstance(report.error, LedgerError)
    assert len(spool.pending()) == 3
    ledger = Ledger()
    assert spool.drain(ledger.append, ledger.classify).appended == 3
    assert sorted(e["request_id"] for e in ledger.appended) == ["r-0", "r-1", "r-2"]


def test_a_failure_after_some_appends_keeps_the_rest(spool: Spool) -> None:
    for n in range(3):
        spool.put(execution(f"r-{n}"))
    ledger = Ledger()

    def append_one_then_fail(entry: Mapping[str, Any]) -> int:
        if ledger.appended:
            raise LedgerError("ledger went away")
        return ledger.append(entry)

    report = spool.drain(append_one_then_fail, ledger.classify)
    assert report.appended == 1
    assert report.error is not None
    assert len(spool.pending()) == 2


def test_a_classifier_failure_stops_without_quarantining(spool: Spool) -> None:
    spool.put(execution())

    def unavailable(entry: Mapping[str, Any]) -> SpoolVerdict:
        raise LedgerError("cannot read the ledger")

    report = spool.drain(Ledger().append, unavailable)
    assert isinstance(report.error, LedgerError)
    assert report.quarantined == ()
    assert len(spool.pending()) == 1


# -- drain: quarantine -------------------------------------------------------------------


def _planted(spool: Spool, tmp_path: Path) -> dict[str, str]:
    """Every kind of bad file, by name -> a fragment of the reason it is quarantined for."""
    other = sealing.derive_key(OTHER_SKEY, sealing.SPOOL_PURPOSE)
    jwks_key = sealing.derive_key(SKEY, sealing.JWKS_PURPOSE)
    good = execution("r-planted")
    # Finding 10: a decision with a negative amount reopened a used-up cap.
    decision = {"type": "decision", "request_id": "r-d", "intent": {"args": {"amount": -500}}}
    trace = {"type": "trace", "trace_id": "t-1", "request_id": "r-t", "mandate": {"text": "pay"}}
    target = tmp_path / "target.json"
    target.write_bytes(sealed_file(KEY, execution("r-via-link")))
    cases = {
        "no-seal.json": (json.dumps(good).encode(), "exactly"),
        "no-seal-member.json": (json.dumps({"entry": good}).encode(), "exactly"),
        "wrong-seal.json": (json.dumps({"entry": good, "seal": "0" * 64}).encode(), "seal"),
        "edited.json": (
            sealed_file(KEY, execution("r-planted")).replace(b'"ok"', b'"error"'),
            "seal",
        ),
        "other-home.json": (sealed_file(other, good), "seal"),
        "other-purpose.json": (sealed_file(jwks_key, good), "seal"),
        "decision.json": (sealed_file(KEY, decision), "'decision'"),
        "trace.json": (sealed_file(KEY, trace), "'trace'"),
        "not-json.json": (b"{not json", "not strict JSON"),
        "not-utf8.json": (b"\xff\xfe{}", "not strict JSON"),
        "duplicate.json": (
            b'{"entry": {}, "entry": ' + canonical_json(good) + b', "seal": "' + b"0" * 64 + b'"}',
            "duplicate",
        ),
        "array.json": (b"[]", "exactly"),
        "extra-member.json": (
            json.dumps({**json.loads(sealed_file(KEY, good)), "note": 1}).encode(),
            "exactly",
        ),
        "short-seal.json": (json.dumps({"entry": good, "seal": "abc"}).encode(), "64 hex"),
    }
    for name, (data, _) in cases.items():
        plant(spool, name, data)
    (spool.directory / "link.json").symlink_to(target)
    reasons = {name: reason for name, (_, reason) in cases.items()}
    reasons["link.json"] = "symbolic link"
    return reasons


def test_planted_files_are_quarantined_named_and_never_appended(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reasons = _planted(spool, tmp_path)
    good = spool.put(execution("r-good"))
    ledger = Ledger()
    with caplog.at_level(logging.WARNING, logger="clearance.spool"):
        report = spool.drain(ledger.append, ledger.classify)
    assert ledger.appended == [execution("r-good")]  # only the one put() wrote
    assert report.appended == 1
    assert report.error is None
    assert sorted(report.quarantined_names) == sorted(reasons)
    for q in report.quarantined:
        assert reasons[q.name] in q.reason, (q.name, q.reason)
    quarantine = spool.directory / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == sorted(reasons)
    assert (quarantine / "link.json").is_symlink()  # the link moved, not its target
    assert (tmp_path / "target.json").exists()
    assert not good.exists()
    assert spool.pending() == []
    warnings = [r for r in caplog.records if r.name == "clearance.spool"]
    assert all(r.levelno == logging.WARNING for r in warnings)
    for name in reasons:
        assert any(name in r.getMessage() for r in warnings), name


def test_a_fifo_does_not_hang_the_drain(spool: Spool) -> None:
    spool.directory.mkdir(parents=True)
    os.mkfifo(spool.directory / "pipe.json")
    report = spool.drain(Ledger().append, Ledger().classify)
    assert report.quarantined_names == ("pipe.json",)
    assert "not a regular file" in report.quarantined[0].reason


def test_an_oversized_file_is_quarantined_unread(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", KEY, max_file_bytes=64)
    spool.put(execution())
    report = spool.drain(Ledger().append, Ledger().classify)
    assert report.appended == 0
    assert "larger than 64 bytes" in report.quarantined[0].reason


def test_the_classifier_can_reject_with_a_reason(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    path = spool.put(execution("r-unknown"))
    ledger = Ledger()
    with caplog.at_level(logging.WARNING, logger="clearance.spool"):
        report = spool.drain(ledger.append, lambda e: SpoolVerdict.reject("no allow decision"))
    assert ledger.appended == []
    assert report.quarantined_names == (path.name,)
    assert report.quarantined[0].reason == "no allow decision"
    assert (spool.directory / "quarantine" / path.name).exists()
    assert any(
        path.name in r.getMessage() and "no allow decision" in r.getMessage()
        for r in caplog.records
    )


def test_quarantine_never_overwrites_earlier_evidence(spool: Spool) -> None:
    plant(spool, "bad.json", b"first")
    spool.drain(Ledger().append, Ledger().classify)
    plant(spool, "bad.json", b"second")
    report = spool.drain(Ledger().append, Ledger().classify)
    quarantine = spool.directory / "quarantine"
    assert (quarantine / "bad.json").read_bytes() == b"first"
    (second,) = report.quarantined_names
    assert second.startswith("bad.json.")
    assert (quarantine / second).read_bytes() == b"second"


def test_a_planted_quarantine_symlink_is_not_followed(spool: Spool, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spool.directory.mkdir(parents=True)
    (spool.directory / "quarantine").symlink_to(elsewhere)
    plant(spool, "bad.json", b"x")
    ledger = Ledger()
    report = spool.drain(ledger.append, ledger.classify)
    assert report.quarantined == ()
    assert list(elsewhere.iterdir()) == []
    assert (spool.directory / "bad.json").exists()  # left in place, and never appended
    assert ledger.appended == []


def test_only_json_files_directly_in_the_directory_are_considered(spool: Spool) -> None:
    spool.put(execution("r-1"))
    plant(spool, "notes.txt", b"hello")
    plant(spool, ".o-abc.json.1234.tmp", b"torn")
    (spool.directory / "sub").mkdir()
    (spool.directory / "sub" / "x.json").write_bytes(sealed_file(KEY, execution("r-2")))
    ledger = Ledger()
    report = spool.drain(ledger.append, ledger.classify)
    assert report == DrainReport(appended=1)
    assert [e["request_id"] for e in ledger.appended] == ["r-1"]
    assert (spool.directory / "notes.txt").exists()


def test_a_spool_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = Spool(tmp_path / "real", KEY)
    real.put(execution())
    (tmp_path / "spool").symlink_to(tmp_path / "real")
    ledger = Ledger()
    report = Spool(tmp_path / "spool", KEY).drain(ledger.append, ledger.classify)
    assert isinstance(report.error, LedgerError)
    assert ledger.appended == []


# -- the verdict type --------------------------------------------------------------------


def test_verdicts() -> None:
    assert SpoolVerdict.APPEND.action is SpoolAction.APPEND
    assert SpoolVerdict.ALREADY_LOGGED.action is SpoolAction.ALREADY_LOGGED
    rejected = SpoolVerdict.reject("why")
    assert (rejected.action, rejected.reason) == (SpoolAction.REJECT, "why")
    with pytest.raises(ValueError, match="reason"):
        SpoolVerdict.reject("")
    with pytest.raises(ValueError, match="reason"):
        SpoolVerdict(SpoolAction.APPEND, "no reason allowed")
