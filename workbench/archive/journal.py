"""Records and manifests: every change to the catalog is on disk before the catalog commits it.

The catalog is an index, not the only copy (restic's index can be rebuilt from its packs; so can
ours). Each writing transaction, just before its COMMIT:

1. writes a **manifest** for every experiment it changed (content-addressed, in ``manifests/``):
   the experiment's rows as they are after the transaction, its library rows (factors,
   performance, combination, usage, strategy), its stored-file and object rows, and a pointer to
   its return series (a Parquet object in the store);
2. writes one **record** (``records/<seq>-<id>.json``): what kind of change it was, the row sets
   of the archive-wide tables it changed (holds, reviews, approvals, plans, deletions, imports,
   requests, combinations, runs, cursor, loop states, errors), and the manifests of step 1;
3. fsyncs both, then commits.

A *row set* says "after this change, the rows of TABLE matching MATCH are exactly these": it
carries every column as DuckDB's own text (which round-trips every type exactly), or, for the two
bulky tables, a Parquet object. Replaying the records in sequence order (`replay`) therefore
rebuilds every table exactly. `seq` comes from ``wb_meta.record_seq``, bumped inside the same
transaction, so committed records never share a number; a record whose transaction never
committed (a crash between fsync and COMMIT) is replayed too, which only completes work whose
objects were already durable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.archive import ondemand
from workbench.archive.db import fetch_one, rollback_quietly, utc_now
from workbench.archive.durable import fsync_dir, write_atomic
from workbench.archive.layout import ArchiveLayout
from workbench.archive.store import ObjectStore, StoredObject
from workbench.errors import ArchiveError, VerificationError

RECORD_FORMAT = "workbench.record"
MANIFEST_FORMAT = "workbench.manifest"
FORMAT_VERSION = 1
SEQ_KEY = "record_seq"
MANIFEST_CHUNK = 256
"""Manifests are built this many experiments at a time (one query per table per chunk)."""
BULK_TABLES = frozenset({"aistock_return_series", "aistock_factor_values"})
SERIES_COLUMNS = [
    "account",
    "return",
    "total_turnover",
    "turnover",
    "total_cost",
    "cost",
    "value",
    "cash",
    "bench",
]
"""The value columns of `aistock_return_series` (beside experiment_id and datetime), as Qlib names them."""
_RECORD_NAME = re.compile(r"^(\d{12})-([0-9a-f]{32})\.json$")


# ---------------------------------------------------------------- row sets


_TextRow = list[str | None]  # one catalog row, every value as DuckDB text (None: NULL)


@dataclass
class RowSet:
    """After the change, the rows of `table` matching `match` (column → values; {} = all) are these."""

    table: str
    match: dict[str, list[Any]]
    columns: list[str] = field(default_factory=list)
    rows: list[_TextRow] = field(default_factory=list)
    parquet: dict[str, Any] | None = None  # {"sha256", "storage_key", "rows", "constants": {col: value}}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "match": self.match}
        if self.parquet is not None:
            out["parquet"] = self.parquet
        else:
            out["columns"] = self.columns
            out["rows"] = self.rows
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowSet:
        return cls(
            str(data["table"]),
            dict(data.get("match") or {}),
            list(data.get("columns") or []),
            list(data.get("rows") or []),
            data.get("parquet"),
        )


_COLUMNS: dict[str, list[tuple[str, str]]] = {}
_HAS_KEY: dict[str, bool] = {}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, SQL type) of a catalog table, in order; unknown tables are refused (records are data)."""
    if table not in _COLUMNS:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        if not rows:
            raise ArchiveError(f"a record names table {table!r}, which the catalog does not have")
        _COLUMNS[table] = [(r[0], r[1]) for r in rows]
        keys = fetch_one(
            con,
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        )
        _HAS_KEY[table] = bool(keys[0]) if keys else False
    return _COLUMNS[table]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _where(con: duckdb.DuckDBPyConnection, table: str, match: dict[str, list[Any]]) -> tuple[str, list[Any]]:
    known = {c for c, _ in table_columns(con, table)}
    clauses, params = [], []
    for column, values in match.items():
        if column not in known:
            raise ArchiveError(f"a record matches {table}.{column}, which the catalog does not have")
        clauses.append(f"{_quote(column)} IN (SELECT unnest(?))")  # a hash semi-join, whatever the list size
        params.append(list(values))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def capture(con: duckdb.DuckDBPyConnection, table: str, match: dict[str, list[Any]]) -> RowSet:
    """The rows of `table` matching `match`, every value as DuckDB text (exact round trip)."""
    columns = table_columns(con, table)
    if any(len(v) == 0 for v in match.values()):
        return RowSet(table, match, [c for c, _ in columns], [])
    where, params = _where(con, table, match)
    select = ", ".join(f"CAST({_quote(c)} AS VARCHAR)" for c, _ in columns)
    rows = con.execute(f"SELECT {select} FROM {_quote(table)}{where} ORDER BY ALL", params).fetchall()
    return RowSet(table, match, [c for c, _ in columns], [list(r) for r in rows])


