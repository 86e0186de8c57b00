"""The executor side of clearance: verify a grant in your own process, then run the tool.

A tool service (an "executor") receives a grant and the intent it is asked to run,
and needs only the gate's published JWKS (``clearance keys jwks``) and a durable
replay store, never a call back to the gate::

    from clearance.executor import SQLiteReplayGuard, keys_from_jwks, verify_grant

    keys = keys_from_jwks(jwks_json)                     # the output of `clearance keys jwks`
    guard = SQLiteReplayGuard.open("replay.db")          # durable, bounded jti store
    claims = verify_grant(grant, intent_json, keys=keys, audience="local",
                          now=time.time(), replay=guard)  # InvalidGrant on any failure

:func:`verify_grant` applies every check of fail-closed rule 6 (docs/design.md §4)
and consumes the grant's ``jti`` only when all of them pass. ``str(InvalidGrant)``
is always ``"grant rejected"``; the precise reason is in ``.audit_reason``, for the
executor's own audit log.

Invariants (pinned by ``tests/unit/test_imports.py``):

* Importing this module loads the grant verifier and nothing of the gate: no
  policy engine (CEL), no YAML, no ledger, no command line (typer, rich). An
  executor's attack surface and start-up time are those of the verifier alone.
* :class:`ReplayGuard` and :class:`SQLiteReplayGuard` are resolved on first use
  (PEP 562), so an executor that brings its own replay store never loads sqlite3.

A tool service over HTTP puts the *grant guard* in front of its routes instead of
calling :func:`verify_grant` by hand: :class:`GrantGuard` rebuilds the intent from
each request (action and resource from the route, args from the JSON body,
principal, trace and parent from the grant, purpose from ``Clearance-Purpose``) and
:class:`GrantGuardMiddleware` (pure ASGI) or ``@guard.protect(action)`` (plain
handlers) runs the handler only for a grant of exactly that intent.
:func:`grant_headers` is what the calling agent sends. These names, too, load on
first use.

Every name here is also exported by :mod:`clearance`; this module is the narrow
door for processes that must not carry the rest.
"""

from typing import TYPE_CHECKING

from clearance._internal.grants.keys import keys_from_jwks
from clearance._internal.grants.token import GrantClaims, verify_grant
from clearance._internal.intent import Intent
from clearance.errors import InvalidGrant

if TYPE_CHECKING:
    from clearance._internal.grants.jti_store import ReplayGuard, SQLiteReplayGuard
    from clearance._internal.guard.core import GrantGuard
    from clearance._internal.guard.headers import grant_headers
    from clearance._internal.guard.middleware import GrantGuardMiddleware
    from clearance._internal.guard.routes import ToolRoute

__all__ = [
    "GrantClaims",
    "GrantGuard",
    "GrantGuardMiddleware",
    "Intent",
    "InvalidGrant",
    "ReplayGuard",
    "SQLiteReplayGuard",
    "ToolRoute",
    "grant_headers",
    "keys_from_jwks",
    "verify_grant",
]

# The replay store module imports sqlite3, and the grant guard is for HTTP tool
# services only: these names wait for first use, each in its defining module.
_LAZY: dict[str, str] = {
    "ReplayGuard": "clearance._internal.grants.jti_store",
    "SQLiteReplayGuard": "clearance._internal.grants.jti_store",
    "GrantGuard": "clearance._internal.guard.core",
    "GrantGuardMiddleware": "clearance._internal.guard.middleware",
    "ToolRoute": "clearance._internal.guard.routes",
    "grant_headers": "clearance._internal.guard.headers",
}


def __getattr__(name: str) -> object:
    """Resolve the replay-store and guard names on first use (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__ rather than importlib.import_module: the same import, but seen by
    # `python -X importtime`, which tests/unit/test_imports.py reads.
    value: object = getattr(__import__(module_name, fromlist=[name]), name)
    # Cache it, so later lookups are ordinary attribute reads.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, whether or not they are loaded yet, and the loaded globals."""
    return sorted(set(globals()) | set(__all__))
