"""``clearance bench``: decision latency, governed-call latency and ledger throughput.

Everything runs in this process on a temporary home with the SQLite ledger.
Wall-clock time is read here, at the outermost layer (``time.perf_counter_ns``
around each measured call); the code being measured never reads a clock for
timing.

What is measured:

* **decision** — :func:`clearance._bench.policy.decision_benchmark`: one
  :meth:`~clearance._internal.policy.cel_engine.CelPolicyEngine.evaluate` on a bundle of
  300 rules over 30 tools.
* **governed** — ``with gate.clearance(intent): pass`` end to end on the
  example bundle: decision, decision entry, the in-process capability (no
  signature: see :mod:`clearance._internal.gate.governed_call`), the empty body
  and the outcome entry. Both durability modes: ``durable`` fsyncs the decision's
  commit (the outcome's fsync is deferred to the next decision or checkpoint),
  ``relaxed`` leaves commits in the OS page cache (docs/design.md §7). ``fsync``
  is one append + ``fdatasync`` of 4 KiB on the same file system: the floor of a
  durable call. Each mode
  warms up, then times ``iterations`` calls ``repeats`` times; p50/p99 are
  the medians over repeats, calls/s is iterations over the wall time of a run.
* **executor** — the cross-process path in one process (relaxed): ``gate.authorize``
  with a signed EdDSA grant, then ``gate.execute`` verifying it with the durable
  ``jti`` store; ``gate.clearance`` itself uses an in-process capability instead.
* **trace length** — the relaxed governed call at trace lengths 1, 1,000 and
  10,000 (calls already decided in the same trace), timed round-robin across
  three traces: trace facts are a cached fold, so the three should stay within
  1.5× of each other.
* **breakdown** — the same pipeline executed phase by phase with the same
  components, each phase timed on its own, to show where a governed call
  spends its time (what remains is the gate's own bookkeeping).
* **floor** — :mod:`clearance._bench.floor`: a bare SQLite commit of a decision-sized
  row, added to the digest and evaluation phases: what a relaxed call cannot skip.
* **ledger** — :mod:`clearance._bench.ledger`: appends/s with 1 and 8 writers in
  both modes, proof p50 at growing sizes, and a full audit of a 10^6-entry log
  (10^6 runs are skipped with ``--quick``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from clearance._bench.floor import sqlite_insert_baseline
from clearance._internal.home import init_home
from clearance._internal.intent import Intent
from clearance._internal.limits import Durability

PHASES = (
    "intent digest",
    "facts",
    "evaluation",
    "decision append",
    "outcome append",
)
"""The phases of an in-process governed call, in order (see :func:`phase_breakdown`).

