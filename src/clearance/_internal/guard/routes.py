"""Which HTTP routes a guard protects, and the action and resource each one stands for.

Invariants:

* A route is ``(method, path)``; a path is ``/``-separated segments, each literal
  or one ``{name}`` parameter that matches one non-empty segment. The action is
  the route's, never the request's.
* Matching is at least as broad as a router's, never narrower, so no spelling of a
  protected path slips past the guard to the handler: repeated slashes collapse, a
  trailing slash is ignored, and ``HEAD`` matches a ``GET`` route (Starlette serves
  ``HEAD`` with the ``GET`` endpoint). Literal routes win over parameter routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from clearance._internal.intent import ACTION_PATTERN

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

ResourceOf = Callable[[Mapping[str, str]], "str | None"]
"""Names the intent's resource from the route's path parameters."""


@dataclass(frozen=True)
class ToolRoute:
    """What a protected route stands for in the intent a grant must be for.

    ``action`` is the intent's action. ``resource`` names the intent's resource: None
    (the intent has none), a template formatted with the route's path parameters
    (``"accounts/{account}"`` for the route ``/accounts/{account}/pay``), or a function
    of those parameters.
    """

    action: str
    resource: str | ResourceOf | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or ACTION_PATTERN.fullmatch(self.action) is None:
            raise ValueError(f"ToolRoute action {self.action!r} is not a valid action name")
        if self.resource is not None and not (
            isinstance(self.resource, str) or callable(self.resource)
        ):
            raise ValueError("ToolRoute resource must be None, a template or a function")

    def resource_for(self, params: Mapping[str, str]) -> str | None:
        """The intent's resource for a request with path parameters ``params``."""
        if self.resource is None:
            return None
        if isinstance(self.resource, str):
            return self.resource.format(**params)
        return self.resource(params)


def normalized(path: str) -> str:
    """``path`` with repeated slashes collapsed and no trailing slash (except ``/``)."""
    collapsed = re.sub(r"/{2,}", "/", path)
    return collapsed.rstrip("/") or "/"


@dataclass(frozen=True)
class _Template:
    method: str
    segments: tuple[str, ...]
    params: frozenset[int]
    route: ToolRoute


class RouteTable:
    """The protected routes of one guard (see the module invariants)."""

    def __init__(self, routes: Mapping[tuple[str, str], str | ToolRoute]) -> None:
        """``routes`` maps ``(method, path)`` to an action or a :class:`ToolRoute`."""
        if not isinstance(routes, Mapping) or not routes:
            raise ValueError(
                "a guard needs at least one route: {('POST', '/pay'): 'payments.send'}"
            )
        self._exact: dict[tuple[str, str], ToolRoute] = {}
        self._templates: list[_Template] = []
        for key, target in routes.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"route keys are (method, path) pairs, got {key!r}")
            method, path = key
            if not isinstance(method, str) or method.upper() not in METHODS:
                raise ValueError(f"route method {method!r} is not one of {sorted(METHODS)}")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"route path {path!r} must start with '/'")
            route = target if isinstance(target, ToolRoute) else ToolRoute(target)
            clean = normalized(path)
            segments = tuple(clean.split("/")[1:]) if clean != "/" else ()
            params = frozenset(i for i, s in enumerate(segments) if _PARAM.fullmatch(s))
            for i, segment in enumerate(segments):
                if i not in params and ("{" in segment or "}" in segment):
                    raise ValueError(f"route path {path!r}: a parameter is a whole segment")
            if params:
                self._templates.append(_Template(method.upper(), segments, params, route))
            else:
                self._exact[(method.upper(), clean)] = route

    def match(self, method: str, path: str) -> tuple[ToolRoute, dict[str, str]] | None:
        """The route ``method path`` falls under and its path parameters, or None."""
        method = "GET" if method.upper() == "HEAD" else method.upper()
        clean = normalized(path)
        exact = self._exact.get((method, clean))
        if exact is not None:
            return exact, {}
        segments = tuple(clean.split("/")[1:]) if clean != "/" else ()
        for template in self._templates:
            if template.method != method or len(template.segments) != len(segments):
                continue
            params: dict[str, str] = {}
            for i, (want, got) in enumerate(zip(template.segments, segments, strict=True)):
                if i in template.params:
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return template.route, params
        return None
