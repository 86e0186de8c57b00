"""Console sessions: a random id in a cookie, everything else on the server.

Invariants:

* The cookie holds only a 256-bit random session id; the API key the user logged in
  with stays in this process's memory and is authenticated again on every request
  (:meth:`~clearance._internal.apikeys.ApiKeyStore.authenticate`), so a revoked or
  expired key ends its sessions within the key cache's second.
* A session ends ``idle`` seconds after its last request, ``longest`` seconds after it
  began, or at logout, whichever comes first; an ended session is forgotten and its id
  is never accepted again.
* Each session has its own CSRF token (a second 256-bit random value), compared in
  constant time; a state-changing request without it is refused.
* Sessions live in memory: a restarted server asks everyone to log in again. At most
  :data:`MAX_SESSIONS` exist; beyond that the least recently used one ends.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MAX_SESSIONS: Final = 10_000
"""Sessions kept at once; logging in beyond this ends the least recently used."""


@dataclass
class Session:
    """One logged-in browser."""

    session_id: str
    token: str
    """The API key the user presented (never sent back to the browser)."""
    csrf: str
    started_at: float
    seen_at: float

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self.csrf.encode("ascii")
        )


class SessionBook:
    """The sessions of one server (thread-safe)."""

    def __init__(self, *, idle: float, longest: float) -> None:
        self._idle = idle
        self._longest = longest
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, token: str, now: float) -> Session:
        """A new session for the (already authenticated) key ``token``."""
        session = Session(
            session_id=secrets.token_urlsafe(32),
            token=token,
            csrf=secrets.token_urlsafe(32),
            started_at=now,
            seen_at=now,
        )
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def find(self, session_id: str | None, now: float) -> Session | None:
        """The live session ``session_id``, touched; None when unknown or ended."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen_at > self._idle or now - session.started_at > self._longest:
                del self._sessions[session_id]
                return None
            session.seen_at = now
            self._sessions.move_to_end(session_id)
            return session

    def close(self, session_id: str | None) -> None:
        """End ``session_id`` (logout); unknown ids are ignored."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