def capture_bulk(
    con: duckdb.DuckDBPyConnection, store: ObjectStore, table: str, match: dict[str, list[Any]]
) -> tuple[RowSet, StoredObject | None]:
    """A bulky row set as a Parquet object in the store (returned so the caller lists it in wb_objects)."""
    table_columns(con, table)
    where, params = _where(con, table, match)
    frame = pl.from_arrow(
        con.sql(f"SELECT * FROM {_quote(table)}{where} ORDER BY ALL", params=params).to_arrow_table()
    )
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return RowSet(table, match), None
    obj = _put_parquet(store, frame)
    return RowSet(
        table,
        match,
        parquet={"sha256": obj.sha256, "storage_key": obj.storage_key, "rows": frame.height, "constants": {}},
    ), obj


def _put_parquet(store: ObjectStore, frame: pl.DataFrame) -> StoredObject:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=False)
    obj = store.put_bytes(buffer.getvalue())
    return store.finalise(obj, store.flush_pack())


def apply_rowset(con: duckdb.DuckDBPyConnection, rowset: RowSet, store: ObjectStore) -> None:
    """Make the rows of the table matching the row set's `match` exactly its rows."""
    table = rowset.table
    columns = table_columns(con, table)
    where, params = _where(con, table, rowset.match)
    con.execute(f"DELETE FROM {_quote(table)}{where}", params)
    if rowset.parquet is not None:
        _insert_typed(con, table, _parquet_frame(rowset, store), columns)
    elif rowset.rows:
        _apply_text(con, table, rowset.columns, rowset.rows, columns)


def apply_merged(con: duckdb.DuckDBPyConnection, rowsets: list[RowSet], store: ObjectStore) -> list[str]:
    """Apply many row sets of one transaction with one DELETE and one INSERT per table and column.

    Equivalent to applying them one by one (all are images of the same moment, and each row
    matches its own row set), but a record of 200 experiments costs a few statements, not
    thousands. Returns the problems met (a damaged series object: its rows are left out).
    """
    problems: list[str] = []
    groups: dict[tuple[str, str], list[RowSet]] = {}
    for rowset in rowsets:
        if len(rowset.match) != 1:
            apply_rowset(con, rowset, store)
            continue
        (column,) = rowset.match
        groups.setdefault((rowset.table, column), []).append(rowset)
    for (table, column), members in groups.items():
        values = sorted({v for r in members for v in r.match[column]}, key=str)
        columns = table_columns(con, table)
        where, params = _where(con, table, {column: values})
        con.execute(f"DELETE FROM {_quote(table)}{where}", params)
        frames = []
        for r in members:
            if r.parquet is None:
                continue
            try:
                frames.append(_parquet_frame(r, store))
            except (VerificationError, OSError, pl.exceptions.PolarsError) as exc:
                problems.append(f"{table} rows of {r.match}: {exc}")
        if frames:
            _insert_typed(con, table, pl.concat(frames, how="diagonal_relaxed"), columns)
        text_rows = {tuple(row): None for r in members if r.parquet is None for row in r.rows}
        names = next((r.columns for r in members if r.parquet is None and r.rows), None)
        if text_rows and names:
            _apply_text(con, table, names, [list(row) for row in text_rows], columns)
    return problems


