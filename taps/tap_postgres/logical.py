"""LOG_BASED replication: a table's inserts, updates and deletes, from PostgreSQL's logical decoding.

Each LOG_BASED stream has a replication slot of its own, with the `pgoutput` plugin that comes with
PostgreSQL, and a publication that covers its table; both are created when missing (the publication
first: pgoutput can only read changes made after it exists). The slot is read with
`pg_logical_slot_peek_binary_changes`, which leaves it where it is. It is moved on
(`pg_replication_slot_advance`) at the start of the next sync, and only to the bookmark that sync was
given: elt passes a tap the state the target emitted after committing, so the slot never passes what
the target has loaded. A failed sync leaves the slot as it was; the next one reads its changes again.

The first sync (no bookmark) creates the slot, then reads the table in full with the FULL_TABLE
path's COPY; the bookmark becomes the slot's position at creation, so the changes committed while
the table was copied are read again after it (the targets load by key and keep the last version).

A sync reads the changes committed after the bookmark, up to the WAL flushed when it started,
through a server-side cursor a chunk at a time, in commit order. pgoutput sends values as text:
PostgreSQL casts them back to their columns' types and reads them with the FULL_TABLE path's own
expressions and decoder (`binary_copy`), so that a changed row's JSON is exactly a copied row's.
Each record carries `_sdc_lsn`, the WAL position of its change (for copied rows, one below every
change read after them), and `_sdc_deleted_at`, the commit time of a delete, null otherwise. The
bookmark is the end of the last transaction sent in full, or the WAL position read up to.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg._encodings import pg2pyenc
from singer_sdk.exceptions import FatalSyncError

from taps.tap_postgres.binary_copy import copy_batches
from taps.tap_postgres.discovery import Column, Table
from taps.tap_postgres.pgtypes import ColumnType, JsonValue, Wire, column_type

LSN = "_sdc_lsn"
DELETED_AT = "_sdc_deleted_at"
CHANGE_COLUMNS: tuple[tuple[str, JsonValue], ...] = (
    (LSN, JsonValue.INTEGER),
    (DELETED_AT, JsonValue.TIMESTAMP),
)
"""The properties a LOG_BASED stream's records have after the table's columns, and how they are written."""
_CHANGE_TYPES: dict[str, ColumnType] = {
    LSN: column_type("int8", "b", "bigint", -1),
    DELETED_AT: column_type("timestamptz", "b", "timestamp with time zone", -1),
}

DEFAULT_SLOT = "tappostgres"
SLOT_PATTERN = r"^(?!pg_)[a-z0-9_]{1,63}$"
"""What PostgreSQL takes as a slot name (MeltanoLabs' pattern, without the upper case PostgreSQL refuses)."""
MAX_CHUNK_BYTES = 32 * 2**20
"""Bytes of changes decoded at a time, whatever the number of rows."""
_FETCH_ROWS = 2_000
_INT16 = struct.Struct(">h").unpack_from
_INT32 = struct.Struct(">i").unpack_from
_PG_EPOCH_US = 946_684_800_000_000
_TIMESTAMPTZ = pa.timestamp("us", tz="UTC")


class ReplicationError(FatalSyncError):
    """A LOG_BASED stream cannot be read: the server, table, publication or slot is not as it needs."""


# -- the stream's schema and settings -------------------------------------------------------------


def with_change_properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A stream's JSON Schema with the properties LOG_BASED adds: `_sdc_lsn` and `_sdc_deleted_at`."""
    properties = dict(schema.get("properties") or {})
    for name, kind in _CHANGE_TYPES.items():
        properties.setdefault(name, kind.property_schema(nullable=True))
    return {**schema, "properties": properties}


def log_based_entry(entry: dict[str, Any]) -> None:
    """Give a LOG_BASED catalog entry the change properties, always selected (`inclusion: automatic`)."""
    entry["schema"] = with_change_properties(entry.get("schema") or {})
    items = entry.setdefault("metadata", [])
    found = {tuple(item.get("breadcrumb") or ()): item for item in items}
    for name in _CHANGE_TYPES:
        item = found.get(("properties", name))
        if item is None:
            item = {"breadcrumb": ["properties", name], "metadata": {}}
            items.append(item)
        item.setdefault("metadata", {}).update(inclusion="automatic", selected=True)


@dataclass(frozen=True)
class Replication:
    """The slot and publication of one stream."""

    slot: str
    publication: str


def replication_for(config: Mapping[str, Any], stream: str) -> Replication:
    """`stream_options.<stream>.replication_slot_name` / `publication_name`, else names made from the
    tap's `replication_slot_name` and the stream (the publication is named like the slot)."""
    options = (config.get("stream_options") or {}).get(stream) or {}
    slot = options.get("replication_slot_name") or slot_name(
        config.get("replication_slot_name") or DEFAULT_SLOT, stream
    )
    if not re.match(SLOT_PATTERN, slot):
        raise ReplicationError(
            f"tap-postgres: stream '{stream}': replication slot name '{slot}' is not valid: PostgreSQL "
            "takes 1 to 63 lower case letters, digits and underscores, not starting with pg_"
        )
    return Replication(slot, str(options.get("publication_name") or slot))


def slot_name(prefix: str, stream: str) -> str:
    """`<prefix>_<schema>_<table>_<hash of the stream name>`: readable, and two streams never share a slot."""
    readable = re.sub(r"[^a-z0-9_]+", "_", stream.lower()).strip("_")
    digest = hashlib.sha1(stream.encode("utf-8")).hexdigest()[:8]
    return f"{f'{prefix}_{readable}'[:54].rstrip('_')}_{digest}"


def lsn_text(lsn: int) -> str:
    """PostgreSQL's `X/Y` spelling of a WAL position."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


# -- reading a stream -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeStream:
    """What reading one stream's changes needs: its table, the columns read (in the order of its
    records) with the wire formats of their FULL_TABLE read expressions, and its slot and publication."""

    name: str
    table: Table
    columns: tuple[Column, ...]
    wires: tuple[Wire, ...]
    replication: Replication


Batch = tuple[list[pa.Array], int | None]
"""Rows (one array per column, then `_sdc_lsn` and `_sdc_deleted_at`; empty when there are none) and the
bookmark they bring the stream to (None: unchanged)."""


def read_log_based(
    conn: psycopg.Connection[Any],
    stream: ChangeStream,
    bookmark: int | str | None,
    snapshot: Callable[[], Iterable[list[pa.Array]]],
    rows: int,
    logger: logging.Logger,
) -> Iterator[Batch]:
    """A LOG_BASED sync of `stream` from `bookmark` (a WAL position, None on the first sync).

    The first sync creates the slot, then reads the table with `snapshot`; its batches leave the
    bookmark unset until the copy is complete, so a sync stopped during it starts it again.
    """
    source = _prepare(conn, stream, logger)
    slot = _slot(conn, stream)
    if bookmark is None:
        if slot is None:
            slot = _create_slot(conn, stream, logger)
        else:
            logger.info("Stream '%s': no bookmark; copying the table, then reading slot '%s' from %s",
                        stream.name, stream.replication.slot, lsn_text(slot.confirmed))  # fmt: skip
        # Below every change the slot will give: the greatest `_sdc_lsn` of a key is its last version.
        copied = pa.scalar(max(slot.restart - 1, 0), pa.int64())
        for arrays in snapshot():
            count = len(arrays[0])
            lsns = pa.repeat(copied, count)
            yield [*arrays, lsns, pa.nulls(count, _TIMESTAMPTZ)], None
        start = slot.confirmed
        yield [], start
    else:
        start = int(bookmark)
        if slot is None:
            raise ReplicationError(
                f"tap-postgres: stream '{stream.name}': replication slot '{stream.replication.slot}' does "
                "not exist, so the changes since the bookmark are lost; sync the stream again from scratch "
                "(`elt sync --full-refresh`), which creates the slot and copies the table"
            )
        if start < slot.confirmed:
            raise ReplicationError(
                f"tap-postgres: stream '{stream.name}': replication slot '{stream.replication.slot}' is at "
                f"{lsn_text(slot.confirmed)}, past the bookmark {lsn_text(start)} (another reader moved "
                "it), so changes in between are lost; sync the stream again from scratch "
                "(`elt sync --full-refresh`)"
            )
        if start > slot.confirmed:
            # The state the sync was given is what the target committed: the slot may free the WAL before it.
            try:
                conn.execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                    (stream.replication.slot, lsn_text(start)),
                )
            except psycopg.errors.ObjectInUse as exc:
                raise _in_use(stream, exc) from None
    yield from _changes(conn, stream, source, start, rows, logger)


@dataclass(frozen=True)
class _Source:
    oid: int
    codec: str
    """The Python codec of the server encoding, which pgoutput's text values are in."""


