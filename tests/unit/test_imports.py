"""What importing clearance loads: import-time dependencies are part of the boundary.

An executor imports :mod:`clearance.executor` and must get the grant verifier and
nothing of the gate (no policy engine, YAML, ledger or command line). ``import
clearance`` must load no implementation until a name is used. Each check runs in
a fresh interpreter, because this test process has long since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Module name prefixes an executor must never load (each matches the module and
# its submodules).
NOT_IN_EXECUTOR = (
    "yaml",
    "cel",
    "typer",
    "rich",
    "jwt",
    "clearance._internal.ledger",
    "clearance._internal.policy",
    "clearance._internal.gate",
    "clearance._cli",
)
# What a bare ``import clearance`` must not load before a name is used.
NOT_ON_IMPORT = ("cel", "yaml", "typer", "rich", "clearance._internal.ledger.sqlite")


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _clean_env() -> dict[str, str]:
    # Under `make test` coverage measures subprocesses through a .pth hook keyed
    # on these variables, and coverage itself imports sqlite3; measure the plain
    # interpreter an executor runs.
    return {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}


def _importtime(code: str) -> list[str]:
    """The modules ``python -X importtime -c code`` imports, in import order."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_clean_env(),
    )
    modules = []
    for line in result.stderr.splitlines():
        # "import time: <self us> | <cumulative us> | <indent><module>"
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                modules.append(name)
    assert modules, result.stderr
    return modules


def _loaded_after(code: str) -> set[str]:
    """``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_clean_env(),
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_executor_loads_only_the_verifier() -> None:
    modules = _importtime("import clearance.executor")
    assert "clearance.executor" in modules
    assert "clearance._internal.grants.token" in modules
    loaded = [m for m in modules if _matches(m, NOT_IN_EXECUTOR)]
    assert not loaded, f"clearance.executor imports {loaded}"
    # The replay store is resolved on first use, so an executor with its own
    # store never loads sqlite3.
    assert not [m for m in modules if _matches(m, ("sqlite3", "_sqlite3"))]


def test_using_every_executor_name_still_loads_no_gate_code() -> None:
    modules = _importtime("import clearance.executor as e\nfor name in e.__all__: getattr(e, name)")
    assert "clearance._internal.grants.jti_store" in modules
    loaded = [m for m in modules if _matches(m, NOT_IN_EXECUTOR)]
    assert not loaded, f"clearance.executor imports {loaded}"


def test_import_clearance_loads_no_implementation() -> None:
    loaded = _loaded_after("import clearance")
    assert not [m for m in loaded if _matches(m, NOT_ON_IMPORT)]
    assert not [m for m in loaded if m.startswith("clearance._internal")]


@pytest.mark.parametrize(
    ("name", "must_not_load"),
    [
        ("Error", NOT_ON_IMPORT),
        ("verify_grant", NOT_ON_IMPORT),
        ("Intent", NOT_ON_IMPORT),
    ],
)
def test_a_name_loads_only_what_it_needs(name: str, must_not_load: tuple[str, ...]) -> None:
    loaded = _loaded_after(f"import clearance\nclearance.{name}")
    assert not [m for m in loaded if _matches(m, must_not_load)]


def test_the_gate_loads_on_first_use() -> None:
    # The lazy map really resolves: using open_gate brings in the ledger.
    loaded = _loaded_after("import clearance\nclearance.open_gate")
    assert "clearance._internal.wiring" in loaded