def _parquet_frame(rowset: RowSet, store: ObjectStore) -> pl.DataFrame:
    ref = rowset.parquet or {}
    data = store.open_content(str(ref["storage_key"]))
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise VerificationError(
            f"object {ref['sha256']} ({rowset.table} rows) is damaged; "
            "run `workbench verify --read-data` to list damaged objects"
        )
    frame = pl.read_parquet(io.BytesIO(data))
    for column, value in (ref.get("constants") or {}).items():
        frame = frame.with_columns(pl.lit(value).alias(column))
    return frame


def _insert_typed(
    con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, columns: list[tuple[str, str]]
) -> None:
    names = [c for c, _ in columns if c in frame.columns]
    types = dict(columns)
    select = ", ".join(f"CAST({_quote(c)} AS {types[c]})" for c in names)
    _with_frame(
        con,
        frame,
        f"INSERT INTO {_quote(table)} ({', '.join(map(_quote, names))}) SELECT {select} FROM _rowset",
    )


def _apply_text(
    con: duckdb.DuckDBPyConnection,
    table: str,
    names: list[str],
    rows: list[_TextRow],
    columns: list[tuple[str, str]],
) -> None:
    types = dict(columns)
    for name in names:
        if name not in types:
            raise ArchiveError(f"a record has column {table}.{name}, which the catalog does not have")
    frame = pl.DataFrame(rows, schema={c: pl.String for c in names}, orient="row")
    casts = ", ".join(f"CAST({_quote(c)} AS {types[c]})" for c in names)
    verb = "INSERT OR REPLACE INTO" if _HAS_KEY[table] else "INSERT INTO"
    _with_frame(
        con, frame, f"{verb} {_quote(table)} ({', '.join(map(_quote, names))}) SELECT {casts} FROM _rowset"
    )


def _with_frame(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, sql: str) -> None:
    con.register("_rowset", frame.to_arrow())
    try:
        con.execute(sql)
    finally:
        con.unregister("_rowset")


# ---------------------------------------------------------------- manifests


def manifest_store(layout: ArchiveLayout) -> ObjectStore:
    return ObjectStore(layout.manifests, tmp=layout.tmp, pack_small=False)


def object_store(layout: ArchiveLayout) -> ObjectStore:
    return ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)


def _rows_by(
    con: duckdb.DuckDBPyConnection, table: str, column: str, values: list[Any]
) -> dict[str, list[_TextRow]]:
    """Rows of `table` whose `column` is one of `values` (DuckDB text, ORDER BY ALL), grouped by it."""
    captured = capture(con, table, {column: values})
    at = captured.columns.index(column)
    grouped: dict[str, list[_TextRow]] = {}
    for row in captured.rows:
        grouped.setdefault(str(row[at]), []).append(row)
    return grouped


