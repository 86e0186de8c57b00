"""PolicySource: a gate's policy is normalized once, and no policy means deny everything."""

from __future__ import annotations

from pathlib import Path

from clearance._internal.policy.cel_engine import DENY_ALL_DIGEST
from clearance._internal.policy.reload import PolicyHolder
from clearance._internal.policy.source import PolicySource, StaticPolicy, as_policy_source

from .support import engine_from, request, write

GOOD = "version: 1\nrules:\n  - {id: allow-all, effect: allow}\n"


def test_no_policy_is_the_deny_all_engine() -> None:
    engine = as_policy_source(None).engine_at(0.0)
    assert engine.digest == DENY_ALL_DIGEST
    assert engine.evaluate(request()).effect == "deny"


def test_an_engine_becomes_a_static_source(tmp_path: Path) -> None:
    engine = engine_from(tmp_path, GOOD)
    source = as_policy_source(engine)
    assert isinstance(source, StaticPolicy)
    assert source.engine_at(0.0) is engine
    assert source.engine_at(1e9) is engine


def test_a_source_is_used_as_it_is(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    holder = PolicyHolder.load(tmp_path)
    assert isinstance(holder, PolicySource)
    assert as_policy_source(holder) is holder
    assert holder.engine_at(0.0) is holder.engine
