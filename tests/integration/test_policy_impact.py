"""Policy impact (``clearance policy impact``, :mod:`clearance._internal.policy_impact`).

A real home and gate with a fixed clock make seven decisions in one trace under the
example bundle (allow, deny, approval_required, a redacted argument, trace facts), the
approval is then approved and collected; candidate bundles derived from the example are
run over that ledger, through the library and through the real command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clearance._cli.main import app
from clearance._internal import policy_impact
from clearance._internal.home import Home, init_home
from clearance._internal.intent import Intent
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy_impact import (
    DEFAULT_LAST,
    ImpactReport,
    analyze_impact,
    redacted_read,
)
from clearance._internal.sealing import PROVENANCE_PURPOSE, derive_key
from clearance._internal.wiring import open_gate, open_ledger
from clearance.errors import ApprovalRequired, Denied, InputError, PolicyError, TamperError
from tests.integration.cli.support import assert_clean_error
from tests.integration.gate.conftest import FixedClock

PRINCIPAL = "agent:ops-bot"
IBAN = "DE89370400440532013000"
EXAMPLES = Path(__file__).parents[2] / "src/clearance/examples"


def pay(to: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {
        "principal": PRINCIPAL,
        "action": "pay_invoice",
        "args": {"to": to, "amount": amount, "currency": "EUR", **extra},
    }


CALLS: dict[str, dict[str, Any]] = {
    "read": {"principal": PRINCIPAL, "action": "read_file", "args": {"path": "notes/a.md"}},
    "traversal": {"principal": PRINCIPAL, "action": "read_file", "args": {"path": "../secrets"}},
    "delete": {"principal": PRINCIPAL, "action": "delete_file", "args": {"path": "x"}},
    "pay120": pay("acme-supplies", 120.0),
    "pay900": pay("acme-supplies", 900.0),
    "iban": pay("acme-supplies", 50.0, iban=IBAN),
    "write": {
        "principal": PRINCIPAL,
        "action": "write_file",
        "args": {"path": "report.md", "content": "done"},
    },
}
"""The calls in log order, by name: what the example bundle decides is in ``LOGGED``."""

LOGGED = {
    "read": ("allow", ["files-in-sandbox"]),
    "traversal": ("deny", ["no-path-traversal"]),
    "delete": ("deny", ["no-deletes"]),
    "pay120": ("allow", ["payments-known-payees"]),
    "pay900": ("approval_required", ["payments-over-cap-need-approval"]),
    "iban": ("allow", ["payments-known-payees"]),
    "write": ("allow", ["files-in-sandbox"]),
}

STRICT_RULES = """
  - id: no-deletes-ever
    effect: deny
    actions: [delete_file]
  - id: no-writes-late-in-a-trace
    effect: deny
    actions: [write_file]
    when: trace.count >= 3.0
  - id: no-foreign-ibans
    effect: deny
    actions: [pay_invoice]
    when: has(args.iban) && !args.iban.startsWith("DE")
"""

NO_DELETES = """\
  - id: no-deletes
    effect: deny
    actions: [delete_file]
    message: Agents never delete files
"""


@dataclass(frozen=True)
class Scenario:
    """The home, the request id of each call in ``CALLS``, and the approval of ``pay900``."""

    home: Home
    ids: dict[str, str]
    approval_id: str

    def name_of(self, request_id: str) -> str:
        return next(name for name, rid in self.ids.items() if rid == request_id)


def edited(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def bundle_dir(parent: Path, name: str, text: str) -> Path:
    directory = parent / name
    directory.mkdir()
    (directory / "agent.yaml").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Built once: every test here only reads the ledger (one test proves it)."""
    clock = FixedClock()
    home = init_home(tmp_path_factory.mktemp("impact") / "home", now=clock())
    ids: dict[str, str] = {}
    with (
        open_gate(home.path, principal=PRINCIPAL, clock=clock, durability="relaxed") as gate,
        gate.trace("Pay acme-supplies", bounds={"spend_cap": 10_000}),
    ):
        approval_id = ""
        for name, raw in CALLS.items():
            clock.advance(1)
            try:
                with gate.clearance(Intent.from_json(raw)) as cleared:
                    cleared.record_result({"ok": True})
                ids[name] = cleared.request_id
            except ApprovalRequired as exc:
                approval_id = exc.approval_id
                ids[name] = str(exc.decision["request_id"])
            except Denied as exc:
                ids[name] = str(exc.decision["request_id"])
        # The approval's follow-ups are approval entries, never decisions.
        gate.approve(approval_id, approver="user:alice", reason="invoice checked")
        gate.collect(approval_id)
    return Scenario(home, ids, approval_id)


