"""How every ledger store lays the log out in rows, whatever the database (SQLite, PostgreSQL).

A row is ``(idx, hashes, type, ref, trace_id, leaf)``:

* ``leaf`` holds the RFC 8785 canonical bytes of entry ``idx`` (:func:`prepare`);
* ``hashes`` stores the RFC 9162 §2.1 tree: the leaf hash of ``idx`` followed by the hash
  of every perfect subtree that leaf ``idx`` completes, level by level (:func:`extend`).
  Node ``(level, k)`` (leaves ``[k * 2**level, (k + 1) * 2**level)``) is therefore bytes
  ``[32 * level, 32 * level + 32)`` of row :func:`node_row` ``(level, k)``, and any
  inclusion or consistency proof (RFC 9162 §2.1.3-2.1.4) or historical root is a fold of
  O(log n) such nodes (:func:`range_hashes`);
* ``type``, ``ref`` and ``trace_id`` are *derived* columns, a function of the leaf
  (:func:`derived_columns`) that no hash covers. They exist only to find rows, so nothing
  may trust them: each store recomputes them when it opens or adopts rows, and readers
  check every row a lookup returns (:func:`column_problem`).

Everything here is pure: no I/O, no database. Two stores fed the same entries therefore
store the same bytes, hashes and roots.

Invariants:

* :func:`extend` computes a batch's rows from the in-memory right edge of the tree only,
  so a group of appends is laid out without a read.
* :func:`parse_stored_leaf` and :func:`require_nodes` turn whatever a row holds into an
  entry or hashes, or a :class:`~clearance.errors.TamperError` naming the index; never a
  foreign exception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from clearance._internal.canonical import canonical_json
from clearance._internal.ledger import merkle
from clearance._internal.ledger.store import ENTRY_TYPES, StoredEntry, index_ref
from clearance.errors import InputError, TamperError

HASH = 32
"""Bytes per stored hash (SHA-256)."""


def entry_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a ledger entry (docs/design.md §5: type, v, at), or None."""
    if not isinstance(value, Mapping):
        return f"a ledger entry must be a JSON object, not {type(value).__name__}"
    kind = value.get("type")
    if kind not in ENTRY_TYPES:
        return f"entry type {kind!r} is not one of {', '.join(ENTRY_TYPES)}"
    missing = [key for key in ("v", "at") if key not in value]
    if missing:
        return f"{kind} entry lacks {' and '.join(repr(k) for k in missing)}"
    return None


def stored_type(value: object) -> str:
    """The storage class of a value read from a row (SQLite's names), for messages."""
    if value is None:
        return "NULL"
    return {bytes: "BLOB", str: "TEXT", int: "INTEGER", float: "REAL"}.get(type(value), "?")


# --- reading rows back ---------------------------------------------------------------------


