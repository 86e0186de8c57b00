"""``@client.governed(...)``: every call of a function is a governed call through the gateway.

The intent is built as :func:`clearance._internal.gate.governed.governed` builds it
(action = ``action`` or the function's name; args = the bound arguments with defaults,
minus ``exclude``, or whatever ``args`` builds; ``resource`` a template or a
function of the bound arguments; ``purpose`` fixed), without a principal: the
gateway takes it from the API key. The return value is recorded as the result
(a value that is not JSON is returned but its digest is not recorded).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

import anyio.to_thread

from clearance._internal.gate.cleared import Cleared
from clearance._internal.gate.traces import enter_request, exit_request
from clearance.errors import InputError

if TYPE_CHECKING:
    from clearance._internal.remote.client import RemoteCall

P = ParamSpec("P")
R = TypeVar("R")

IntentOf = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]


class SyncGoverning(Protocol):
    """What :func:`governed_sync` needs from a client."""

    def clearance(
        self, intent: Mapping[str, Any], *, wait: float | None = None
    ) -> AbstractContextManager[Cleared]:
        """Govern the ``with`` body."""
        ...


class AsyncGoverning(Protocol):
    """What :func:`governed_async` needs from a client."""

    def clearance(
        self, intent: Mapping[str, Any], *, wait: float | None = None
    ) -> AbstractAsyncContextManager[Cleared]:
        """Govern the ``async with`` body."""
        ...


def intent_of(
    fn: Callable[..., Any],
    action: str | None,
    *,
    resource: str | Callable[[Mapping[str, Any]], str] | None,
    purpose: str | None,
    exclude: Collection[str],
    args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None,
) -> IntentOf:
    """The function building a call's intent (ValueError for a bad ``exclude``)."""
    if args is not None and exclude:
        raise ValueError("give either exclude= or args=, not both")
    signature = inspect.signature(fn)
    name = action or fn.__name__
    unknown = set(exclude) - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"governed({name!r}): exclude= names no parameter of {fn.__qualname__}: "
            f"{sorted(unknown)}"
        )
    args_of = args

    def build(call: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*call, **kwargs)
        bound.apply_defaults()
        call_args = dict(bound.arguments)
        intent_args = (
            dict(args_of(call_args))
            if args_of is not None
            else {k: v for k, v in call_args.items() if k not in exclude}
        )
        where = (
            resource(call_args)
            if callable(resource)
            else (resource.format(**call_args) if resource is not None else None)
        )
        return {"action": name, "resource": where, "args": intent_args, "purpose": purpose}

    return build


def record(cleared: Cleared, result: Any) -> None:
    """Record a decorated function's return value, or say why it could not be."""
    try:
        cleared.record_result(result)
    except InputError as exc:
        cleared.note_unrecordable(result, str(exc))


def governed_sync(
    client: SyncGoverning,
    action: str | None,
    *,
    resource: str | Callable[[Mapping[str, Any]], str] | None,
    purpose: str | None,
    exclude: Collection[str],
    args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None,
    wait: float | None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The decorator of :meth:`Client.governed` (sync functions, and async ones via a thread)."""
    if args is not None and exclude:
        raise ValueError("give either exclude= or args=, not both")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        build = intent_of(
            fn, action, resource=resource, purpose=purpose, exclude=exclude, args=args
        )
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def run_async(*call: Any, **kwargs: Any) -> Any:
                remote = cast("RemoteCall", client.clearance(build(call, kwargs), wait=wait))
                # The exchanges block: a worker thread makes them (it sees this context).
                cleared, running = await anyio.to_thread.run_sync(remote.open)
                token = enter_request(running)
                started = time.perf_counter()
                failure: type[BaseException] | None = None
                try:
                    result = await async_fn(*call, **kwargs)
                    record(cleared, result)
                    return result
                except BaseException as exc:
                    failure = type(exc)
                    raise
                finally:
                    duration_us = int((time.perf_counter() - started) * 1e6)
                    exit_request(token)
                    await anyio.to_thread.run_sync(remote.finish, cleared, failure, duration_us)

            return cast(Callable[P, R], run_async)

        @functools.wraps(fn)
        def run(*call: P.args, **kwargs: P.kwargs) -> R:
            with client.clearance(build(call, kwargs), wait=wait) as cleared:
                result = fn(*call, **kwargs)
                record(cleared, result)
                return result

        return run

    return decorate


def governed_async(
    client: AsyncGoverning,
    action: str | None,
    *,
    resource: str | Callable[[Mapping[str, Any]], str] | None,
    purpose: str | None,
    exclude: Collection[str],
    args: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None,
    wait: float | None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """The decorator of :meth:`AsyncClient.governed` (coroutine functions only)."""
    if args is not None and exclude:
        raise ValueError("give either exclude= or args=, not both")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"AsyncClient.governed decorates coroutine functions; {fn.__qualname__} is "
                "not one (use Client.governed for plain functions)"
            )
        build = intent_of(
            fn, action, resource=resource, purpose=purpose, exclude=exclude, args=args
        )

        @functools.wraps(fn)
        async def run(*call: P.args, **kwargs: P.kwargs) -> R:
            async with client.clearance(build(call, kwargs), wait=wait) as cleared:
                result = await fn(*call, **kwargs)
                record(cleared, result)
                return result

        return run

    return decorate
