"""Policy bundles over HTTP: validating a candidate, activating it, the activation history.

Invariants (fail-closed rules 1 and 2; docs/design.md §3 "Digest and replay"):

* A candidate bundle is written to a fresh private directory in the home and loaded
  with the project's own loader; a bundle that does not load is refused with the
  loader's messages (file names shown as sent, never the server's paths) and nothing
  on disk or in memory changes. File names are plain ``*.yaml``/``*.yml`` names
  (checked again here, whatever the request model said), so an untrusted name never
  reaches outside that directory.
* Activation replaces the home's policy directory whole: the validated directory is
  renamed into place (the old one renamed aside first, then removed), so the hot
  reloader never sees a mixture of two bundles; in the instant between the two
  renames it sees no bundle and keeps the last good one. The gate then reloads at
  once (:meth:`~clearance._internal.gate.core.Gate.reload_policy`), and a ``policy``
  entry holding the whole document records the activation. Activations are
  serialized by one lock.
* The history lists every ``policy`` entry of the log in order, read incrementally
  (each call scans only the entries appended since the previous one).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from clearance._internal import entries
from clearance._internal.files import fsync_dir
from clearance._internal.gate.core import Gate
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance.errors import InputError, PolicyError

FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.ya?ml")
MAX_FILES: Final[int] = 64


class BundleDesk:
    """Candidate bundles, activation and the activation history of one home and gate."""

    def __init__(
        self, gate: Gate, home: Path, policy_dir: Path, clock: Callable[[], float]
    ) -> None:
        """Activate into ``policy_dir`` (in ``home``) for ``gate``."""
        self._gate = gate
        self._home = home
        self._policy_dir = policy_dir
        self._clock = clock
        self._activate_lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._scanned = 0
        self._history: list[dict[str, Any]] = []

    @contextmanager
    def _written(self, files: Mapping[str, str]) -> Iterator[Path]:
        """The files in a fresh private directory in the home (removed afterwards)."""
        if not files or len(files) > MAX_FILES:
            raise InputError(f"files: a bundle has 1 to {MAX_FILES} files")
        for name, text in files.items():
            if not isinstance(name, str) or FILE_NAME.fullmatch(name) is None:
                raise InputError(f"files: {str(name)[:60]!r} is not a plain *.yaml file name")
            if not isinstance(text, str):
                raise InputError(f"files.{name}: must be YAML text")
        directory = Path(tempfile.mkdtemp(prefix=".policies-new-", dir=self._home))
        try:
            for name, text in files.items():
                target = directory / name
                with open(target, "x", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def load(self, files: Mapping[str, str]) -> CelPolicyEngine:
        """The engine of a candidate bundle; PolicyError with the loader's messages."""
        with self._written(files) as directory:
            return _load(directory)

    def activate(self, files: Mapping[str, str]) -> tuple[str, int]:
        """Validate ``files``, make them the active bundle, log it; returns digest and index.

        PolicyError (the loader's messages) leaves everything as it was.
        """
        with self._activate_lock, self._written(files) as directory:
            candidate = _load(directory)
            previous = self._gate.engine.digest
            self._swap_in(directory)
            digest = self._gate.reload_policy()
            if digest != candidate.digest:
                raise PolicyError(
                    f"the bundle changed on disk while it was activated (now {digest}); "
                    "send it again"
                )
            logged = self._gate.ledger.find("policy", digest)
            if digest == previous and logged:
                return digest, logged[-1].index  # the same policy: no new activation
            document = self._gate.engine.document()
            index = self._gate.ledger.append(entries.policy_entry(self._clock(), digest, document))
            return digest, index

    def _swap_in(self, directory: Path) -> None:
        """Rename ``directory`` to the policy directory, replacing the old one whole."""
        target = self._policy_dir
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            mode = 0o755
        os.chmod(directory, mode)
        moved = target.with_name(f".policies-old-{secrets.token_hex(6)}")
        aside: Path | None = moved
        try:
            os.rename(target, moved)
        except FileNotFoundError:
            aside = None
        except OSError as exc:
            raise PolicyError(
                f"cannot replace the policy directory: {exc.strerror or exc}"
            ) from None
        try:
            os.rename(directory, target)
        except OSError as exc:
            if aside is not None:
                os.rename(aside, target)
            raise PolicyError(
                f"cannot replace the policy directory: {exc.strerror or exc}"
            ) from None
        fsync_dir(target.parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def history(self) -> list[dict[str, Any]]:
        """Every activation the log records, oldest first: ``{digest, ledger_index, at}``."""
        ledger = self._gate.ledger
        with self._scan_lock:
            size = ledger.size()
            for stored in ledger.scan(self._scanned, size):
                if stored.entry.get("type") == "policy":
                    self._history.append(
                        {
                            "digest": str(stored.entry.get("digest")),
                            "ledger_index": stored.index,
                            "at": str(stored.entry.get("at")),
                        }
                    )
            self._scanned = max(self._scanned, size)
            return list(self._history)


def _load(directory: Path) -> CelPolicyEngine:
    """Load the bundle in ``directory``; messages name files as sent, not where they were."""
    prefix = f"{directory}{os.sep}"
    try:
        return CelPolicyEngine.from_directory(directory)
    except PolicyError as exc:
        raise PolicyError(str(exc).replace(prefix, "").replace(str(directory), "bundle")) from None
    except Exception as exc:  # a loader bug must not pass for a valid bundle
        raise PolicyError(f"the bundle could not be loaded: {type(exc).__name__}") from None