There is no signing or verification phase: ``gate.clearance`` authorizes its body with
an in-process capability (:mod:`clearance._internal.gate.governed_call`); grants for
other processes are measured by :func:`executor_benchmark`.
"""

_PRINCIPAL = "agent:ops-bot"


def _intent(n: int) -> Intent:
    return Intent.create(
        principal=_PRINCIPAL,
        action="read_file",
        args={"path": f"notes/report-{n % 97}.md"},
        purpose="benchmark",
    )


def _percentile(sorted_ns: list[int], fraction: float) -> float:
    index = min(len(sorted_ns) - 1, max(0, round(fraction * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


def governed_benchmark(
    home: Path, mode: Durability, *, iterations: int, repeats: int, warmup: int
) -> dict[str, float]:
    """p50/p99 (µs) and calls/s of ``with gate.clearance(intent): pass`` in ``mode``."""
    from clearance._internal.wiring import open_gate

    p50s, p99s, rates = [], [], []
    with open_gate(home, principal=_PRINCIPAL, durability=mode) as gate:
        for n in range(warmup):
            with gate.clearance(_intent(n)):
                pass
        for _ in range(repeats):
            intents = [_intent(n) for n in range(iterations)]
            samples: list[int] = []
            run_started = time.perf_counter_ns()
            for intent in intents:
                started = time.perf_counter_ns()
                with gate.clearance(intent):
                    pass
                samples.append(time.perf_counter_ns() - started)
            elapsed = (time.perf_counter_ns() - run_started) / 1e9
            samples.sort()
            p50s.append(_percentile(samples, 0.50))
            p99s.append(_percentile(samples, 0.99))
            rates.append(iterations / elapsed)
    return {
        "p50_us": round(statistics.median(p50s), 1),
        "p99_us": round(statistics.median(p99s), 1),
        "per_s": round(statistics.median(rates), 1),
    }


def executor_benchmark(home: Path, *, iterations: int) -> dict[str, float]:
    """p50 µs of the cross-process path in one process, relaxed: ``gate.authorize`` (decision,
    ledger, signed EdDSA grant) then ``gate.execute`` (verification, durable jti store,
    empty body, outcome), the two halves timed together."""
    from clearance._internal.wiring import open_gate

    samples: list[int] = []
    with (
        open_gate(home, principal=_PRINCIPAL, durability="relaxed") as gate,
        gate.trace("Summarize the reports", opened_by="clearance bench") as trace,
    ):
        for n in range(iterations + 20):
            started = time.perf_counter_ns()
            auth = gate.authorize(_intent(n), trace=trace)
            gate.execute(auth.grant, auth.intent, lambda: None)
            if n >= 20:
                samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return {"p50_us": round(_percentile(samples, 0.50), 1)}


TRACE_LENGTHS: tuple[int, ...] = (1, 1000, 10_000)
"""Trace lengths at which :func:`trace_length_benchmark` times a governed call."""


def trace_length_benchmark(home: Path, *, samples: int) -> dict[int, float]:
    """p50 µs of a relaxed governed call at each of :data:`TRACE_LENGTHS`.

    One trace per length is filled with governed calls until it holds ``length - 1``
    decisions; then calls are timed round-robin across the traces (``samples`` each,
    every trace growing by one per round), so all lengths see the same machine noise.
    """
    from clearance._internal.wiring import open_gate

    timed: dict[int, list[int]] = {length: [] for length in TRACE_LENGTHS}
    with open_gate(home, principal=_PRINCIPAL, durability="relaxed") as gate:
        traces = {
            length: gate.open_trace("Summarize the reports", opened_by="clearance bench")
            for length in TRACE_LENGTHS
        }
        for length, trace in traces.items():
            for n in range(length - 1):
                with gate.clearance(_intent(n), trace=trace):
                    pass
        for n in range(samples):
            for length, trace in traces.items():
                started = time.perf_counter_ns()
                with gate.clearance(_intent(n), trace=trace):
                    pass
                timed[length].append(time.perf_counter_ns() - started)
    return {length: round(_percentile(sorted(ns), 0.50), 1) for length, ns in timed.items()}


class _Phases:
    """Per-call phase timings, filled by the wrappers :func:`phase_breakdown` installs."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}
        self.calls: list[dict[str, int]] = []

    def add(self, phase: str, nanoseconds: int) -> None:
        self.current[phase] = self.current.get(phase, 0) + nanoseconds

    def wrap(self, phase: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed into ``phase`` (or into ``phase(*args)`` when ``phase`` is callable)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                name = phase(*args) if callable(phase) else phase
                self.add(name, time.perf_counter_ns() - started)

        return timed


class _TimedLedger:
    """Delegates to a ledger, timing appends (by entry type) and trace reads."""

    def __init__(self, inner: Any, phases: _Phases) -> None:
        self._inner = inner
        self.append = phases.wrap(
            lambda entry: {"decision": "decision append", "execution": "outcome append"}.get(
                str(entry.get("type")), "other append"
            ),
            inner.append,
        )
        self.last_in_trace = phases.wrap("facts", inner.last_in_trace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def phase_breakdown(home: Path, mode: Durability, *, iterations: int) -> dict[str, float]:
    """Median µs of each phase inside real governed calls, and of the rest (bookkeeping).

    A profiling run: the gate is built from the home's components as
    :func:`clearance._internal.wiring.open_gate` builds it, with its ledger wrapped and
    the functions it calls (:func:`~clearance._internal.gate.facts.for_request`,
    :func:`~clearance._internal.gate.decide.decide`, :meth:`Intent.with_context`, which
    validates the contextualized intent, and its digest) temporarily replaced
    by timing wrappers. ``bookkeeping`` is each call's total minus its phases.
    """
    from clearance._internal.gate import authorizer
    from clearance._internal.gate.core import Gate
    from clearance._internal.grants.jti_store import SQLiteReplayGuard
    from clearance._internal.grants.keys import GrantKeyRing
    from clearance._internal.home import Home
    from clearance._internal.policy.cel_engine import CelPolicyEngine
    from clearance._internal.sealing import JWKS_PURPOSE, derive_key
    from clearance._internal.wiring import open_ledger

    located = Home.load(home)
    phases = _Phases()
    original_with_context = Intent.with_context

    def contextualized(intent: Intent, **changes: Any) -> Intent:
        result = original_with_context(intent, **changes)
        _ = result.digest  # computed here once and cached, instead of inside _authorize
        return result

    # The gate's collaborators call these through their module namespaces; the wrappers
    # time the real calls.
    targets: tuple[tuple[Any, str, str], ...] = (
        (authorizer, "for_request", "facts"),
        (authorizer, "decide", "evaluation"),
    )
    saved = [(module, name, getattr(module, name)) for module, name, _ in targets]
    ledger = open_ledger(located, durability=mode)
    gate = Gate(
        policy=CelPolicyEngine.from_directory(located.policy_dir),
        ledger=cast(Any, _TimedLedger(ledger, phases)),
        keyring=GrantKeyRing.load(
            located.grant_key_dir, seal_key=derive_key(located.read_log_skey(), JWKS_PURPOSE)
        ),
        replay_guard=SQLiteReplayGuard.open(located.replay_path, mode),
        issuer=located.settings.issuer,
        audience=located.settings.audience,
        principal=_PRINCIPAL,
    )
    try:
        for module, name, phase in targets:
            setattr(module, name, phases.wrap(phase, getattr(module, name)))
        Intent.with_context = phases.wrap("intent digest", contextualized)  # type: ignore[method-assign]
        for n in range(iterations + 20):
            intent = _intent(n)
            phases.current = {}
            started = time.perf_counter_ns()
            with gate.clearance(intent):
                pass
            total = time.perf_counter_ns() - started
            if n >= 20:  # the first calls log the policy and key entries and warm caches
                phases.calls.append({**phases.current, "total": total})
    finally:
        Intent.with_context = original_with_context  # type: ignore[method-assign]
        for module, name, original in saved:
            setattr(module, name, original)
        gate.close()
    result: dict[str, float] = {}
    for phase in PHASES:
        result[phase] = round(statistics.median(c.get(phase, 0) for c in phases.calls) / 1e3, 1)
    result["bookkeeping"] = round(
        statistics.median(
            c["total"] - sum(v for k, v in c.items() if k != "total") for c in phases.calls
        )
        / 1e3,
        1,
    )
    result["total"] = round(statistics.median(c["total"] for c in phases.calls) / 1e3, 1)
    return result


def ledger_benchmarks(directory: Path, *, quick: bool) -> dict[str, Any]:
    """The ledger numbers from :mod:`clearance._bench.ledger`, flattened into keys."""
    from clearance._bench.ledger import (
        bench_appends,
        bench_batched_appends,
        bench_proofs,
        bench_verify,
    )

    results: dict[str, Any] = {}
    appends = bench_appends(directory, count=240 if quick else 2000, repeats=1 if quick else 3)
    for key, value in appends.items():
        mode, writers = key.split("/")
        results[f"ledger_appends_per_s_{mode}_{writers}"] = round(value["appends_per_s"], 1)
        results[f"ledger_entries_per_commit_{mode}_{writers}"] = round(
            value["entries_per_commit"], 2
        )
    batched = bench_batched_appends(
        directory, count=2000 if quick else 20_000, repeats=1 if quick else 3
    )
    for mode, rate in batched.items():
        results[f"ledger_appends_per_s_{mode}_batched"] = round(rate, 1)
    sizes = (10**4, 10**5) if quick else (10**4, 10**5, 10**6)
    proofs = bench_proofs(directory, sizes=sizes, samples=60 if quick else 300)
    for size, value in proofs.items():
        exponent = len(str(size)) - 1
        results[f"ledger_inclusion_p50_ms_1e{exponent}"] = round(value["inclusion_p50_ms"], 3)
        results[f"ledger_consistency_p50_ms_1e{exponent}"] = round(value["consistency_p50_ms"], 3)
    if not quick:
        verified = bench_verify(directory, size=10**6)
        results["ledger_verify_s_1e6"] = round(verified["seconds"], 2)
        results["ledger_verify_entries_per_s_1e6"] = round(verified["entries_per_s"], 0)
        realistic = bench_verify(directory, size=10**6, decisions=True)
        results["ledger_verify_s_1e6_decisions"] = round(realistic["seconds"], 2)
    return results


def crypto_baseline(iterations: int) -> dict[str, float]:
    """p50 µs of a raw OpenSSL Ed25519 sign and verify, measured alongside: a yardstick.

    Machine speed drifts (on shared VMs by half within minutes); dividing the
    governed-call latency by this fixed piece of native work gives a ratio that
    is comparable across runs and machines. (Grants themselves are signed and
    verified with libsodium, see :mod:`clearance._internal.grants.ed25519`, which is faster.)
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = b"x" * 300
    signs, verifies = [], []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        signature = key.sign(message)
        signs.append(time.perf_counter_ns() - started)
        started = time.perf_counter_ns()
        public.verify(signature, message)
        verifies.append(time.perf_counter_ns() - started)
    return {
        "sign_p50_us": round(statistics.median(signs) / 1000, 1),
        "verify_p50_us": round(statistics.median(verifies) / 1000, 1),
    }


def fsync_baseline(directory: Path, iterations: int) -> float:
    """p50 µs of appending 4 KiB to a file and ``fdatasync``-ing it: one durable commit's floor.

    Measured in ``directory`` (the benchmark's ledger file system), alongside the other
    numbers: a durable governed call pays exactly one of these on its critical path (the
    decision entry; the outcome's fsync is deferred, :mod:`clearance._internal.ledger.sqlite`),
    so ``governed_durable_over_fsync`` reports the rest in yardsticks.
    """
    sync = getattr(os, "fdatasync", os.fsync)
    block = b"\x5a" * 4096
    samples = []
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(iterations):
            started = time.perf_counter_ns()
            os.write(fd, block)
            sync(fd)
            samples.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
        (directory / "fsync-probe").unlink()
    return round(statistics.median(samples) / 1000, 1)


def collect(*, quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run every benchmark and return the flat result object (what ``--json`` prints)."""
    from clearance._bench.policy import decision_benchmark

    results: dict[str, Any] = {"quick": quick}
    progress("decision: 300 rules over 30 tools")
    decision = decision_benchmark(
        1000 if quick else 5000, rules=300, tools=30, repeats=3 if quick else 5
    )
    results["decision_p50_us"] = decision["p50_us"]
    results["decision_p99_us"] = decision["p99_us"]
    results["decision_per_s"] = round(1e6 / decision["p50_us"], 1)
    iterations, repeats, warmup = (100, 3, 30) if quick else (1000, 5, 200)
    with tempfile.TemporaryDirectory(prefix="clearance-bench-") as tmp:
        root = Path(tmp)
        home = root / "home"
        init_home(home, now=time.time())
        modes: tuple[Durability, ...] = ("durable", "relaxed")
        for mode in modes:
            progress(f"governed calls, {mode}")
            governed = governed_benchmark(
                home, mode, iterations=iterations, repeats=repeats, warmup=warmup
            )
            results[f"governed_p50_us_{mode}"] = governed["p50_us"]
            results[f"governed_p99_us_{mode}"] = governed["p99_us"]
            results[f"governed_per_s_{mode}"] = governed["per_s"]
        baseline = crypto_baseline(500 if quick else 3000)
        results["ed25519_sign_p50_us"] = baseline["sign_p50_us"]
        results["ed25519_verify_p50_us"] = baseline["verify_p50_us"]
        crypto = max(baseline["sign_p50_us"] + baseline["verify_p50_us"], 1e-9)
        for mode in modes:
            results[f"governed_over_crypto_{mode}"] = round(
                results[f"governed_p50_us_{mode}"] / crypto, 2
            )
        results["fsync_p50_us"] = fsync_baseline(root, 50 if quick else 300)
        # What a durable call costs beyond its one fsync, in yardsticks (target ≤ 0.5).
        results["governed_durable_over_fsync"] = round(
            (results["governed_p50_us_durable"] - results["fsync_p50_us"]) / crypto, 2
        )
        progress("executor path: signed grant, verification, jti store")
        executor = executor_benchmark(home, iterations=200 if quick else 1000)
        results["executor_p50_us_relaxed"] = executor["p50_us"]
        results["executor_over_crypto_relaxed"] = round(executor["p50_us"] / crypto, 2)
        progress("governed calls at trace lengths " + ", ".join(map(str, TRACE_LENGTHS)))
        by_length = trace_length_benchmark(home, samples=200 if quick else 1000)
        for length, p50 in by_length.items():
            results[f"trace_p50_us_{length}"] = p50
        results["trace_p50_ratio_max"] = round(
            max(by_length.values()) / max(min(by_length.values()), 1e-9), 2
        )
        for mode in modes:
            progress(f"phase breakdown, {mode}")
            phases = phase_breakdown(home, mode, iterations=60 if quick else 500)
            for phase, micros in phases.items():
                results[_phase_key(phase, mode)] = micros
        # The floor of a relaxed call (clearance._bench.floor): digest, evaluation and a
        # bare commit of the decision row; what is left of the target for everything else.
        results["sqlite_insert_p50_us"] = sqlite_insert_baseline(root, 2000 if quick else 10000)
        floor = round(
            results[_phase_key("intent digest", "relaxed")]
            + results[_phase_key("evaluation", "relaxed")]
            + results["sqlite_insert_p50_us"],
            1,
        )
        results["floor_p50_us_relaxed"] = floor
        results["floor_over_crypto_relaxed"] = round(floor / crypto, 2)
        results["governed_over_floor_relaxed"] = round(
            results["governed_p50_us_relaxed"] / max(floor, 1e-9), 2
        )
        progress("ledger: appends, proofs" + ("" if quick else ", audit of 10^6 entries"))
        ledger_dir = root / "ledger"
        ledger_dir.mkdir()
        results.update(ledger_benchmarks(ledger_dir, quick=quick))
    return results


def _phase_key(phase: str, mode: str) -> str:
    return f"phase_{phase.replace(' ', '_')}_us_{mode}"


def _tables(results: dict[str, Any], console: Console) -> None:
    main = Table(title="Latency", title_justify="left")
    for name in ("measure", "p50 µs", "p99 µs", "calls/s", "target p50"):
        main.add_column(name, justify="left" if name == "measure" else "right")
    main.add_row(
        "decision (300 rules, 30 tools)",
        f"{results['decision_p50_us']:.1f}",
        f"{results['decision_p99_us']:.1f}",
        f"{results['decision_per_s']:.0f}",
        "≤ 60",
    )
    crypto = results["ed25519_sign_p50_us"] + results["ed25519_verify_p50_us"]
    for mode in ("relaxed", "durable"):
        main.add_row(
            f"governed call, {mode} ({results[f'governed_over_crypto_{mode}']:.2f}× yardstick)",
            f"{results[f'governed_p50_us_{mode}']:.1f}",
            f"{results[f'governed_p99_us_{mode}']:.1f}",
            f"{results[f'governed_per_s_{mode}']:.0f}",
            "≤ 0.5× yardstick" if mode == "relaxed" else "",
        )
    main.add_row(
        "authorize + execute (signed grant), relaxed",
        f"{results['executor_p50_us_relaxed']:.1f}",
        "",
        "",
        "",
    )
    main.add_row("yardstick: OpenSSL Ed25519 sign + verify", f"{crypto:.1f}", "", "", "")
    main.add_row(
        f"floor: digest + evaluation + bare commit ({results['floor_over_crypto_relaxed']:.2f}× "
        f"yardstick; relaxed call = {results['governed_over_floor_relaxed']:.2f}× floor)",
        f"{results['floor_p50_us_relaxed']:.1f}",
        "",
        "",
        "",
    )
    main.add_row(
        "one fsync (append 4 KiB + fdatasync); durable call beyond it: "
        f"{results['governed_durable_over_fsync']:.2f}× yardstick",
        f"{results['fsync_p50_us']:.1f}",
        "",
        "",
        "durable ≤ fsync + 0.5×",
    )
    console.print(main)
    lengths = Table(title="Governed call (relaxed) by trace length", title_justify="left")
    lengths.add_column("calls already in the trace", justify="right")
    lengths.add_column("p50 µs", justify="right")
    for length in TRACE_LENGTHS:
        lengths.add_row(f"{length:,}", f"{results[f'trace_p50_us_{length}']:.1f}")
    lengths.add_row("max / min", f"{results['trace_p50_ratio_max']:.2f} (target ≤ 1.5)")
    console.print(lengths)
    phases = Table(
        title="Where a governed call spends its time (median µs per phase, profiled run)",
        title_justify="left",
    )
    phases.add_column("phase")
    modes = ("relaxed", "durable")
    for mode in modes:
        phases.add_column(mode, justify="right")
        phases.add_column("share", justify="right")
    for phase in (*PHASES, "bookkeeping", "total"):
        cells = []
        for mode in modes:
            value = results[_phase_key(phase, mode)]
            total = max(results[_phase_key("total", mode)], 1e-9)
            cells += [f"{value:.1f}", f"{100 * value / total:.0f}%"]
        label = "gate bookkeeping (the rest)" if phase == "bookkeeping" else phase
        phases.add_row(label, *cells)
    console.print(phases)
    ledger = Table(title="Ledger (SQLite)", title_justify="left")
    ledger.add_column("measure")
    ledger.add_column("value", justify="right")
    for key, value in results.items():
        if key.startswith("ledger_"):
            ledger.add_row(key.removeprefix("ledger_").replace("_", " "), str(value))
    console.print(ledger)


def run_bench(*, quick: bool, as_json: bool, console: Console) -> dict[str, Any]:
    """Run the benchmarks; print one JSON object or rich tables; return the results."""
    status = Console(stderr=True, highlight=False)

    def progress(message: str) -> None:
        if not as_json:
            status.print(f"[dim]… {message}[/]")

    results = collect(quick=quick, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(results, sort_keys=True) + "\n")
    else:
        _tables(results, console)
    return results
