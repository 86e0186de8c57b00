"""The PostgreSQL ledger's schema: component ``ledger`` of :mod:`clearance._internal.migrations`.

Tables (the SQLite ledger's, :mod:`.sqlite_db`, column for column):

* ``meta(key, value)`` — ``version``, ``origin`` and the ``vkey`` the log was created with;
* ``entries(idx, hashes, type, ref, trace_id, leaf)`` — ``leaf`` is the RFC 8785 canonical
  bytes of entry ``idx``, ``hashes`` its leaf hash followed by every perfect subtree it
  completes (:mod:`.layout`), so any proof or historical root is O(log n) rows; ``type``,
  ``ref`` and ``trace_id`` are derived columns that nothing trusts (:mod:`.postgres_rows`);
* ``checkpoints(size, root, note)`` — every signed C2SP tlog-checkpoint, by tree size.

Indexes end in ``idx`` (SQLite's indexes carry the rowid implicitly): the newest entry of
one type in a trace is one backward index seek however long the trace, and ``find``
returns its rows already in log order. ``type`` has no CHECK of the known entry types, so
a new type needs no migration; the row check refuses unknown ones instead.

Invariants:

* Append-only is enforced by the database, not only by clearance's code: statement-level
  triggers refuse every UPDATE, DELETE and TRUNCATE of the three tables (SQLSTATE 23000,
  "the clearance ledger is append-only"), whoever connects, short of a role that may drop
  them. Such an owner can rewrite history; the Merkle tree, the signed checkpoints and the
  anchors outside the database are what catch that (docs/design.md §7).
* Steps are append-only too: version 1 is never edited; a change is a new step.
"""

from __future__ import annotations

from typing import Final

from clearance._internal.migrations import Migration

COMPONENT: Final = "ledger"
"""The component name the ledger's schema version is recorded under."""

SCHEMA_VERSION: Final = "1"
"""``meta.version`` of a log (the row layout, the same number as in SQLite)."""

_APPEND_ONLY: Final = ("entries", "checkpoints", "meta")

_REFUSE_CHANGE: Final = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the clearance ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$"""

_LEAF_JSON: Final = """
CREATE FUNCTION ledger_leaf_json(leaf bytea) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN convert_from(leaf, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$"""
"""A leaf as ``jsonb``, or NULL when it is not UTF-8 JSON that ``jsonb`` accepts (the row
check's slow path: an exception inside a statement would abort the whole transaction)."""

MIGRATIONS: Final = (
    Migration(
        1,
        "the ledger: meta, entries with their Merkle nodes, checkpoints; append-only triggers",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE entries (
                idx BIGINT PRIMARY KEY CHECK (idx >= 0),
                hashes BYTEA NOT NULL,
                type TEXT NOT NULL,
                ref TEXT,
                trace_id TEXT,
                leaf BYTEA NOT NULL)""",
            "CREATE INDEX entries_by_ref ON entries (type, ref, idx) WHERE ref IS NOT NULL",
            "CREATE INDEX entries_by_trace_type ON entries (trace_id, type, idx) "
            "WHERE trace_id IS NOT NULL",
            """CREATE TABLE checkpoints (
                size BIGINT PRIMARY KEY CHECK (size > 0),
                root BYTEA NOT NULL,
                note TEXT NOT NULL)""",
            _REFUSE_CHANGE,
            _LEAF_JSON,
            *(
                f"""CREATE TRIGGER {table}_append_only
                    BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"""
                for table in _APPEND_ONLY
            ),
        ),
    ),
)
"""The ledger's schema steps, oldest first (see the module invariants)."""