def build_manifests(
    con: duckdb.DuckDBPyConnection, series: dict[str, dict[str, Any] | None], *, seq: int, written_at: str
) -> dict[str, dict[str, Any]]:
    """Everything needed to rebuild each experiment's rows, read inside the writing transaction.

    One query per table for the whole set (not per experiment), grouped here.
    """
    ids = sorted(series)
    columns = {
        t: [c for c, _ in table_columns(con, t)]
        for t in (
            "aistock_experiments",
            "wb_loop_state",
            "wb_stored_files",
            "aistock_factor_usage",
            "aistock_factor_performance",
            "aistock_factors",
            "aistock_factor_combinations",
            "aistock_strategies",
            "wb_objects",
        )
    }
    experiments = _rows_by(con, "aistock_experiments", "id", ids)
    own = {
        t: _rows_by(con, t, "experiment_id", ids)
        for t in ("wb_loop_state", "wb_stored_files", "aistock_factor_usage", "aistock_factor_performance")
    }
    col = {t: {c: i for i, c in enumerate(cs)} for t, cs in columns.items()}

    def field(table: str, row: _TextRow, name: str) -> Any:
        return row[col[table][name]]

    usage = own["aistock_factor_usage"]
    strategy_of = {e: field("aistock_experiments", rows[0], "strategy_id") for e, rows in experiments.items()}
    factor_ids = sorted(
        {field("aistock_factor_usage", r, "factor_id") for rows in usage.values() for r in rows}
    )
    factors = _rows_by(con, "aistock_factors", "id", factor_ids)
    strategies = _rows_by(con, "aistock_strategies", "id", sorted({s for s in strategy_of.values() if s}))
    combo_ids = {field("aistock_factor_usage", r, "combination_id") for rows in usage.values() for r in rows}
    combo_ids |= {
        field("aistock_strategies", rows[0], "factor_combination_id") for rows in strategies.values()
    }
    combos = _rows_by(con, "aistock_factor_combinations", "id", sorted(c for c in combo_ids if c))
    shas = {field("wb_stored_files", r, "sha256") for rows in own["wb_stored_files"].values() for r in rows}
    shas |= {s["sha256"] for s in series.values() if s}
    objects = _rows_by(con, "wb_objects", "sha256", sorted(shas))
    out: dict[str, dict[str, Any]] = {}
    for experiment_id in ids:
        if experiment_id not in experiments:
            continue
        row = experiments[experiment_id][0]
        my_usage = usage.get(experiment_id, [])
        my_factors = sorted({field("aistock_factor_usage", r, "factor_id") for r in my_usage})
        my_strategy = [strategy_of[experiment_id]] if strategy_of.get(experiment_id) else []
        combo_set = {field("aistock_factor_usage", r, "combination_id") for r in my_usage}
        combo_set |= {
            field("aistock_strategies", r, "factor_combination_id")
            for s in my_strategy
            for r in strategies.get(s, [])
        }
        my_combos = sorted(c for c in combo_set if c)
        my_shas = {
            field("wb_stored_files", r, "sha256") for r in own["wb_stored_files"].get(experiment_id, [])
        }
        pointer = series[experiment_id]
        if pointer:
            my_shas.add(pointer["sha256"])

        def picked(groups: dict[str, list[_TextRow]], keys: list[str]) -> list[_TextRow]:
            return sorted((r for k in keys for r in groups.get(k, [])), key=_sort_key)

        rowsets = [
            RowSet("aistock_experiments", {"id": [experiment_id]}, columns["aistock_experiments"], [row]),
            *(
                RowSet(t, {"experiment_id": [experiment_id]}, columns[t], own[t].get(experiment_id, []))
                for t in ("wb_loop_state", "wb_stored_files")
            ),
            RowSet(
                "wb_objects",
                {"sha256": sorted(my_shas)},
                columns["wb_objects"],
                picked(objects, sorted(my_shas)),
            ),
            *(
                RowSet(t, {"experiment_id": [experiment_id]}, columns[t], own[t].get(experiment_id, []))
                for t in ("aistock_factor_usage", "aistock_factor_performance")
            ),
            RowSet(
                "aistock_factors", {"id": my_factors}, columns["aistock_factors"], picked(factors, my_factors)
            ),
            RowSet(
                "aistock_factor_combinations",
                {"id": my_combos},
                columns["aistock_factor_combinations"],
                picked(combos, my_combos),
            ),
            RowSet(
                "aistock_strategies",
                {"id": my_strategy},
                columns["aistock_strategies"],
                picked(strategies, my_strategy),
            ),
        ]
        rowsets.append(
            RowSet(
                "aistock_return_series",
                {"experiment_id": [experiment_id]},
                parquet={**pointer, "constants": {"experiment_id": experiment_id}} if pointer else None,
            )
        )
        out[experiment_id] = {
            "format": MANIFEST_FORMAT,
            "version": FORMAT_VERSION,
            "experiment_id": experiment_id,
            "task_run_id": field("aistock_experiments", row, "task_run_id"),
            "loop_id": int(field("aistock_experiments", row, "loop_id")),
            "seq": seq,
            "written_at": written_at,
            "series": pointer,
            "rowsets": [r.to_json() for r in rowsets],
        }
    return out