_TABLE = """
SELECT c.oid, c.relkind, c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       current_setting('wal_level')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_PUBLICATION = """
SELECT p.pubviaroot, p.pubinsert AND p.pubupdate AND p.pubdelete,
       EXISTS (SELECT 1 FROM pg_publication_tables t
               WHERE t.pubname = p.pubname AND t.schemaname = %s AND t.tablename = %s)
FROM pg_publication p WHERE p.pubname = %s
"""


def _prepare(conn: psycopg.Connection[Any], stream: ChangeStream, logger: logging.Logger) -> _Source:
    """Check that the server and table can be read LOG_BASED; create the publication when missing."""
    table = stream.table
    found = conn.execute(_TABLE, (table.schema, table.name)).fetchone()
    if found is None:
        raise ReplicationError(
            f"tap-postgres: stream '{stream.name}': table {table.schema}.{table.name} is gone"
        )
    oid, kind, identity, has_key, wal_level = found
    where = f"tap-postgres: stream '{stream.name}' is LOG_BASED"
    qualified = _quote(conn, table.schema, table.name)
    if wal_level != "logical":
        raise ReplicationError(
            f"{where}, but the server's wal_level is '{wal_level}'; run "
            "`ALTER SYSTEM SET wal_level = logical` and restart PostgreSQL (on a managed service: turn "
            "logical replication on)"
        )
    if kind not in ("r", "p"):
        raise ReplicationError(
            f"{where}, but {table.schema}.{table.name} is not a table; use FULL_TABLE or INCREMENTAL"
        )
    if not (identity == "f" or (identity == "d" and has_key)):
        raise ReplicationError(
            f"{where}, but {table.schema}.{table.name} has no primary key to tell its deleted and updated "
            f"rows by; add one, or run `ALTER TABLE {qualified} REPLICA IDENTITY FULL`"
        )
    publication = stream.replication.publication
    existing = conn.execute(_PUBLICATION, (table.schema, table.name, publication)).fetchone()
    if existing is None:
        statement = f"CREATE PUBLICATION {_quote(conn, publication)} FOR TABLE {qualified}"
        if kind == "p":
            statement += " WITH (publish_via_partition_root = true)"  # changes under the table's own name
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ReplicationError(
                f"{where}: cannot create its publication ({str(exc).strip()}); have the table's owner run "
                f"`{statement}`, or grant this user CREATE on the database and ownership of the table"
            ) from None
        logger.info("Stream '%s': created publication '%s'", stream.name, publication)
    else:
        via_root, publishes_all, covers = existing
        if not covers:
            raise ReplicationError(
                f"{where}, but publication '{publication}' does not cover {table.schema}.{table.name}; run "
                f"`ALTER PUBLICATION {_quote(conn, publication)} ADD TABLE {qualified}`"
            )
        if kind == "p" and not via_root:
            raise ReplicationError(
                f"{where}, but publication '{publication}' publishes the partitions of "
                f"{table.schema}.{table.name} under their own names; run `ALTER PUBLICATION "
                f"{_quote(conn, publication)} SET (publish_via_partition_root = true)`"
            )
        if not publishes_all:
            logger.warning(
                "Stream '%s': publication '%s' does not publish every insert, update and delete; "
                "those it leaves out are not synced", stream.name, publication
            )  # fmt: skip
    encoding = conn.info.parameter_status("server_encoding") or "UTF8"
    return _Source(int(oid), "utf-8" if encoding in ("UTF8", "SQL_ASCII") else pg2pyenc(encoding.encode()))


@dataclass(frozen=True)
class _Slot:
    confirmed: int
    """confirmed_flush_lsn: changes committed before it are not read again."""
    restart: int
    """restart_lsn: every change read from the slot is at or after it."""


_SLOT = """
SELECT plugin, database = current_database(), temporary,
       (confirmed_flush_lsn - '0/0')::int8, (restart_lsn - '0/0')::int8
