"""What a row of a PostgreSQL ledger must look like, checked where no hash reaches.

As in SQLite (:mod:`.sqlite_rows`): the Merkle tree covers leaf bytes, nothing covers the
*derived* columns ``type``, ``ref`` and ``trace_id``
(:func:`~clearance._internal.ledger.layout.derived_columns`), and a cleared ``trace_id``
would hide an entry from its trace. :func:`first_bad_row` finds the first row of a range
whose leaf is not a JSON object of a known type or whose derived columns differ from
what the writer computes from the leaf, when a store opens and when it adopts rows
another process appended.

How: one statement over the range parses every leaf in the server (``jsonb``) and
returns the first *suspect* row; Python then reads that row alone and decides
(:func:`~clearance._internal.ledger.layout.parse_stored_leaf`,
:func:`~clearance._internal.ledger.layout.column_problem`). ``jsonb`` refuses a few
things Python's JSON parser accepts (a ``\\u0000`` escape, lone surrogates), so a suspect
row Python finds sound is passed over and the search goes on after it; the statement
never misses a row whose type or derived columns Python would refuse, because it
compares the same values. The *guarded* statement parses through ``ledger_leaf_json``
(NULL rather than an error for a leaf that is not UTF-8 JSON; one subtransaction per
row). When a store opens, the *fast* statement, a plain cast, runs first inside a
savepoint over the whole log, and the guarded one only when a leaf made it fail; rows
another process appended are checked by the guarded statement alone, sent with the
other reads of an adoption (:func:`send_row_check`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from clearance._internal.ledger.layout import (
    column_problem,
    entry_problem,
    parse_stored_leaf,
    stored_type,
)
from clearance._internal.ledger.store import ENTRY_TYPES
from clearance.errors import TamperError

if TYPE_CHECKING:
    import psycopg

_TYPES: Final = ", ".join(f"'{kind}'" for kind in ENTRY_TYPES)
_REF_KEY: Final = (
    "CASE type WHEN 'policy' THEN 'digest' WHEN 'key' THEN 'kid' "
    "WHEN 'trace' THEN 'trace_id' WHEN 'apikey' THEN 'name' ELSE 'request_id' END"
)
"""The leaf member :func:`~clearance._internal.ledger.store.index_ref` reads, in SQL."""


def _string_at(key: str) -> str:
    """SQL: the string member ``key`` of ``j`` (NULL when absent or not a string)."""
    return f"(CASE WHEN jsonb_typeof(j -> {key}) = 'string' THEN j ->> {key} END)"


def _suspect_query(parse: str) -> str:
    """The first row in ``[%s, %s)`` whose leaf or derived columns look wrong.

    ``OFFSET 0`` keeps the subquery apart, so each leaf is parsed once, not once per use.
    ``type`` is compared first in meaning: the ``ref`` member is chosen by the column,
    which is only trusted once it equals the leaf's type.
    """
    return f"""
SELECT idx FROM (
    SELECT idx, type, ref, trace_id, {parse} AS j FROM entries
    WHERE idx >= %s AND idx < %s OFFSET 0
) AS parsed
WHERE j IS NULL OR jsonb_typeof(j) <> 'object'
    OR type NOT IN ({_TYPES})
    OR type IS DISTINCT FROM {_string_at("'type'")}
    OR trace_id IS DISTINCT FROM {_string_at("'trace_id'")}
    OR ref IS DISTINCT FROM {_string_at(_REF_KEY)}
ORDER BY idx LIMIT 1"""  # noqa: S608  (constants only)


_FAST: Final = _suspect_query("convert_from(leaf, 'UTF8')::jsonb")
_GUARDED: Final = _suspect_query("ledger_leaf_json(leaf)")


Suspect = Callable[[], int | None]
"""Reads the index of the first suspect row of a statement already sent (None: none)."""


def _send_guarded(conn: psycopg.Connection[tuple[Any, ...]], start: int, stop: int) -> Suspect:
    cursor = conn.cursor()
    cursor.execute(_GUARDED, (start, stop))

    def first() -> int | None:
        row = cursor.fetchone()
        return None if row is None else int(row[0])

    return first


def _first_suspect_fast(
    conn: psycopg.Connection[tuple[Any, ...]], start: int, stop: int
) -> int | None:
    import psycopg

    try:
        with conn.transaction():  # a savepoint inside the caller's transaction
            row = conn.execute(_FAST, (start, stop)).fetchone()
    except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded):
        return _send_guarded(conn, start, stop)()
    return None if row is None else int(row[0])


def send_row_check(
    conn: psycopg.Connection[tuple[Any, ...]], start: int, stop: int
) -> Callable[[], None]:
    """Send the check of rows ``[start, stop)`` now; the returned call finishes it.

    The guarded statement is sent at once (in a pipeline it shares the round trip of
    whatever is sent with it); calling the result reads its answer and raises what
    :func:`first_bad_row` raises. For the rows another process appended.
    """
    if start >= stop:
        return lambda: None
    first = _send_guarded(conn, start, stop)
    return lambda: _confirm(conn, first(), stop)


def first_bad_row(conn: psycopg.Connection[tuple[Any, ...]], start: int, stop: int) -> None:
    """TamperError for the first row in ``[start, stop)`` that the writer cannot have stored.

    Checks that the leaf is a JSON object whose ``type`` is an entry type and that
    ``type``, ``ref`` and ``trace_id`` are exactly what
    :func:`~clearance._internal.ledger.layout.prepare` computes from the leaf. Leaf *bytes*
    are the Merkle tree's business. For a whole log (when a store opens): the fast
    statement first, inside a savepoint. Raises psycopg errors for I/O failures.
    """
    if start < stop:
        _confirm(conn, _first_suspect_fast(conn, start, stop), stop)


def _confirm(conn: psycopg.Connection[tuple[Any, ...]], index: int | None, stop: int) -> None:
    """Decide suspect row ``index`` in Python; go on after it while suspects are sound."""
    while index is not None:
        row = conn.execute(
            "SELECT hashes, type, ref, trace_id, leaf FROM entries WHERE idx = %s", (index,)
        ).fetchone()
        if row is None:  # only a concurrent edit outside clearance removes it
            raise TamperError(f"entry {index} is missing", index=index)
        hashes, kind, ref, trace_id, leaf = row
        if not isinstance(hashes, bytes):
            raise TamperError(
                f"entry {index} stores its hashes as {stored_type(hashes)}, not a BLOB",
                index=index,
            )
        entry = parse_stored_leaf(index, leaf)
        problem = column_problem(index, entry, (kind, ref, trace_id)) or entry_problem(entry)
        if problem is not None:
            raise TamperError(problem, index=index)
        # jsonb refused what JSON allows (a \u0000 escape): the row is sound, look further.
        index = _send_guarded(conn, index + 1, stop)() if index + 1 < stop else None