def _sort_key(row: _TextRow) -> tuple[tuple[bool, str], ...]:
    """ORDER BY ALL's order for text rows (NULLs last, as DuckDB sorts them)."""
    return tuple((value is None, value or "") for value in row)


def load_manifest(layout: ArchiveLayout, storage_key: str, sha256: str) -> dict[str, Any]:
    """A manifest, checked against its hash and format."""
    try:
        data = manifest_store(layout).open_content(storage_key)
    except OSError as exc:
        raise VerificationError(f"manifest {sha256} is missing ({exc.strerror})") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise VerificationError(f"manifest {sha256} does not hash to its name; it is damaged")
    manifest: dict[str, Any] = json.loads(data)  # hash-checked: one this workbench wrote
    if manifest.get("format") != MANIFEST_FORMAT or int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise VerificationError(
            f"manifest {sha256} has format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}, which this workbench cannot read"
        )
    return manifest


def _series_ref(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, experiment_id: str, store: ObjectStore
) -> tuple[dict[str, Any] | None, StoredObject | None]:
    """The series pointer of an experiment whose series this transaction did not rewrite.

    Taken from its current manifest; an experiment archived before manifests existed gets its
    series exported from the catalog into a Parquet object (returned for `wb_objects`).
    """
    current = fetch_one(
        con, "SELECT sha256, storage_key FROM wb_manifests WHERE experiment_id = ?", [experiment_id]
    )
    if current is not None:
        try:
            series = load_manifest(layout, current[1], current[0]).get("series")
            if series is None or store.verify(series["storage_key"], series["sha256"]):
                return series, None
        except (VerificationError, ValueError, OSError):
            pass  # a damaged manifest or series object: export the series again
    frame = pl.from_arrow(
        con.sql(
            f"SELECT datetime, {', '.join(_quote(c) for c in SERIES_COLUMNS)} FROM aistock_return_series "
            "WHERE experiment_id = $id ORDER BY datetime",
            params={"id": experiment_id},
        ).to_arrow_table()
    )
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return None, None
    obj = _put_parquet(store, frame)
    return {"sha256": obj.sha256, "storage_key": obj.storage_key, "rows": frame.height}, obj


def series_pointer(obj: StoredObject, rows: int) -> dict[str, Any]:
    return {"sha256": obj.sha256, "storage_key": obj.storage_key, "rows": rows}


# ---------------------------------------------------------------- records


@dataclass
class Record:
    seq: int
    record_id: str
    kind: str
    written_at: str
    meta: dict[str, Any]
    rowsets: list[RowSet]
    manifests: dict[str, dict[str, str]]  # experiment_id → {"sha256", "storage_key"}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "version": FORMAT_VERSION,
            "seq": self.seq,
            "record_id": self.record_id,
            "kind": self.kind,
            "written_at": self.written_at,
            "meta": self.meta,
            "manifests": self.manifests,
            "rowsets": [r.to_json() for r in self.rowsets],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        if data.get("format") != RECORD_FORMAT or int(data.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"format {data.get('format')!r} version {data.get('version')!r} is not a record "
                "this workbench can read"
            )
        return cls(
            int(data["seq"]),
            str(data["record_id"]),
            str(data["kind"]),
            str(data["written_at"]),
            dict(data.get("meta") or {}),
            [RowSet.from_json(r) for r in data.get("rowsets") or []],
            dict(data.get("manifests") or {}),
        )

    @property
    def file_name(self) -> str:
        return f"{self.seq:012d}-{self.record_id}.json"


def durable_write(target: Path, data: bytes, tmp: Path) -> None:
    """Write `data` to `target` so that it is on disk, whole, before this returns."""
    write_atomic(target, data, tmp, fsync=True, op="records")
    fsync_dir(target.parent)


