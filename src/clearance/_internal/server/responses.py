"""The JSON response class of the runtime API (orjson; compact, UTF-8, no NaN).

Every JSON body the API sends goes through :class:`JSONOut`: ``orjson`` is several times
faster than the standard library and refuses values JSON cannot carry, so a response
is either valid JSON or an error on our side, never ``NaN`` on the wire.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSONOut(JSONResponse):
    """``application/json`` rendered by orjson."""

    def render(self, content: Any) -> bytes:
        """The compact JSON bytes of ``content``."""
        return orjson.dumps(content)