FROM pg_replication_slots WHERE slot_name = %s
"""


def _slot(conn: psycopg.Connection[Any], stream: ChangeStream) -> _Slot | None:
    found = conn.execute(_SLOT, (stream.replication.slot,)).fetchone()
    if found is None:
        return None
    plugin, here, temporary, confirmed, restart = found
    if plugin != "pgoutput" or not here or temporary or confirmed is None:
        raise ReplicationError(
            f"tap-postgres: stream '{stream.name}': replication slot '{stream.replication.slot}' exists but "
            f"is not a pgoutput slot of database {conn.info.dbname}; name another with "
            f"`stream_options.{stream.name}.replication_slot_name` or `replication_slot_name`"
        )
    return _Slot(int(confirmed), int(restart))


def _create_slot(conn: psycopg.Connection[Any], stream: ChangeStream, logger: logging.Logger) -> _Slot:
    slot = stream.replication.slot
    try:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ConfigurationLimitExceeded) as exc:
        raise ReplicationError(
            f"tap-postgres: stream '{stream.name}': cannot create replication slot '{slot}': "
            f"{str(exc).strip()} (the user needs the REPLICATION attribute; every LOG_BASED stream "
            "takes one of the server's max_replication_slots)"
        ) from None
    created = _slot(conn, stream)
    assert created is not None
    logger.info("Stream '%s': created replication slot '%s' at %s; copying the table",
                stream.name, slot, lsn_text(created.confirmed))  # fmt: skip
    return created


def _in_use(stream: ChangeStream, exc: Exception) -> ReplicationError:
    return ReplicationError(
        f"tap-postgres: stream '{stream.name}': {str(exc).strip()}: another sync of the stream is running, "
        "or another project reads the same slot; give each project or environment a "
        "replication_slot_name of its own"
    )


# -- changes --------------------------------------------------------------------------------------

_PEEK = """
SELECT (lsn - '0/0')::int8, data
FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL,
     'proto_version', '1', 'publication_names', %s)