def record_files(layout: ArchiveLayout) -> list[Path]:
    """Every record file, in sequence order (then by id)."""
    if not layout.records.exists():
        return []
    return sorted(p for p in layout.records.iterdir() if _RECORD_NAME.match(p.name))


def newest_record_seq(layout: ArchiveLayout) -> int:
    """The highest sequence number among the record files (0 when there are none)."""
    if not layout.records.exists():
        return 0
    with os.scandir(layout.records) as entries:
        return max(
            (int(m.group(1)) for e in entries if (m := _RECORD_NAME.match(e.name)) is not None), default=0
        )


def read_record(path: Path) -> Record:
    try:
        return Record.from_json(json.loads(path.read_bytes()))
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"record {path.name} is unreadable ({exc}); it is damaged") from exc


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = fetch_one(con, "SELECT value FROM wb_meta WHERE key = ?", [SEQ_KEY])
    seq = (int(row[0]) if row else 0) + 1
    set_seq(con, seq)
    return seq


def set_seq(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    con.execute(
        "INSERT INTO wb_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SEQ_KEY, str(seq)],
    )


def current_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = fetch_one(con, "SELECT value FROM wb_meta WHERE key = ?", [SEQ_KEY])
    return int(row[0]) if row else 0


class Recorder:
    """Collects what one writing transaction changed; `finish` writes it to disk before COMMIT."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, kind: str, meta: dict[str, Any]
    ):
        self.con = con
        self.layout = layout
        self.kind = kind
        self.meta = meta
        self._captures: list[tuple[str, dict[str, list[Any]]]] = []
        self._experiments: dict[str, dict[str, Any] | None] = {}
        self._new_objects: list[StoredObject] = []
        #: files written outside this recorder (an archive batch's objects) that must be durable too
        self.needs_sync = False

    def capture(self, table: str, **match: list[Any]) -> None:
        """Record the rows of `table` matching `match` as they are when the transaction ends."""
        self._captures.append(
            (table, {k: sorted({v for v in vals if v is not None}) for k, vals in match.items()})
        )

    def capture_all(self, table: str) -> None:
        self._captures.append((table, {}))

    def experiments(
        self, experiment_ids: set[str] | list[str], series: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Write fresh manifests of these experiments (`series`: the ones whose series was rewritten)."""
        for experiment_id in experiment_ids:
            self._experiments[experiment_id] = (series or {}).get(
                experiment_id, self._experiments.get(experiment_id)
            )

    def finish(self) -> Record:
        seq = next_seq(self.con)
        written_at = utc_now().isoformat()
        store = object_store(self.layout)
        manifests = self._write_manifests(store, seq=seq, written_at=written_at)
        rowsets = []
        for table, match in self._captures:
            if table in BULK_TABLES:
                rowset, obj = capture_bulk(self.con, store, table, match)
                if obj is not None:
                    self._new_objects.append(obj)
                rowsets.append(rowset)
        self._register_objects()
        for table, match in self._captures:
            if table not in BULK_TABLES:
                rowsets.append(capture(self.con, table, match))
        if self._new_objects:
            rowsets.append(
                capture(self.con, "wb_objects", {"sha256": sorted({o.sha256 for o in self._new_objects})})
            )
        if manifests:
            rowsets.append(capture(self.con, "wb_manifests", {"experiment_id": sorted(manifests)}))
        if self.needs_sync or manifests or self._new_objects:
            # one sync makes the batch's objects, series and manifests durable together, before the
            # record that refers to them (a manifest durable before its objects refers to nothing yet)
            os.sync()
        record = Record(seq, uuid.uuid4().hex, self.kind, written_at, self.meta, rowsets, manifests)
        durable_write(
            self.layout.records / record.file_name,
            json.dumps(record.to_json(), separators=(",", ":"), default=str).encode(),
            self.layout.tmp,
        )
        return record

    def _write_manifests(self, store: ObjectStore, *, seq: int, written_at: str) -> dict[str, dict[str, str]]:
        mstore = manifest_store(self.layout)
        written: dict[str, dict[str, str]] = {}
        rows = []
        pointers: dict[str, dict[str, Any] | None] = {}
        unknown = sorted(e for e, s in self._experiments.items() if s is None)
        with_series = (
            {
                r[0]
                for r in self.con.execute(
                    "SELECT DISTINCT experiment_id FROM aistock_return_series WHERE experiment_id IN (SELECT unnest(?))",
                    [unknown],
                ).fetchall()
            }
            if unknown
            else set()
        )
        for experiment_id in sorted(self._experiments):
            series = self._experiments[experiment_id]
            if series is None and experiment_id in with_series:  # level 1 has no series: nothing to look up
                series, obj = _series_ref(self.con, self.layout, experiment_id, store)
                if obj is not None:
                    self._new_objects.append(obj)
            pointers[experiment_id] = series
        self._register_objects()
        ids = sorted(pointers)
        # built and written a chunk at a time: a change that touches every experiment (a factor
        # many experiments use, merged at the end of a run) must not hold all their rows at once
        for start in range(0, len(ids), MANIFEST_CHUNK):
            chunk = {i: pointers[i] for i in ids[start : start + MANIFEST_CHUNK]}
            for experiment_id, manifest in build_manifests(
                self.con, chunk, seq=seq, written_at=written_at
            ).items():
                obj = mstore.put_bytes(json.dumps(manifest, separators=(",", ":"), default=str).encode())
                written[experiment_id] = {"sha256": obj.sha256, "storage_key": obj.storage_key}
                rows.append((experiment_id, obj.sha256, obj.storage_key, seq, written_at))
        if rows:  # one statement (DuckDB's executemany runs one statement per row)
            frame = pl.DataFrame(
                rows,
                schema={
                    "experiment_id": pl.String,
                    "sha256": pl.String,
                    "storage_key": pl.String,
                    "seq": pl.Int64,
                    "written_at": pl.String,
                },
                orient="row",
            )
            _with_frame(
                self.con,
                frame,
                "INSERT OR REPLACE INTO wb_manifests SELECT experiment_id, sha256, "
                "storage_key, seq, CAST(written_at AS TIMESTAMPTZ) FROM _rowset",
            )
        return written

    def _register_objects(self) -> None:
        """Objects this transaction wrote itself (series exports, bulk row sets) get wb_objects rows."""
        stamp = utc_now()
        for o in self._new_objects:
            self.con.execute(
                "INSERT INTO wb_objects (sha256, size_bytes, stored_bytes, storage_key, codec, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET storage_key = excluded.storage_key, "
                "stored_bytes = excluded.stored_bytes, codec = excluded.codec",
                [o.sha256, o.size_bytes, o.stored_bytes, o.storage_key, o.codec, stamp],
            )


@contextmanager
def recorded(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, kind: str, **meta: Any
) -> Iterator[Recorder]:
    """One transaction whose changes are written as a record (and manifests) before it commits."""
    con.execute("BEGIN TRANSACTION")
    try:
        recorder = Recorder(con, layout, kind, meta)
        yield recorder
        recorder.finish()
        con.execute("COMMIT")
    except BaseException:
        rollback_quietly(con)
        raise
    ondemand.committed(layout.root)  # an s3:// archive's session starts uploading it


# ---------------------------------------------------------------- replay


@dataclass
class ReplayReport:
    records: int = 0
    manifests: int = 0
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)