def parse_stored_leaf(index: int, leaf: object) -> dict[str, Any]:
    """The entry a stored leaf holds; TamperError (naming ``index``) for anything else.

    The writer only ever stores the UTF-8 canonical JSON of an object as bytes, so a
    text value, bytes that are not UTF-8 or not JSON, JSON nested beyond the parser's
    recursion limit, and JSON that is not an object are all edits made outside
    clearance. Raises nothing else, whatever the bytes.
    """
    if not isinstance(leaf, bytes):
        raise TamperError(
            f"entry {index} stores its leaf as {stored_type(leaf)}, not a BLOB", index=index
        )
    try:
        value = json.loads(leaf.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TamperError(f"entry {index} is not UTF-8 (byte {exc.start})", index=index) from None
    except RecursionError:
        raise TamperError(f"entry {index} is JSON nested too deeply to read", index=index) from None
    except ValueError:
        raise TamperError(f"entry {index} is not valid JSON", index=index) from None
    if not isinstance(value, dict):
        raise TamperError(
            f"entry {index} is not a JSON object (it is a JSON {type(value).__name__})",
            index=index,
        )
    return value


def stored_entry(index: int, leaf: object) -> StoredEntry:
    """Parse a stored leaf; TamperError (naming ``index``) unless it is a JSON object BLOB."""
    value = parse_stored_leaf(index, leaf)
    return StoredEntry(index, cast(bytes, leaf), value)  # parse_stored_leaf checked the type


def mislabelled(found: StoredEntry, what: str) -> TamperError:
    """The refusal of a row a lookup by derived column returned whose leaf says otherwise."""
    return TamperError(
        f"entry {found.index} is indexed as {what} but its leaf says otherwise "
        f"(type {found.entry.get('type')!r}, trace_id {found.entry.get('trace_id')!r}): "
        "a derived column was edited",
        index=found.index,
    )


def derived_columns(entry: Mapping[str, Any]) -> tuple[Any, str | None, str | None]:
    """``(type, ref, trace_id)`` as :func:`prepare` stores them."""
    trace_id = entry.get("trace_id")
    return entry.get("type"), index_ref(entry), trace_id if type(trace_id) is str else None


def column_problem(
    index: int, entry: Mapping[str, Any], stored: tuple[object, object, object]
) -> str | None:
    """Why the stored ``(type, ref, trace_id)`` of row ``index`` differ from its leaf, or None."""
    for name, kept, derived in zip(
        ("type", "ref", "trace_id"), stored, derived_columns(entry), strict=True
    ):
        if kept != derived or type(kept) is not type(derived):
            return (
                f"entry {index}'s {name} column holds {kept!r} but its leaf says {derived!r}: "
                "the column was edited"
            )
    return None


def row_problem(
    index: int, hashes: object, stored: tuple[object, object, object], leaf: object
) -> str:
    """What is wrong with a row a database query flagged (TamperError when the leaf itself is).

    The message for a row whose hashes are not bytes, whose leaf is not an object, whose
    derived columns differ from the leaf or whose leaf is not a ledger entry; a generic
    one when none of these holds (the caller decides whether the flag was a false alarm).
    """
    if not isinstance(hashes, bytes):
        return f"entry {index} stores its hashes as {stored_type(hashes)}, not a BLOB"
    entry = parse_stored_leaf(index, leaf)
    problem = column_problem(index, entry, stored) or entry_problem(entry)
    return problem or f"entry {index}'s derived columns do not match its leaf"


# --- the tree in rows ------------------------------------------------------------------------


def node_row(level: int, idx: int) -> int:
    """The entry row that stores node ``(level, idx)``: the last leaf of its subtree."""
    return ((idx + 1) << level) - 1


def node_rows(keys: Sequence[tuple[int, int]]) -> list[int]:
    """The distinct rows that store the nodes ``keys`` (``(level, idx)`` pairs)."""
    return list({node_row(level, idx) for level, idx in keys})


def nodes_in(
    blobs: Mapping[int, object], keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The hashes of ``keys`` found in ``blobs`` (the ``hashes`` column of rows, by index).

    Keys whose row is missing or too short are left out of the result. TamperError when a
    row's hashes are not bytes (only an edit outside clearance stores another type).
    """
    for idx, blob in blobs.items():
        if not isinstance(blob, bytes):
            raise TamperError(
                f"entry {idx} stores its hashes as {stored_type(blob)}, not a BLOB", index=idx
            )
    found: dict[tuple[int, int], bytes] = {}
    for level, idx in keys:
        blob = blobs.get(node_row(level, idx))
        if isinstance(blob, bytes) and len(blob) >= HASH * (level + 1):
            found[(level, idx)] = blob[HASH * level : HASH * (level + 1)]
    return found


def require_nodes(
    found: Mapping[tuple[int, int], bytes], keys: Sequence[tuple[int, int]]
) -> list[bytes]:
    """The hashes of ``keys`` in order; TamperError naming the first missing one."""
    out: list[bytes] = []
    for level, idx in keys:
        value = found.get((level, idx))
        if value is None:
            raise TamperError(
                f"stored tree node (level {level}, index {idx}) is missing",
                index=idx << level,
            )
        out.append(value)
    return out


NodeFetch = Callable[[Sequence[tuple[int, int]]], Mapping[tuple[int, int], bytes]]
"""Reads the stored hashes of ``(level, idx)`` nodes with one query (:func:`nodes_in`)."""


def range_hashes(fetch: NodeFetch, ranges: Sequence[merkle.LeafRange]) -> list[bytes]:
    """The hashes of leaf ranges, from one ``fetch`` of their perfect subtrees."""
    parts = [merkle.perfect_subtrees(start, end) for start, end in ranges]
    keys = list(dict.fromkeys(key for part in parts for key in part))
    found = fetch(keys)
    out: list[bytes] = []
    for part in parts:
        hashes = require_nodes(found, part)
        out.append(merkle.fold_range([(lv, h) for (lv, _), h in zip(part, hashes, strict=True)]))
    return out


def frontier(fetch: NodeFetch, size: int) -> list[tuple[int, bytes]]:
    """The right edge of the stored tree of ``size`` leaves (``perfect_subtrees(0, size)``).

    One fetch of O(log n) nodes; TamperError when one is missing.
    """
    if size == 0:
        return []
    keys = merkle.perfect_subtrees(0, size)
    hashes = require_nodes(fetch(keys), keys)
    return [(level, h) for (level, _), h in zip(keys, hashes, strict=True)]


Row = tuple[bytes, str, str | None, str | None]
"""``(leaf, type, ref, trace_id)`` of one prepared entry."""

Prepared = tuple[list[Row], list[bytes], bool]
"""The rows of one ``append_many`` call, their leaf hashes and whether it waits for fsync."""


class Tree:
    """The committed tree: size and right-edge ``(level, hash)`` subtrees; root on demand."""

    __slots__ = ("_root", "frontier", "size")

    def __init__(self, size: int, frontier: Sequence[tuple[int, bytes]]) -> None:
        self.size = size
        self.frontier = tuple(frontier)
        self._root: bytes | None = None

    @property
    def root(self) -> bytes:
        """RFC 9162 MTH of the tree, folded from the frontier (log n hashes, cached)."""
        if self._root is None:
            self._root = merkle.fold_range(self.frontier) if self.frontier else merkle.EMPTY_ROOT
        return self._root


def prepare(entries: Sequence[Mapping[str, Any]], sync: bool = True) -> Prepared:
    """Canonicalise and hash entries (on the caller's thread); InputError for malformed ones.

    ``sync`` False lets the commit skip its fsync (see the stores' ``append``).
    """
    rows: list[Row] = []
    hashes: list[bytes] = []
    sha256 = hashlib.sha256
    for entry in entries:
        problem = entry_problem(entry)
        if problem is not None:
            raise InputError(problem)
        value = entry if type(entry) is dict else dict(entry)
        leaf = canonical_json(value)
        trace_id = value.get("trace_id")
        trace = trace_id if type(trace_id) is str else None
        rows.append((leaf, value["type"], index_ref(value), trace))
        hashes.append(sha256(b"\x00" + leaf).digest())
    return rows, hashes, sync


def extend(tree: Tree, batch: Sequence[Prepared]) -> tuple[Tree, list[Any], list[int]]:
    """Lay out ``batch`` after ``tree``: the grown tree, the flat row values and each start.

    Row values are ``(idx, hashes, type, ref, trace_id, leaf)``, row after row;
    ``hashes`` is the leaf hash followed by every subtree the leaf completes, computed
    from the in-memory right edge (no reads).
    """
    stack = list(tree.frontier)
    flat: list[Any] = []
    starts: list[int] = []
    sha256 = hashlib.sha256
    idx = tree.size
    for rows, hashes, _sync in batch:
        starts.append(idx)
        for (leaf, kind, ref, trace_id), digest in zip(rows, hashes, strict=True):
            level, node, stored = 0, digest, digest
            while stack and stack[-1][0] == level:  # leaf idx completes this subtree
                node = sha256(b"\x01" + stack.pop()[1] + node).digest()
                stored += node
                level += 1
            stack.append((level, node))
            flat += (idx, stored, kind, ref, trace_id, leaf)
            idx += 1
    return Tree(idx, stack), flat, starts
