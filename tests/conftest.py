"""Test-suite-wide settings.

Hypothesis: no per-example deadline (this suite runs on small shared machines
whose speed drifts, and a slow example is not a wrong one), and in CI
(``CI`` set) a derandomized run, so a green main does not turn red by chance;
runs elsewhere keep exploring new examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("clearance", deadline=None)
settings.register_profile("clearance-ci", deadline=None, derandomize=True)
settings.load_profile("clearance-ci" if os.environ.get("CI") else "clearance")