def replay(con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, *, after_seq: int = 0) -> ReplayReport:
    """Apply every record with a sequence number above `after_seq`, oldest first, one transaction each."""
    report = ReplayReport(last_seq=after_seq)
    store = object_store(layout)
    entries = []
    for path in record_files(layout):
        try:
            record = read_record(path)
        except VerificationError as exc:
            report.problems.append(str(exc))
            continue
        if record.seq > after_seq:
            entries.append(record)
    for record in sorted(entries, key=record_order):
        apply_record(con, layout, record, store, report)
    return report


def record_order(record: Record) -> tuple[int, str, str]:
    """The order records are applied in: sequence, then time, then id (several writers may share a seq)."""
    return (record.seq, record.written_at, record.record_id)


def apply_record(
    con: duckdb.DuckDBPyConnection,
    layout: ArchiveLayout,
    record: Record,
    store: ObjectStore,
    report: ReplayReport,
) -> None:
    """Apply one record (its manifests' row sets, then its own) in one transaction.

    The catalog's sequence becomes at least the record's, so a record written after this one was
    applied (here or, for a shared archive, on another machine) sorts after it.
    """
    con.execute("BEGIN TRANSACTION")
    manifest_rowsets: list[RowSet] = []
    try:
        for experiment_id, ref in sorted(record.manifests.items()):
            try:
                manifest = load_manifest(layout, ref["storage_key"], ref["sha256"])
            except (VerificationError, ValueError) as exc:
                report.problems.append(f"record {record.file_name}: experiment {experiment_id}: {exc}")
                continue
            manifest_rowsets.extend(RowSet.from_json(data) for data in manifest["rowsets"])
            report.manifests += 1
        report.problems += apply_merged(con, manifest_rowsets, store)
        for rowset in record.rowsets:
            apply_rowset(con, rowset, store)
        set_seq(con, max(record.seq, report.last_seq, current_seq(con)))
        con.execute("COMMIT")
    except BaseException:
        rollback_quietly(con)
        raise
    report.records += 1
    report.last_seq = max(report.last_seq, record.seq)


