"""The grant guard: a tool service refuses every call that does not carry a grant for it.

Exported by :mod:`clearance.executor` (and :mod:`clearance`): :class:`~.core.GrantGuard`
(configuration and the decision), :class:`~.middleware.GrantGuardMiddleware` (pure ASGI,
for Starlette and FastAPI), ``@guard.protect`` (:mod:`.handler`, plain handlers),
:class:`~.routes.ToolRoute` and :func:`~.headers.grant_headers` (what an agent sends).
:mod:`.reporting` tells the gateway about refusals and outcomes. Importing the guard
loads the grant verifier only: httpx, anyio and the SQLite replay store are imported
when a guard first needs them.
"""