"""


def _changes(
    conn: psycopg.Connection[Any],
    stream: ChangeStream,
    source: _Source,
    bookmark: int,
    rows: int,
    logger: logging.Logger,
) -> Iterator[Batch]:
    """The changes committed after `bookmark` and before the WAL flushed now, `rows` at a time."""
    ((upto,),) = conn.execute("SELECT (pg_current_wal_flush_lsn() - '0/0')::int8").fetchall()
    decoder = _Decoder(stream, source, bookmark, logger)
    pending: list[_Row] = []
    size = 0
    publication = _quote(conn, stream.replication.publication)
    # The peek's rows are made in one go on the server (spilled to disk past work_mem); the cursor
    # brings them over a few at a time, so this process holds one chunk, however many changes wait.
    with conn.transaction(), conn.cursor("elt_tap_postgres_changes", binary=True) as cursor:
        try:
            cursor.execute(_PEEK, (stream.replication.slot, lsn_text(upto), publication))
        except psycopg.errors.ObjectInUse as exc:
            raise _in_use(stream, exc) from None
        while fetched := cursor.fetchmany(_FETCH_ROWS):
            for lsn, data in fetched:
                found = decoder.rows(lsn, data)
                if not found:
                    continue
                pending.extend(found)
                size += len(data)
                if len(pending) >= rows or size >= MAX_CHUNK_BYTES:
                    yield _arrays(conn, stream, source, pending), decoder.committed
                    pending, size = [], 0
        # Every transaction that committed before `upto` was decoded: the next sync starts after them.
        end = max(decoder.committed or bookmark, upto)
        yield (_arrays(conn, stream, source, pending) if pending else []), end
    logger.info("Stream '%s': %d changes read from slot '%s', up to %s",
                stream.name, decoder.count, stream.replication.slot, lsn_text(end))  # fmt: skip


class _Unchanged:
    """A value pgoutput leaves out: a TOASTed value that the update did not change."""


UNCHANGED = _Unchanged()
Value = bytes | None | _Unchanged


@dataclass(frozen=True)
class _Row:
    lsn: int
    deleted_at: int | None
    """Microseconds since 1970 (the commit time) for a delete."""
    values: list[Value]
    """One per column of the stream."""


class _Decoder:
    """Turns pgoutput messages (protocol version 1) into the stream's rows.

    Messages other than Begin, Commit, Relation, Insert, Update, Delete and Truncate (Type, Origin)
    are passed over; so are the changes of other tables and of transactions before the bookmark.
    """

    def __init__(self, stream: ChangeStream, source: _Source, bookmark: int, logger: logging.Logger):
        self.stream = stream
        self.source = source
        self.bookmark = bookmark
        self.logger = logger
        self.committed: int | None = None
        """The end of the last transaction decoded in full."""
        self.count = 0
        self._skip = False
        self._time = 0
        self._positions: list[int | None] | None = None
        self._described = False
        names = [column.name for column in stream.columns]
        self._keys = [names.index(key) for key in stream.table.primary_key if key in names]

    def rows(self, lsn: int, data: bytes) -> list[_Row]:
        """The stream's rows in one message (most have none)."""
        kind = data[0]
        if kind == 0x42:  # B: Begin
            final_lsn, time = struct.unpack_from(">Qq", data, 1)
            self._skip = final_lsn < self.bookmark  # as the slot itself: committed before the bookmark
            self._time = time + _PG_EPOCH_US
        elif kind == 0x43:  # C: Commit
            if not self._skip:
                self.committed = struct.unpack_from(">Q", data, 10)[0]  # after flags and the commit LSN
        elif kind == 0x52:  # R: Relation, sent before a table's first change and after it changes
            self._relation(data)
        elif kind in (0x49, 0x55, 0x44) and not self._skip:  # I, U, D
            if struct.unpack_from(">I", data, 1)[0] != self.source.oid:
                return []
            return self._change(kind, lsn, data)
        elif kind == 0x54 and not self._skip:  # T: Truncate
            count = struct.unpack_from(">i", data, 1)[0]
            if self.source.oid in struct.unpack_from(f">{count}I", data, 6):
                self.logger.warning(
                    "Stream '%s': the table was truncated at %s; a TRUNCATE is not replayed: run "
                    "`elt sync --full-refresh` to copy the table again", self.stream.name, lsn_text(lsn)
                )  # fmt: skip
        return []

    def _relation(self, data: bytes) -> None:
        if struct.unpack_from(">I", data, 1)[0] != self.source.oid:
            return
        at = data.index(0, 5) + 1  # namespace
        at = data.index(0, at) + 1 + 1  # name, replica identity
        (count,) = struct.unpack_from(">h", data, at)
        at += 2
        names = []
        for _ in range(count):
            end = data.index(0, at + 1)
            names.append(data[at + 1 : end].decode(self.source.codec))
            at = end + 1 + 8  # flags, name, type oid and modifier
        positions = [names.index(c.name) if c.name in names else None for c in self.stream.columns]
        # Most often the stream reads every column, in the table's order: the tuple is the row as it is.
        self._positions = None if positions == list(range(count)) else positions
        self._described = True

    def _change(self, kind: int, lsn: int, data: bytes) -> list[_Row]:
        at = 5
        old: list[Value] | None = None
        if data[at] in (0x4B, 0x4F):  # K: the old key, O: the old row (REPLICA IDENTITY FULL)
            old, at = self._tuple(data, at + 1)
        if kind == 0x44:
            assert old is not None
            self.count += 1
            return [_Row(lsn, self._time, old)]
        new, _ = self._tuple(data, at + 1)  # after N
        self.count += 1
        if old is None:
            return [_Row(lsn, None, new)]
        # A full old row (REPLICA IDENTITY FULL) has the values an update left unchanged.
        new = [
            kept if value is UNCHANGED and isinstance(kept, bytes) else value
            for value, kept in zip(new, old, strict=True)
        ]
        if self._keys and any(new[i] != old[i] for i in self._keys):
            # The key changed: the row under the old key is gone.
            return [_Row(lsn, self._time, old), _Row(lsn, None, new)]
        return [_Row(lsn, None, new)]

    def _tuple(self, data: bytes, at: int) -> tuple[list[Value], int]:
        """TupleData at `at`, as the stream's columns; and where it ends. (Runs for every change.)"""
        (count,) = _INT16(data, at)
        at += 2
        values: list[Value] = []
        append = values.append
        for _ in range(count):
            kind = data[at]
            if kind == 0x74:  # t: text
                (size,) = _INT32(data, at + 1)
                at += 5 + size
                append(data[at - size : at])
            else:
                append(UNCHANGED if kind == 0x75 else None)  # u: an unchanged TOAST value; n: null
                at += 1
        if not self._described:
            raise ReplicationError(
                f"tap-postgres: stream '{self.stream.name}': a change came before the Relation message "
                "that describes its table"
            )
        if self._positions is None:
            return values, at
        return [values[i] if i is not None and i < count else None for i in self._positions], at