# ---------------------------------------------------------------- upgrade


NOT_BASELINED = frozenset({"wb_meta", "wb_manifests", "wb_inline_objects", "aistock_return_series"})


def write_baseline(con: duckdb.DuckDBPyConnection, layout: ArchiveLayout) -> Record | None:
    """Make an archive written before records self-describing: one record holding every row.

    Small objects kept in ``wb_inline_objects`` move into a pack, every experiment gets a
    manifest (series exported from the catalog), and every other table is captured whole. Run
    once, by the upgrade to schema 6, in one transaction.
    """
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name"
        ).fetchall()
    ]
    with recorded(con, layout, "baseline") as rec:
        _externalise_inline_objects(con, layout)
        for table in tables:
            if table not in NOT_BASELINED:
                rec.capture_all(table)
        rec.experiments(
            [
                r[0]
                for r in con.execute(
                    "SELECT id FROM aistock_experiments WHERE archiving_level >= 1 ORDER BY id"
                ).fetchall()
            ]
        )
    return None


def _externalise_inline_objects(con: duckdb.DuckDBPyConnection, layout: ArchiveLayout) -> int:
    """Move the small objects an older archive kept in the catalog into one pack; fix their keys."""
    rows = con.execute("SELECT sha256, data FROM wb_inline_objects").fetchall()
    if not rows:
        return 0
    store = object_store(layout)
    keys = {}
    for sha, data in rows:
        blob = bytes(data)
        if hashlib.sha256(blob).hexdigest() != sha:
            raise VerificationError(
                f"small object {sha} in wb_inline_objects does not hash to its name; "
                "the catalog is damaged (run `workbench repair`)"
            )
        obj = store.put_bytes(blob)
        keys[sha] = obj.storage_key
    final = store.flush_pack()
    keys = {sha: final.get(sha, key) for sha, key in keys.items()}
    store.sync()
    con.executemany(
        "UPDATE wb_objects SET storage_key = ?, codec = 'pack' WHERE sha256 = ?",
        [(key, sha) for sha, key in keys.items()],
    )
    old_keys = {f"inline:{sha}": key for sha, key in keys.items()}
    for experiment_id, refs_text in con.execute(
        "SELECT id, file_refs_json FROM aistock_experiments WHERE file_refs_json LIKE '%inline:%'"
    ).fetchall():
        refs = json.loads(refs_text)
        for ref in refs:
            if ref.get("storage_key") in old_keys:
                ref["storage_key"] = old_keys[ref["storage_key"]]
        con.execute(
            "UPDATE aistock_experiments SET file_refs_json = ? WHERE id = ?",
            [json.dumps(refs, ensure_ascii=False, sort_keys=True), experiment_id],
        )
    con.execute("DELETE FROM wb_inline_objects")
    return len(keys)
