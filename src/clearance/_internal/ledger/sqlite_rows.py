"""What a row of a SQLite ledger must look like, checked where no hash reaches.

The Merkle tree covers leaf bytes; nothing covers how a row stores them or the
*derived* columns ``type``, ``ref`` and ``trace_id`` (a function of the leaf,
:func:`~clearance._internal.ledger.layout.derived_columns`, kept only to find rows).
A row another program edited can therefore hold a TEXT leaf, bytes that are not
UTF-8, JSON nested past the parser's limit, JSON that is not an object, or a cleared
``trace_id`` that hides the entry from its trace. Every such row is a
:class:`~clearance.errors.TamperError` naming its index, never a foreign exception:

* :func:`~clearance._internal.ledger.layout.parse_stored_leaf` is how every reader turns
  a stored leaf into an entry;
* :func:`first_bad_row` finds the first bad row of a range in one SQL pass, when a
  store opens and when it adopts rows another writer added;
* :func:`~clearance._internal.ledger.layout.column_problem` is the same comparison for
  the auditor's Python pass.
"""

from __future__ import annotations

import sqlite3

from clearance._internal.ledger.layout import row_problem
from clearance._internal.ledger.store import ENTRY_TYPES
from clearance.errors import TamperError

_TYPES = ", ".join(f"'{kind}'" for kind in ENTRY_TYPES)
_REF_PATH = (
    "CASE type WHEN 'policy' THEN '$.digest' WHEN 'key' THEN '$.kid' "
    "WHEN 'trace' THEN '$.trace_id' WHEN 'apikey' THEN '$.name' ELSE '$.request_id' END"
)


def _string_column_differs(column: str, path: str, leaf: str) -> str:
    """SQL: ``column`` is not the string at ``path`` of ``leaf`` (NULL when not a string)."""
    return (
        f"CASE WHEN {column} IS NULL THEN json_type({leaf}, {path}) IS 'text' "
        f"ELSE {column} IS NOT json_extract({leaf}, {path}) "
        f"OR json_type({leaf}, {path}) IS NOT 'text' END"
    )


def _bad_row_query(leaf: str, guard: str) -> str:
    """The first row in ``[?, ?)`` whose storage or derived columns the writer cannot produce.

    ``type`` is compared first, so the ``ref`` path may be chosen by the column.
    """
    return f"""
SELECT idx FROM entries WHERE idx >= ? AND idx < ? AND (
    typeof(leaf) IS NOT 'blob' OR typeof(hashes) IS NOT 'blob' OR {guard}
    OR type NOT IN ({_TYPES})
    OR type IS NOT json_extract({leaf}, '$.type')
    OR {_string_column_differs("trace_id", "'$.trace_id'", leaf)}
    OR {_string_column_differs("ref", _REF_PATH, leaf)}
) ORDER BY idx LIMIT 1"""  # noqa: S608  (constants only)


# SQLite's JSON functions share a parse cache, so the fast query parses each leaf
# about once. Malformed JSON makes them raise, aborting the statement; only then
# does the guarded query run, which never hands a JSON function anything but valid
# JSON (CASE is evaluated lazily) at the price of a parse at every use. A JSON
# array or scalar has no '$.type' and fails the type comparison.
_FAST = _bad_row_query("CAST(leaf AS TEXT)", "0")
_GUARDED = _bad_row_query(
    "(CASE WHEN json_valid(CAST(leaf AS TEXT)) THEN CAST(leaf AS TEXT) ELSE '{}' END)",
    "NOT json_valid(CAST(leaf AS TEXT))",
)


def first_bad_row(conn: sqlite3.Connection, start: int, stop: int) -> None:
    """TamperError for the first row in ``[start, stop)`` that the writer cannot have stored.

    Checks what no hash covers and what readers would trip over: ``leaf`` and
    ``hashes`` are BLOBs, the leaf is a JSON object whose ``type`` is an entry type,
    and the derived columns ``type``, ``ref`` and ``trace_id`` are exactly what
    :func:`~clearance._internal.ledger.layout.prepare` computes from the leaf (a cleared
    ``trace_id`` would hide an entry from its trace). Leaf *bytes* are the Merkle
    tree's business. Raises sqlite3.Error for I/O failures.
    """
    if start >= stop:
        return
    try:
        row = conn.execute(_FAST, (start, stop)).fetchone()
    except sqlite3.OperationalError as exc:
        if "JSON" not in str(exc):
            raise
        row = conn.execute(_GUARDED, (start, stop)).fetchone()
    if row is None:
        return
    index = int(row[0])
    hashes, kind, ref, trace_id, leaf = conn.execute(
        "SELECT hashes, type, ref, trace_id, leaf FROM entries WHERE idx = ?", (index,)
    ).fetchone()
    raise TamperError(row_problem(index, hashes, (kind, ref, trace_id), leaf), index=index)
