"""A blocking test client for an ASGI application, on httpx's ASGITransport.

Starlette's TestClient warns (an error in this suite) when used with httpx rather than
its successor package; this is the few lines the guard tests need.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import anyio
import httpx


class TestClient:
    """``client.post(path, ...)`` against an ASGI app, one event loop per request."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, app: Any) -> None:
        self._app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.pop("follow_redirects", None)

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tool") as client:
                return await client.request(method, path, **kwargs)

        return anyio.run(send)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def __enter__(self) -> TestClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
