"""The ``@gate.governed(...)`` decorator for sync and async functions.

Every call of a decorated function becomes ``with gate.clearance(intent)``
around the original body, so the body runs only after its grant verified, and
its result digest goes into the execution entry. The decorator needs only what
:class:`GovernedGate` names, so it does not depend on the gate's implementation.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from clearance._internal.gate.cleared import Cleared
from clearance._internal.intent import Intent
from clearance.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")


class GovernedGate(Protocol):
    """What :func:`governed` needs from a gate (:class:`clearance.Gate` is one)."""

    @property
    def principal(self) -> str | None:
        """The principal the gate is bound to, the default for the decorated calls."""
        ...

    def clearance(
        self, intent: Intent, *, wait: float | timedelta | None = None
    ) -> AbstractContextManager[Cleared]:
        """Authorize ``intent`` and govern the ``with`` body (waiting ``wait`` for an approval)."""
        ...


def governed(
    gate: GovernedGate,
    action: str | None = None,
    *,
    principal: str | None = None,
    resource: str | Callable[[Mapping[str, Any]], str] | None = None,
    purpose: str | None = None,
    exclude: Collection[str] = (),
    args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    wait: float | timedelta | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function so every call is a governed call on ``gate``.

    The intent's ``args`` are the call's bound arguments (defaults applied), minus
    the parameters named in ``exclude`` (injected dependencies: a database handle,
    an environment object, which are not JSON and not what the policy decides on);
    or, with ``args=``, whatever that function builds from the bound arguments.
    ``resource`` may be a template like ``"order/{order_id}"`` or a function
    of the bound arguments. ``action`` defaults to the function's name and
    ``principal`` to the principal the gate is bound to (naming another one is
    refused by the gate, unless it is a multi-principal service).

    The function's return value is recorded as the call's result (its digest goes
    into the execution entry); a value that is not JSON is recorded as
    ``result_error`` with its type instead, and still returned.

    ``wait`` (sync functions only: waiting would block an event loop) lets a call that
    needs a human approval wait for it, as ``gate.clearance(intent, wait=...)`` does.
    """
    if args is not None and exclude:
        raise ValueError("give either exclude= or args=, not both")
    args_of = args  # the inner functions' own `args` is the call's positional tuple

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        name = action or fn.__name__
        unknown = set(exclude) - set(signature.parameters)
        if unknown:
            raise ValueError(
                f"governed({name!r}): exclude= names no parameter of {fn.__qualname__}: "
                f"{sorted(unknown)}"
            )

        def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Intent:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            call_args = dict(bound.arguments)
            intent_args = (
                dict(args_of(call_args))
                if args_of is not None
                else {k: v for k, v in call_args.items() if k not in exclude}
            )
            who = principal or gate.principal
            if who is None:
                raise InputError(
                    f"governed({name!r}) needs a principal: pass principal= or "
                    "open the gate for one (open_gate(principal=...))"
                )
            where = (
                resource(call_args)
                if callable(resource)
                else (resource.format(**call_args) if resource is not None else None)
            )
            return Intent.create(
                principal=who, action=name, resource=where, args=intent_args, purpose=purpose
            )

        if inspect.iscoroutinefunction(fn):
            if wait is not None:
                raise ValueError(
                    f"governed({name!r}): wait= blocks the thread, so it is for sync functions; "
                    "in async code catch ApprovalRequired and continue with gate.resume()"
                )
            async_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with gate.clearance(build(args, kwargs)) as cleared:
                    result = await async_fn(*args, **kwargs)
                    _record(cleared, result)
                    return result

            return cast(Callable[P, R], run_async)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            intent = build(args, kwargs)
            call = gate.clearance(intent) if wait is None else gate.clearance(intent, wait=wait)
            with call as cleared:
                result = fn(*args, **kwargs)
                _record(cleared, result)
                return result

        return run

    return decorate


def _record(cleared: Cleared, result: Any) -> None:
    """Record a decorated function's return value, or say why it could not be."""
    try:
        cleared.record_result(result)
    except InputError as exc:
        cleared.note_unrecordable(result, str(exc))
