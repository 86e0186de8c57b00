"""Every public name is intended (the rule of httpx's ``tests/test_exported_members.py``).

For each public module, a name that does not start with an underscore and can be
read as an attribute is either listed in ``__all__`` or is an import this file
excludes by name (a submodule, or a typing helper). Every name in ``__all__``
resolves and has a docstring, and ``__all__`` is sorted. A module under
``src/clearance`` outside the private packages is public, so it must be listed
here: a new top-level module is a deliberate act.
"""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest

import clearance

# Public module -> non-underscore attributes it may carry without exporting them.
# These are imports, not API: ``TYPE_CHECKING`` guards the type-only imports,
# ``annotations`` is the ``from __future__`` feature, ``Any`` annotates errors.
# Submodules appear as attributes of the package once imported; they are checked
# separately (they must be public modules themselves).
EXCLUDED: dict[str, frozenset[str]] = {
    "clearance": frozenset({"TYPE_CHECKING"}),
    "clearance.client": frozenset(),
    "clearance.errors": frozenset({"TYPE_CHECKING", "annotations", "Any"}),
    "clearance.executor": frozenset({"TYPE_CHECKING"}),
    "clearance.integrations": frozenset(),
    "clearance.integrations.mcp": frozenset({"annotations"}),
    "clearance.integrations.claude_code": frozenset(),
    "clearance.integrations.claude_agent_sdk": frozenset(
        {"TYPE_CHECKING", "annotations", "Any", "Literal"}
    ),
    "clearance.integrations.langchain": frozenset(
        {"TYPE_CHECKING", "annotations", "Annotated", "Any", "NotRequired", "TypeVar"}
    ),
    "clearance.integrations.google_adk": frozenset({"TYPE_CHECKING", "annotations", "Any"}),
    "clearance.integrations.openai_agents": frozenset({"TYPE_CHECKING", "annotations", "Any"}),
    "clearance.integrations.pydantic_ai": frozenset({"TYPE_CHECKING", "annotations", "Any"}),
    "clearance.integrations.otel": frozenset(),
    "clearance.server": frozenset({"TYPE_CHECKING", "annotations"}),
}
PUBLIC_MODULES = sorted(EXCLUDED)

# Packages under src/clearance whose contents are not public API: private by name,
# or (``examples``) data that ``clearance init`` copies, with no Python API.
NON_API = frozenset({"_internal", "_cli", "_demo", "_bench", "examples"})
# Top-level files that are not importable API modules.
NON_MODULE_FILES = frozenset({"__init__.py", "__main__.py", "py.typed"})

PACKAGE_DIR = Path(clearance.__file__).parent


def _module(name: str) -> types.ModuleType:
    module = importlib.import_module(name)
    # Resolve every lazy name first, so attributes that appear only after use
    # (the PEP 562 caches) are inspected too.
    for exported in module.__all__:
        getattr(module, exported)
    return module


def _reachable(module: types.ModuleType) -> set[str]:
    """Public-looking names reachable as attributes: loaded globals and those ``dir`` lists."""
    return {name for name in set(vars(module)) | set(dir(module)) if not name.startswith("_")}


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_and_unique(module_name: str) -> None:
    exported = importlib.import_module(module_name).__all__
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_reachable_name_is_exported_or_excluded(module_name: str) -> None:
    module = _module(module_name)
    unexpected = set()
    for name in _reachable(module) - set(module.__all__) - EXCLUDED[module_name]:
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) and value.__name__ == f"{module_name}.{name}":
            continue  # a submodule of a package; test_no_unlisted_public_modules covers it
        unexpected.add(name)
    assert not unexpected, f"{module_name} exposes names missing from __all__: {unexpected}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_excluded_names_are_really_imports(module_name: str) -> None:
    # An exclusion must not become a hiding place for API.
    module = _module(module_name)
    for name in EXCLUDED[module_name] & set(vars(module)):
        value = getattr(module, name)
        assert getattr(value, "__module__", "typing") in {"typing", "__future__"}, name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_resolves_and_is_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        assert value.__doc__, f"{module_name}.{name} has no docstring"
        # Defined by clearance, not a foreign object under our name.
        assert value.__module__.startswith("clearance"), name
    assert module.__doc__, f"{module_name} has no module docstring"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_unknown_names_raise_attribute_error(module_name: str) -> None:
    module = importlib.import_module(module_name)
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(module, "no_such_name")  # noqa: B009 - the point is a dynamic lookup


def test_lazy_names_are_exactly_all() -> None:
    # The lazy map and __all__ are two lists of the same names; they must agree.
    assert set(clearance._DEFINED_IN) == set(clearance.__all__)
    assert set(clearance.__all__) <= set(dir(clearance))


def _public_modules_under(directory: Path, prefix: str) -> set[str]:
    """Every public module and package below ``directory`` (``_`` names are private)."""
    found = set()
    for path in directory.iterdir():
        if path.name in NON_API or path.name in NON_MODULE_FILES or path.name == "__pycache__":
            continue
        if path.name.startswith("_") or (path.is_file() and path.suffix != ".py"):
            continue
        name = f"{prefix}.{path.stem if path.suffix == '.py' else path.name}"
        found.add(name)
        if path.is_dir():
            found |= _public_modules_under(path, name)
    return found


def test_no_unlisted_public_modules() -> None:
    found = _public_modules_under(PACKAGE_DIR, "clearance")
    assert found == set(PUBLIC_MODULES) - {"clearance"}, (
        "a new module under src/clearance is public API: make it private (_-prefixed or "
        "under _internal) or add it to EXCLUDED in this file deliberately"
    )
