"""Hot reload of a policy bundle that never falls back to a weaker policy.

Invariants (fail-closed rules 1 and 2):

* :meth:`PolicyHolder.load` raises :class:`~clearance.errors.PolicyError` when
  the first load fails, so a gate without a valid bundle refuses to start.
* After that, a bundle that fails to load or validate is refused: the last good
  engine stays active, :attr:`PolicyHolder.last_error` says why, and the refusal is
  logged on the ``clearance.policy`` logger at WARNING with the loader's message
  (once per change of the files; an unreadable directory once per new message).
  There is no path to an empty or permissive policy.
* The swap is one reference assignment, so a reader sees either the old engine
  or the new one, never a mixture; reloads are serialized by a lock.

Change detection is cheap: :meth:`PolicyHolder.maybe_reload` looks at most once
per ``interval`` seconds (by the caller's clock) at the ``(name, mtime_ns,
size)`` of the bundle's files, and reloads only when that signature changed. A
signature that already failed is not retried until the files change again (or
:meth:`PolicyHolder.reload` forces it).

Each bundle that becomes active (the first load, and every reload that swaps in
a new digest) is linted (:func:`clearance._internal.policy.lint.lint_bundle`), and every
warning is logged on the ``clearance.policy`` logger at WARNING, naming the
bundle path, the rule id and the code. Linting is advisory: it never refuses a
bundle, and a failure inside it is logged and ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from clearance._internal.limits import DEFAULT_LIMITS
from clearance._internal.policy.bundle import policy_files
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.lint import lint_bundle
from clearance.errors import PolicyError

__all__ = ["DEFAULT_INTERVAL", "PolicyHolder"]

DEFAULT_INTERVAL: float = DEFAULT_LIMITS.policy_reload
"""Seconds between two looks at the bundle's files (:attr:`Limits.policy_reload`)."""

Signature = tuple[tuple[str, int, int], ...]

_log = logging.getLogger("clearance.policy")


def _log_lint(path: Path, engine: CelPolicyEngine) -> None:
    """Log the lint warnings of the bundle ``engine`` runs; never raises."""
    try:
        warnings = lint_bundle(engine.bundle)
    except Exception:  # advisory only: a lint bug must not take the policy away
        _log.exception("policy bundle %s: lint failed; the bundle is active regardless", path)
        return
    for warning in warnings:
        _log.warning("policy bundle %s: %s", path, warning.render())


def _signature(path: Path) -> Signature:
    """``(name, mtime_ns, size)`` of every file of the bundle; raises PolicyError."""
    entries = []
    for file in policy_files(path):
        try:
            stat = file.stat()
        except OSError as exc:
            raise PolicyError(f"{file}: cannot stat policy file: {exc.strerror or exc}") from None
        entries.append((file.name, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class PolicyHolder:
    """The active policy engine of a bundle on disk, reloaded when its files change.

    A :class:`~clearance._internal.policy.source.PolicySource`: the gate calls
    :meth:`engine_at` once per decision.
    """

    def __init__(
        self,
        path: str | Path,
        engine: CelPolicyEngine,
        signature: Signature,
        *,
        interval: float = DEFAULT_INTERVAL,
        loader: Callable[[Path], CelPolicyEngine] = CelPolicyEngine.from_directory,
    ) -> None:
        """Hold ``engine`` loaded from ``path``; use :meth:`load` to build one."""
        if interval < 0:
            raise ValueError("interval must not be negative")
        self._path = Path(path)
        self._engine = engine
        self._signature: Signature = signature
        self._failed: Signature | None = None
        self._interval = interval
        self._loader = loader
        self._next_check: float | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        """Why the most recent reload was refused; None after a successful (re)load."""

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        interval: float = DEFAULT_INTERVAL,
        loader: Callable[[Path], CelPolicyEngine] = CelPolicyEngine.from_directory,
    ) -> PolicyHolder:
        """Load the bundle at ``path``; raises PolicyError if it does not load."""
        root = Path(path)
        signature = _signature(root)
        engine = loader(root)
        _log_lint(root, engine)
        return cls(root, engine, signature, interval=interval, loader=loader)

    @property
    def path(self) -> Path:
        """The bundle directory (or file) this holder watches."""
        return self._path

    @property
    def engine(self) -> CelPolicyEngine:
        """The active engine: the last bundle that loaded successfully."""
        return self._engine

    @property
    def digest(self) -> str:
        """Digest of the active bundle."""
        return self._engine.digest

    def engine_at(self, now: float) -> CelPolicyEngine:
        """The active engine after :meth:`maybe_reload` at ``now`` (a bad bundle never raises)."""
        self.maybe_reload(now)
        return self._engine

    def maybe_reload(self, now: float) -> bool:
        """Reload if the files changed; look at most once per interval. True if swapped.

        ``now`` is the caller's clock in seconds (only differences matter).
        Never raises for a bad bundle: the refusal is recorded in :attr:`last_error`.
        """
        if self._next_check is not None and now < self._next_check:
            return False
        if not self._lock.acquire(blocking=False):
            return False  # another thread is looking right now
        try:
            if self._next_check is not None and now < self._next_check:
                return False
            self._next_check = now + self._interval
            try:
                signature = _signature(self._path)
            except PolicyError as exc:
                self._refused(str(exc), repeat=False)
                return False
            if signature == self._signature or signature == self._failed:
                return False
            return self._reload_locked(signature)
        finally:
            self._lock.release()

    def reload(self) -> bool:
        """Reload now, whether or not the files changed. True if a new bundle became active.

        Raises nothing for a bad bundle; see :attr:`last_error`.
        """
        with self._lock:
            try:
                signature = _signature(self._path)
            except PolicyError as exc:
                self._refused(str(exc), repeat=True)
                return False
            return self._reload_locked(signature)

    def _reload_locked(self, signature: Signature) -> bool:
        try:
            engine = self._loader(self._path)
        except PolicyError as exc:
            self._failed = signature
            self._refused(str(exc), repeat=True)
            return False
        except Exception as exc:  # a loader bug must not take the gate's policy away
            self._failed = signature
            self._refused(f"unexpected error while loading the bundle: {exc!r}", repeat=True)
            return False
        self._signature, self._failed, self.last_error = signature, None, None
        if engine.digest == self._engine.digest:
            return False  # same policy: keep the warm engine
        self._engine = engine
        _log_lint(self._path, engine)
        return True

    def _refused(self, message: str, *, repeat: bool) -> None:
        """Record (and log) why a reload was refused; the last good engine stays active.

        A files signature that failed is not retried until the files change, so a
        loader's refusal is logged once per change; a directory that cannot even be
        listed is looked at every interval, so that message is logged only when new
        (``repeat=False``).
        """
        if repeat or message != self.last_error:
            _log.warning(
                "policy bundle %s: reload refused, keeping bundle %s: %s",
                self._path,
                self._engine.digest,
                message,
            )
        self.last_error = message
