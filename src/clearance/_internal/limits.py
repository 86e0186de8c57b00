"""Every tunable bound of clearance in one typed, frozen object, and the ceilings no setting raises.

Invariants:

* A :class:`Limits` is valid by construction: every field is checked against its
  bound in ``__post_init__`` and a bad value is a ``ValueError`` (programmer misuse).
  :func:`parse_limits` reads the optional ``limits:`` mapping of ``clearance.yaml``
  and reports a bad value as :class:`~clearance.errors.InputError` naming the file
  and the key, in the words of the field's bound.
* The contract ceilings are module constants, not fields: :data:`MAX_GRANT_LIFETIME`
  (docs/design.md §5, a grant lives at most 60 s) and :data:`MAX_LEEWAY` (docs/design.md §4 rule 6,
  a verifier allows at most 5 s of clock skew). A setting may lower the matching
  field, never raise it past the ceiling.
* What must hold for *every* verifier of a grant uses the ceiling, not the configured
  leeway: how long a consumed ``jti`` is remembered
  (:data:`~clearance._internal.grants.jti_store.REPLAY_LEEWAY`) and how long a
  retired key stays published
  (:data:`~clearance._internal.grants.keys.ROTATION_LEEWAY`). An executor in another
  process may verify with the full leeway, whatever this gate was configured with.
* :data:`Durability` is the one definition of the durability modes; the ledger, the
  replay store and the settings re-export it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Final, Literal, cast

from clearance.errors import InputError

Durability = Literal["durable", "relaxed"]
"""``durable``: fsync on every commit; ``relaxed``: survives a killed process, not a power cut."""
DURABILITIES: Final[tuple[Durability, ...]] = ("durable", "relaxed")

MAX_GRANT_LIFETIME: Final[int] = 60
"""Longest grant lifetime in seconds (docs/design.md §5); no setting can raise it."""
MAX_LEEWAY: Final[float] = 5.0
"""Largest clock leeway in seconds a grant verifier allows (docs/design.md §4 rule 6)."""
MANDATE_TEXT_CEILING: Final[int] = 64 * 1024
"""Longest mandate text any setting allows (a mandate is copied into every decision's facts)."""
MAX_APPROVAL_TTL: Final[float] = 30 * 86_400.0
"""Longest approval lifetime a setting allows (30 days)."""
MAX_REFRESH: Final[float] = 3600.0
"""Longest interval between two looks at the key ring or the policy bundle."""
MAX_CHECKPOINT_INTERVAL: Final[float] = 60.0
"""Longest interval between two signed checkpoints a setting allows."""
MAX_PROVENANCE_VALUES: Final[int] = 4096
"""Most fingerprints per origin per trace a setting allows (a provenance entry holds them all,
about 35 bytes each)."""


@dataclass(frozen=True, slots=True)
class _Bound:
    """The range of one field and how a message describes it."""

    whole: bool
    """Only ``int`` values (seconds or characters) are accepted."""
    low: float
    high: float
    low_open: bool
    """``low`` itself is excluded."""
    text: str
    """What the value must be, for messages ("must be <text>")."""

    def problem(self, value: object) -> str | None:
        """Why ``value`` is out of this bound, or None."""
        if isinstance(value, bool) or not isinstance(value, int if self.whole else int | float):
            return self.text
        if not math.isfinite(value) or value > self.high:
            return self.text
        if value < self.low or (self.low_open and value == self.low):
            return self.text
        return None


_BOUNDS: Final[Mapping[str, _Bound]] = {
    "grant_lifetime": _Bound(True, 1, MAX_GRANT_LIFETIME, False, "whole seconds from 1 to 60"),
    "leeway": _Bound(False, 0, MAX_LEEWAY, False, "a number of seconds from 0 to 5"),
    "approval_ttl": _Bound(
        False, 0, MAX_APPROVAL_TTL, True, "a number of seconds above 0, at most 2592000 (30 days)"
    ),
    "key_refresh": _Bound(False, 0, MAX_REFRESH, False, "a number of seconds from 0 to 3600"),
    "policy_reload": _Bound(False, 0, MAX_REFRESH, False, "a number of seconds from 0 to 3600"),
    "checkpoint_interval": _Bound(
        False, 0, MAX_CHECKPOINT_INTERVAL, True, "a number of seconds above 0, at most 60"
    ),
    "mandate_text": _Bound(
        True, 0, MANDATE_TEXT_CEILING, False, "a whole number of characters from 0 to 65536"
    ),
    "provenance_values": _Bound(
        True, 1, MAX_PROVENANCE_VALUES, False, "a whole number of fingerprints from 1 to 4096"
    ),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds a gate and its ledger work within; every field has a documented default.

    Read from ``clearance.yaml``: ``grant_lifetime`` at the top level (where it has
    always been), every other field under ``limits:`` (:data:`LIMIT_KEYS`).
    """

    grant_lifetime: int = 30
    """Seconds from a grant's ``nbf`` to its ``exp``; 1 to :data:`MAX_GRANT_LIFETIME`."""
    leeway: float = MAX_LEEWAY
    """Clock leeway of this gate's own grant checks (``verify``, ``execute``,
    ``clearance``); 0 to :data:`MAX_LEEWAY`. Lowering it only makes the gate stricter."""
    approval_ttl: float = 900.0
    """Seconds a pending approval stays valid (its entry's ``expires_at``), 15 minutes by
    default; also set as ``approvals.ttl``, and per rule as ``approval_ttl``. An approval
    still pending then counts as denied."""
    key_refresh: float = 1.0
    """Seconds between two looks at the grant key ring for a rotation done elsewhere
    (0: before every signature)."""
    policy_reload: float = 1.0
    """Seconds between two looks at the policy bundle's files for a change (0: every decision)."""
    checkpoint_interval: float = 0.2
    """Seconds between two signed checkpoints under load; must be shorter than
    ``checkpoint_grace``."""
    mandate_text: int = 16 * 1024
    """Longest mandate text, in code points, for new traces and the default mandate."""
    provenance_values: int = 512
    """Fingerprints kept per origin (untrusted, sensitive) per trace; the first ones are
    kept, and an origin that had to drop one is full: its helper then answers true."""

    def __post_init__(self) -> None:
        for name, bound in _BOUNDS.items():
            value = getattr(self, name)
            if bound.problem(value) is not None:
                raise ValueError(f"{name} must be {bound.text}, got {value!r}")

    def overrides(self) -> dict[str, int | float]:
        """The ``limits:`` fields that differ from their defaults (the YAML to write)."""
        return {
            name: getattr(self, name)
            for name in LIMIT_KEYS
            if getattr(self, name) != getattr(DEFAULT_LIMITS, name)
        }


DEFAULT_LIMITS: Final = Limits()
LIMIT_KEYS: Final[tuple[str, ...]] = tuple(
    f.name for f in fields(Limits) if f.name != "grant_lifetime"
)
"""The keys of the ``limits:`` mapping (``grant_lifetime`` is a top-level setting)."""


def limit_problem(name: str, value: object) -> str | None:
    """Why ``value`` is not a valid ``name`` limit ("must be ..."), or None."""
    problem = _BOUNDS[name].problem(value)
    return None if problem is None else f"must be {problem}"


def parse_limits(raw: object, where: str, *, grant_lifetime: object = 30) -> Limits:
    """The :class:`Limits` of a settings file: its ``limits:`` mapping and ``grant_lifetime``.

    ``raw`` is the mapping (None or absent means every default). InputError names
    ``where`` and the key: an unknown key, a value of the wrong type or out of its
    bound (which includes any attempt to exceed a contract ceiling).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: 'limits' must be a mapping of limit names to values")
    if "grant_lifetime" in raw:
        raise InputError(
            f"{where}: 'limits.grant_lifetime': set grant_lifetime at the top level of the file"
        )
    unknown = set(raw) - set(LIMIT_KEYS)
    if unknown:
        raise InputError(
            f"{where}: unknown limits {sorted(map(str, unknown))}; allowed: {sorted(LIMIT_KEYS)}"
        )
    problem = limit_problem("grant_lifetime", grant_lifetime)
    if problem is not None:
        raise InputError(f"{where}: 'grant_lifetime' {problem}")
    for key, value in raw.items():
        problem = limit_problem(key, value)
        if problem is not None:
            raise InputError(f"{where}: 'limits.{key}' {problem}, got {value!r}")
    return replace(DEFAULT_LIMITS, grant_lifetime=cast(int, grant_lifetime), **raw)
