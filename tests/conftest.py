"""Test-suite-wide settings.

Hypothesis: no per-example deadline (this suite runs on small shared machines
whose speed drifts, and a slow example is not a wrong one), and in CI
(``CI`` set) a derandomized run, so a green main does not turn red by chance;
runs elsewhere keep exploring new examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.pg import fresh_schema

settings.register_profile("clearance", deadline=None)
settings.register_profile("clearance-ci", deadline=None, derandomize=True)
settings.load_profile("clearance-ci" if os.environ.get("CI") else "clearance")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema on the machine's server (see :mod:`tests.pg`)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="module")
def pg_url_module() -> Iterator[str]:
    """As :func:`pg_url`, shared by one test module."""
    with fresh_schema() as url:
        yield url