def _arrays(
    conn: psycopg.Connection[Any], stream: ChangeStream, source: _Source, rows: Sequence[_Row]
) -> list[pa.Array]:
    """The rows' arrays, as the FULL_TABLE path reads them, then `_sdc_lsn` and `_sdc_deleted_at`."""
    statement = _values_statement(conn, stream, source, rows)
    with conn.cursor() as cursor:
        arrays = next(iter(copy_batches(cursor, statement, stream.wires, len(rows))))
    lsns = pa.array([row.lsn for row in rows], pa.int64())
    deleted = pa.array([row.deleted_at for row in rows], pa.int64()).cast(_TIMESTAMPTZ)
    return [*arrays, lsns, deleted]


def _values_statement(
    conn: psycopg.Connection[Any], stream: ChangeStream, source: _Source, rows: Sequence[_Row]
) -> str:
    """A binary COPY of the rows' text values cast to their columns' types and read as in FULL_TABLE.

    An unchanged TOASTed value that the old row does not carry either is read from the table: the
    row's current value, which the later changes of the row, read after this one, bring up to date.
    """
    arrays: list[str] = []
    aliases: list[str] = []
    reads: list[str] = []
    lookups = False
    columns = zip(*(row.values for row in rows), strict=True)
    for index, (column, values) in enumerate(zip(stream.columns, columns, strict=True)):
        arrays.append(_text_array(values, source.codec))
        aliases.append(f"c{index}")
        value = f"CAST(u.c{index} AS {column.cast_type})"
        if any(v is UNCHANGED for v in values):
            flags = "{" + ",".join("t" if v is UNCHANGED else "f" for v in values) + "}"
            arrays.append(f"'{flags}'::bool[]")
            aliases.append(f"u{index}")
            value = f"CASE WHEN u.u{index} THEN t.{_quote(conn, column.name)} ELSE {value} END"
            lookups = True
        reads.append(column.type.read(value, records=True)[0])
    query = (
        f"SELECT {', '.join(reads)} FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS u({', '.join(aliases)}, n)"
    )
    if lookups:
        at = {column.name: i for i, column in enumerate(stream.columns)}
        keys = " AND ".join(
            f"t.{_quote(conn, key)} = CAST(u.c{at[key]} AS {stream.columns[at[key]].cast_type})"
            for key in stream.table.primary_key
        )
        table = _quote(conn, stream.table.schema, stream.table.name)
        query += f" LEFT JOIN {table} AS t ON {keys or 'false'}"
    return f"COPY ({query} ORDER BY u.n) TO STDOUT (FORMAT binary)"


def _text_array(values: Iterable[Value], codec: str) -> str:
    """A text[] of the values (NULL for null and unchanged ones), as SQL: the array's text, dollar-quoted.

    Made of the bytes as they came and decoded once: this runs for every value of every change.
    """
    items = [
        b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        if isinstance(value, bytes)
        else b"NULL"
        for value in values
    ]
    text = (b"{" + b",".join(items) + b"}").decode(codec)
    tag, count = "$elt$", 0
    while tag in text:  # the text ends with `}`: only a tag inside it would end the quote early
        count += 1
        tag = f"$elt{count}$"
    return f"{tag}{text}{tag}::text[]"


def _quote(conn: psycopg.Connection[Any], *names: str) -> str:
    return sql.Identifier(*names).as_string(conn)
