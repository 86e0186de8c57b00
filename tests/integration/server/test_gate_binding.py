"""In process: what the gate gained for a multi-principal service (the runtime API uses
it): traces opened for one principal, explicit parents proven from the ledger, and an
explicit policy reload (fail-closed rules 2 and 11)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance import BindingError, Gate, PolicyError, init_home, open_gate

READ = {"action": "read_file", "args": {"path": "a"}}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Gate]:
    init_home(tmp_path / "home", now=time.time())
    gate = open_gate(tmp_path / "home", multi_principal=True, durability="relaxed")
    try:
        yield gate
    finally:
        gate.close()


def test_a_trace_opened_for_a_principal_takes_only_its_intents(service: Gate) -> None:
    handle = service.open_trace("read a", principal="agent:a")
    entry = service.ledger.find("trace", handle.trace_id)[0].entry
    assert entry["principal"] == "agent:a"
    service.authorize({**READ, "principal": "agent:a"}, trace=handle)
    with pytest.raises(BindingError, match="opened for principal 'agent:a'"):
        service.authorize({**READ, "principal": "agent:b"}, trace=handle)
    resumed = service.resume_trace(handle.trace_id, principal="agent:a")
    with pytest.raises(BindingError, match="opened for principal"):
        service.authorize({**READ, "principal": "agent:b"}, trace=resumed)
    with pytest.raises(BindingError, match="not opened for principal"):
        service.resume_trace(handle.trace_id, principal="agent:b")


def test_a_trace_opened_without_a_principal_keeps_its_entry_and_is_not_for_anyone(
    service: Gate,
) -> None:
    handle = service.open_trace("anything")
    assert "principal" not in service.ledger.find("trace", handle.trace_id)[0].entry
    with pytest.raises(BindingError):
        service.resume_trace(handle.trace_id, principal="agent:a")


def test_a_single_principal_gate_opens_traces_for_itself_only(tmp_path: Path) -> None:
    init_home(tmp_path / "home", now=time.time())
    with open_gate(tmp_path / "home", principal="agent:a", durability="relaxed") as gate:
        gate.open_trace("mine", principal="agent:a")
        with pytest.raises(BindingError, match="bound to 'agent:a'"):
            gate.open_trace("theirs", principal="agent:b")


def test_an_explicit_parent_must_be_a_decision_of_the_same_trace(service: Gate) -> None:
    handle = service.open_trace("read", principal="agent:a")
    parent = service.authorize({**READ, "principal": "agent:a"}, trace=handle)
    child = service.authorize(
        {**READ, "principal": "agent:a"}, trace=handle, parent=parent.request_id
    )
    assert child.intent.parent_id == parent.request_id
    entry = service.ledger.get(child.decision_index).entry
    assert entry["facts"]["depth"] == 1
    assert entry["parent_index"] == parent.decision_index
    grandchild = service.authorize(
        {**READ, "principal": "agent:a", "parent_id": child.request_id},
        trace=handle,
        parent=child.request_id,
    )
    assert service.ledger.get(grandchild.decision_index).entry["facts"]["depth"] == 2

    size = service.ledger.size()
    other = service.open_trace("other", principal="agent:a")
    size += 1
    for kwargs, match in (
        ({"trace": other, "parent": parent.request_id}, "not a request of trace"),
        ({"trace": handle, "parent": "r0000000000000000deadbeef"}, "not a request in the ledger"),
        ({"parent": parent.request_id}, "only together with its trace"),
    ):
        with pytest.raises(BindingError, match=match):
            service.authorize({**READ, "principal": "agent:a"}, **kwargs)
    with pytest.raises(BindingError, match="intent names parent"):
        service.authorize(
            {**READ, "principal": "agent:a", "parent_id": child.request_id},
            trace=handle,
            parent=parent.request_id,
        )
    assert service.ledger.size() == size  # nothing was decided or logged


def test_reload_policy_activates_new_files_and_keeps_the_last_good_bundle(
    service: Gate, tmp_path: Path
) -> None:
    policies = tmp_path / "home" / "policies"
    before = service.engine.digest
    for file in policies.iterdir():
        file.unlink()
    (policies / "main.yaml").write_text("version: 1\nrules: [{id: r, effect: allow}]\n")
    after = service.reload_policy()
    assert after != before
    assert service.engine.digest == after
    (policies / "main.yaml").write_text("version: 1\nrules: [{id: r, effect: maybe}]\n")
    with pytest.raises(PolicyError, match=r"main\.yaml"):
        service.reload_policy()
    assert service.engine.digest == after