@pytest.fixture(scope="module")
def bundles(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    example = (scenario.home.policy_dir / "agent.yaml").read_text(encoding="utf-8")
    parent = tmp_path_factory.mktemp("bundles")
    strict = edited(
        example,
        ("args.amount <= 500.0 &&", "args.amount <= 100.0 &&"),
        ("when: args.amount > 500.0", "when: args.amount > 100.0"),
    )
    loose = edited(
        example,
        ("args.amount <= 500.0 &&", "args.amount <= 1000.0 &&"),
        ("when: args.amount > 500.0", "when: args.amount > 1000.0"),
        (NO_DELETES, "  - id: deletes-allowed\n    effect: allow\n    actions: [delete_file]\n"),
    )
    return {
        "strict": bundle_dir(parent, "strict", strict + STRICT_RULES),
        "loose": bundle_dir(parent, "loose", loose),
        "same": bundle_dir(parent, "same", example),
        "broken": bundle_dir(parent, "broken", example + "\n  - id: bad\n    when: args.(\n"),
    }


def analyze(home: Home, candidate: Any, **options: Any) -> ImpactReport:
    key = derive_key(home.read_log_skey(), PROVENANCE_PURPOSE)
    with open_ledger(home) as ledger:
        return analyze_impact(ledger, candidate, provenance_key=key, **options)


def summary(report: ImpactReport, scenario: Scenario) -> list[tuple[str, ...]]:
    """Each change as (call, kind, transition, logged rules, candidate rules)."""
    return [
        (
            scenario.name_of(c.decision.request_id),
            c.kind,
            c.transition,
            ",".join(c.logged.rules),
            ",".join(c.candidate.rules),
        )
        for c in report.changes
    ]


def test_the_scenario_logged_what_the_example_bundle_decides(scenario: Scenario) -> None:
    with open_ledger(scenario.home) as ledger:
        stored = list(ledger.scan())
    decisions = {
        str(s.entry["request_id"]): s.entry for s in stored if s.entry["type"] == "decision"
    }
    assert len(decisions) == len(CALLS)
    for name, (effect, rules) in LOGGED.items():
        entry = decisions[scenario.ids[name]]
        assert (entry["effect"], [r["rule"] for r in entry["reasons"]]) == (effect, rules)
    assert decisions[scenario.ids["iban"]]["redacted"] is True
    assert decisions[scenario.ids["write"]]["facts"]["count"] == 6
    steps = [s.entry["status"] for s in stored if s.entry["type"] == "approval"]
    assert steps == ["pending", "vote", "approved", "collected"]


def test_a_stricter_bundle_lists_every_change_and_counts_them(
    scenario: Scenario, bundles: dict[str, Path]
) -> None:
    report = analyze(scenario.home, bundles["strict"])
    assert summary(report, scenario) == [
        ("delete", "rules", "deny->deny", "no-deletes", "no-deletes,no-deletes-ever"),
        (
            "pay120",
            "effect",
            "allow->approval_required",
            "payments-known-payees",
            "payments-over-cap-need-approval",
        ),
        ("write", "effect", "allow->deny", "files-in-sandbox", "no-writes-late-in-a-trace"),
    ]
    (blind,) = report.unverifiable
    assert blind.decision.request_id == scenario.ids["iban"]
    assert blind.reason == (
        "candidate rule no-foreign-ibans reads args.iban, which the log holds only as a "
        "salted digest"
    )
    assert (report.examined, report.unchanged) == (7, 3)
    assert report.by_transition == {
        "allow->approval_required": 1,
        "allow->deny": 1,
        "deny->deny": 1,
    }
    assert report.by_action == {"delete_file": 1, "pay_invoice": 1, "write_file": 1}
    assert report.by_candidate_rule == {
        "no-deletes": 1,
        "no-deletes-ever": 1,
        "no-writes-late-in-a-trace": 1,
        "payments-over-cap-need-approval": 1,
    }
    assert report.by_logged_rule == {
        "files-in-sandbox": 1,
        "no-deletes": 1,
        "payments-known-payees": 1,
    }
    assert report.candidate_digest == CelPolicyEngine.from_directory(bundles["strict"]).digest
    # The window is the whole log here, and it is named by log index.
    with open_ledger(scenario.home) as ledger:
        assert report.ledger_size == ledger.size()
        first = ledger.find("decision", scenario.ids["read"])[0].index
        last = ledger.find("decision", scenario.ids["write"])[0].index
    assert (report.first_index, report.last_index, report.last) == (first, last, DEFAULT_LAST)
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["counts"] == {"examined": 7, "unchanged": 3, "changed": 3, "unverifiable": 1}
    assert data["changes"][2]["candidate"]["reasons"] == [
        {"rule": "no-writes-late-in-a-trace", "message": "matched rule no-writes-late-in-a-trace"}
    ]


def test_a_looser_bundle_lists_deny_to_allow_and_approval_to_allow(
    scenario: Scenario, bundles: dict[str, Path]
) -> None:
    report = analyze(scenario.home, bundles["loose"])
    assert summary(report, scenario) == [
        ("delete", "effect", "deny->allow", "no-deletes", "deletes-allowed"),
        (
            "pay900",
            "effect",
            "approval_required->allow",
            "payments-over-cap-need-approval",
            "payments-known-payees",
        ),
    ]
    assert report.changes[1].decision.approval_id == scenario.approval_id
    assert report.changes[0].decision.approval_id is None
    # No candidate rule reads the redacted IBAN: that decision is evaluated, unchanged.
    assert report.unverifiable == ()
    assert (report.examined, report.unchanged) == (7, 5)
    assert report.by_transition == {"approval_required->allow": 1, "deny->allow": 1}


def test_the_unchanged_bundle_changes_nothing_loaded_or_from_its_directory(
    scenario: Scenario, bundles: dict[str, Path]
) -> None:
    engine = CelPolicyEngine.from_directory(scenario.home.policy_dir)
    reports = [
        analyze(scenario.home, bundles["same"]),
        analyze(scenario.home, str(scenario.home.policy_dir)),
        analyze(scenario.home, engine),
        analyze(scenario.home, engine.bundle),
    ]
    for report in reports:
        assert (report.examined, report.unchanged, report.changes, report.unverifiable) == (
            7,
            7,
            (),
            (),
        )
        assert report.to_json() == reports[0].to_json()


def test_the_last_window_takes_the_newest_decisions(
    scenario: Scenario, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    three = analyze(scenario.home, bundles["strict"], last=3)
    assert three.examined == 3
    assert [scenario.name_of(c.decision.request_id) for c in three.changes] == ["write"]
    assert [scenario.name_of(u.decision.request_id) for u in three.unverifiable] == ["iban"]
    with open_ledger(scenario.home) as ledger:
        assert three.first_index == ledger.find("decision", scenario.ids["pay900"])[0].index
    one = analyze(scenario.home, bundles["strict"], last=1)
    assert (one.examined, len(one.changes), one.last) == (1, 1, 1)
    everything = analyze(scenario.home, bundles["strict"], last=None)
    assert everything.examined == 7
    assert analyze(scenario.home, bundles["strict"], last=500).to_json() == {
        **everything.to_json(),
        "last": 500,
    }
    # Reading backwards one entry at a time finds the same windows.
    expected = everything.to_json()
    monkeypatch.setattr(policy_impact, "_SCAN_CHUNK", 1)
    for last in (1, 3, 7, 8):
        small = analyze(scenario.home, bundles["strict"], last=last)
        newest = [c for c in expected["changes"] if c["index"] >= (small.first_index or 0)]
        assert [c.to_json() for c in small.changes] == newest
        assert small.examined == min(last, 7)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="last must be a positive int"):
            analyze(scenario.home, bundles["strict"], last=bad)


def test_a_candidate_that_does_not_load_is_refused_with_the_loaders_message(
    scenario: Scenario, bundles: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(PolicyError) as loader:
        CelPolicyEngine.from_directory(bundles["broken"])
    with pytest.raises(PolicyError) as refused:
        analyze(scenario.home, bundles["broken"])
    assert str(refused.value) == str(loader.value)
    with pytest.raises(InputError, match="no such directory"):
        analyze(scenario.home, tmp_path / "missing")
    with pytest.raises(TypeError, match="candidate must be"):
        analyze(scenario.home, {"rules": []})


@pytest.mark.parametrize(
    ("when", "paths", "read"),
    [
        ("has(args.iban)", ["iban"], None),
        ("from_untrusted(args.iban)", ["iban"], None),
        ("carries_sensitive(args.card.number)", ["card.number"], None),
        ('args.iban.startsWith("DE")', ["iban"], "iban"),
        ('args.iban == "x"', ["iban"], "iban"),
        ('args.get("memo", "") == ""', ["iban"], None),
        ('args.get("iban", "") == ""', ["iban"], "iban"),
        ("size(args) > 1", ["iban"], "iban"),
        ("has(args.card.number)", ["card"], "card"),
        ('args.card.holder == "x"', ["card.number"], None),
        ('args.card.number == "x"', ["card"], "card"),
        ("from_untrusted(args.card)", ["card.number"], "card.number"),
        ('args.to == "x" && args.amount > 1.0', ["iban", "card"], None),
    ],
)
def test_which_uses_of_a_redacted_argument_count_as_reads(
    when: str, paths: list[str], read: str | None
) -> None:
    engine = CelPolicyEngine.from_document(
        {"version": 1, "rules": [{"id": "r", "effect": "deny", "actions": ["*"], "when": when}]}
    )
    (rule,) = engine.bundle.rules
    assert redacted_read(rule, paths) == read


# --- value provenance: redacted arguments the helpers answer, keyed fingerprints ------------


PROFILE = {"name": "Jane Doe", "passport": "P4366918", "card": {"number": "4111 1111 1111 1111"}}
CLEAN = "Hi Mark, flights LIS 12-14 May. Best, Jane"
LEAKY = "Flights LIS 12-14 May. Passport P4366918"
LEAK_RULE = """\
  - id: no-sensitive-values-to-others
    effect: deny
"""


@pytest.fixture
def assistant_home(tmp_path: Path) -> tuple[Home, dict[str, str]]:
    """The provenance example: a profile read, then a clean and a leaky mail (both redacted)."""
    clock = FixedClock()
    home = init_home(tmp_path / "home", now=clock())
    for old in home.policy_dir.iterdir():
        old.unlink()
    shutil.copy(EXAMPLES / "provenance/agent.yaml", home.policy_dir / "agent.yaml")
    with open_gate(
        home.path, principal="agent:assistant", clock=clock, durability="relaxed"
    ) as gate:

        @gate.governed("get_profile")
        def get_profile() -> dict[str, Any]:
            return PROFILE

        @gate.governed("send_email")
        def send_email(to: str, subject: str, body: str) -> str:
            return "sent"

        with gate.trace("Send my Lisbon itinerary to mark@travel.example"):
            get_profile()
            send_email("mark@travel.example", "Lisbon", CLEAN)
            with pytest.raises(Denied):
                send_email("mark@travel.example", "Lisbon", LEAKY)
        ids = {
            name: str(s.entry["request_id"])
            for name, s in zip(
                ("profile", "clean", "leaky"),
                (s for s in gate.ledger.scan() if s.entry["type"] == "decision"),
                strict=True,
            )
        }
    return home, ids


def test_provenance_helpers_on_redacted_arguments_are_answered_from_the_log(
    assistant_home: tuple[Home, dict[str, str]], tmp_path: Path
) -> None:
    home, ids = assistant_home
    example = (home.policy_dir / "agent.yaml").read_text(encoding="utf-8")
    same = analyze(home, home.policy_dir)
    assert (same.examined, same.unchanged) == (3, 3)
    # The leak rule turned into an allow rule matches the leaky mail only: the helper's
    # answers logged beside the redacted bodies (true for it, false for the clean one)
    # decide it, as they decided the live denial.
    lenient = edited(example, (LEAK_RULE, "  - id: leaks-are-fine\n    effect: allow\n"))
    report = analyze(home, bundle_dir(tmp_path, "lenient", lenient))
    assert [(c.decision.request_id, c.transition) for c in report.changes] == [
        (ids["leaky"], "deny->allow")
    ]
    assert report.changes[0].candidate.rules == ("email-is-allowed", "leaks-are-fine")
    assert report.unverifiable == ()
    # A rule that reads the body itself cannot be evaluated on a salted digest.
    nosy = example + (
        "\n  - id: no-passports\n    effect: deny\n    actions: [send_email]\n"
        "    when: args.body.contains('Passport')\n"
    )
    blind = analyze(home, bundle_dir(tmp_path, "nosy", nosy))
    assert [(u.decision.request_id, u.reason) for u in blind.unverifiable] == [
        (
            ids[name],
            "candidate rule no-passports reads args.body, which the log holds only as "
            "a salted digest",
        )
        for name in ("clean", "leaky")
    ]
    assert (blind.unchanged, blind.changes) == (1, ())


def test_keyed_fingerprints_without_the_key_are_unverifiable(
    assistant_home: tuple[Home, dict[str, str]],
) -> None:
    home, ids = assistant_home
    with open_ledger(home) as ledger:
        report = analyze_impact(ledger, home.policy_dir, provenance_key=None)
    assert [u.decision.request_id for u in report.unverifiable] == [ids["clean"], ids["leaky"]]
    for u in report.unverifiable:
        assert "keyed by the home's log key" in u.reason
        assert "candidate rule no-sensitive-values-to-others asks about provenance" in u.reason
    assert (report.unchanged, report.changes) == (1, ())


# --- entries the log should not hold ------------------------------------------------------


def test_a_redacted_decision_whose_bundle_is_not_logged_and_a_malformed_one(
    scenario: Scenario, tmp_path: Path
) -> None:
    home = Home.load(shutil.copytree(scenario.home.path, tmp_path / "copy"))
    with open_ledger(home) as ledger:
        (logged,) = ledger.find("decision", scenario.ids["iban"])
        orphan = {**logged.entry, "request_id": "r-orphan", "policy_digest": "sha256:" + "0" * 64}
        ledger.append(orphan)
        report = analyze_impact(ledger, home.policy_dir, last=1)
        (blind,) = report.unverifiable
        assert blind.decision.request_id == "r-orphan"
        assert f"no policy entry for bundle sha256:{'0' * 64}" in blind.reason
        index = ledger.append({**logged.entry, "request_id": "r-bad", "effect": "maybe"})
        with pytest.raises(TamperError, match=f"decision entry {index} is malformed") as bad:
            analyze_impact(ledger, home.policy_dir, last=1)
        assert bad.value.index == index


# --- the command ------------------------------------------------------------------------


def clearance(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLEARANCE_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "clearance", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_the_command_reports_like_the_library_and_writes_nothing(
    scenario: Scenario, bundles: dict[str, Path]
) -> None:
    home = str(scenario.home.path)
    before = snapshot(scenario.home.path)
    as_json = clearance("policy", "impact", str(bundles["strict"]), "--home", home, "--json")
    err = assert_clean_error(as_json, code=1)
    assert f"3 of 7 decisions would change under the bundle in {bundles['strict']}" in err
    assert json.loads(as_json.stdout) == analyze(scenario.home, bundles["strict"]).to_json()

    table = clearance("policy", "impact", str(bundles["strict"]), "--home", home)
    assert table.returncode == 1, table.stderr
    for text in (
        "no-writes-late-in-a-trace",
        "(other rules)",
        "unverifiable",
        scenario.ids["iban"],
        "by change: allow->approval_required 1, allow->deny 1, deny->deny 1",
        "by action: delete_file 1, pay_invoice 1, write_file 1",
    ):
        assert text in table.stdout
    assert "7 decisions examined (log entries " in table.stdout
    assert ": 3 unchanged, 3 would change, 1 unverifiable" in table.stdout

    same = clearance("policy", "impact", str(bundles["same"]), "--home", home, "--last", "2")
    assert same.returncode == 0, same.stderr
    assert "2 decisions examined" in same.stdout
    assert ": 2 unchanged, 0 would change, 0 unverifiable" in same.stdout
    assert snapshot(scenario.home.path) == before


def test_the_command_refuses_a_bad_directory_with_the_loaders_message(
    scenario: Scenario, bundles: dict[str, Path], tmp_path: Path
) -> None:
    home = str(scenario.home.path)
    with pytest.raises(PolicyError) as loader:
        CelPolicyEngine.from_directory(bundles["broken"])
    broken = clearance("policy", "impact", str(bundles["broken"]), "--home", home)
    err = assert_clean_error(broken, code=2)
    assert f"the bundle in {bundles['broken']} is INVALID: {loader.value}" in err
    missing = clearance("policy", "impact", str(tmp_path / "nope"), "--home", home)
    assert "nope: no such directory" in assert_clean_error(missing, code=2)


def test_the_commands_options() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["policy", "impact", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert f"(default {DEFAULT_LAST})" in " ".join(shown.output.split())
    zero = runner.invoke(app, ["policy", "impact", ".", "--last", "0"])
    assert zero.exit_code == 2
