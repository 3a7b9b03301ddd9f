"""Persist: store and verify a batch's files, then commit its rows and levels in one transaction.

Write ordering (an interruption anywhere leaves a valid archive):
1. key files → object store (temporary name, rename), each verified by SHA-256 against the bytes
   read and, where the registry has one, against ``artifact_files.sha256``;
2. one durable sync of the batch's objects;
3. one DuckDB transaction: library rows, experiment rows with their level, return series,
   stored-file rows, loop state, errors. Level 2 is granted only inside that transaction and only
   for experiments whose every key file is stored and verified.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from workbench.archive.db import fetch_one, utc_now
from workbench.archive.extract import Extracted, ItemError, remap_factor_ids, to_json_text
from workbench.archive.ids import combination_id as ids_combination
from workbench.archive.ids import performance_id as ids_performance
from workbench.archive.journal import SERIES_COLUMNS, Recorder, recorded, series_pointer
from workbench.archive.layout import ArchiveLayout
from workbench.archive.scope import scoped
from workbench.archive.storage_errors import storage_error
from workbench.archive.store import ObjectStore, StoredObject
from workbench.errors import InputFileError, VerificationError


@dataclass
class StoredBatch:
    """What step 1 produced for one experiment."""

    files: list[dict[str, Any]] = field(default_factory=list)
    objects: list[StoredObject] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    series: StoredObject | None = None


def store_files(
    item: Extracted,
    store: ObjectStore,
    *,
    known: dict[str, str],
    registry_hashes: dict[str, str],
    verify: bool = True,
) -> StoredBatch:
    """Copy one experiment's kept files into the store; fill hashes into its file refs."""
    result = StoredBatch()
    for entry in item.files:
        try:
            obj = store.put_file(
                entry.source, known=known, verify=verify, expect=(entry.info.size_bytes, entry.info.mtime_ns)
            )
            result.objects.append(obj)  # stored whatever the checks below say: later copies may reuse it
            parsed = item.read_hashes.get(os.path.abspath(entry.source))
            if parsed is not None and parsed != obj.sha256:
                raise VerificationError(
                    f"{entry.source} changed between reading it into the catalog and storing it; rerun the archive"
                )
            expected = registry_hashes.get(entry.rel_path)
            if expected and expected.lower() != obj.sha256:
                raise VerificationError(
                    f"{entry.source} hashes to {obj.sha256} but the registry recorded {expected}; "
                    "the workspace file changed after registration"
                )
        except (OSError, InputFileError, VerificationError) as exc:
            full = storage_error(
                exc,
                writing=f"the archived copy of {entry.source}",
                path=store.root,
                archive=store.root.parent,
                needed=entry.info.size_bytes,
            )
            if full is not None:  # a full or failing archive disk ends the run, it is no error of this loop
                raise full from exc
            result.errors.append(ItemError("store", type(exc).__name__, str(exc), str(entry.source)))
            continue
        result.bytes_read += obj.size_bytes
        result.bytes_written += obj.stored_bytes if obj.written else 0
        result.files.append(
            {
                "experiment_id": item.candidate.experiment_id,
                "rel_path": entry.rel_path,
                "sha256": obj.sha256,
                "size_bytes": obj.size_bytes,
                "file_class": entry.info.file_class,
                "mtime_utc": datetime.fromtimestamp(entry.info.mtime_ns / 1e9).astimezone().isoformat(),
            }
        )
    if item.returns is not None and not result.errors:
        result.series = store.put_bytes(series_parquet(item.returns), known=known)
        result.objects.append(result.series)
    _finalise_keys(item, store, result)
    return result


def series_parquet(returns: pl.DataFrame) -> bytes:
    """A return series as the Parquet object its manifest points to (what `aistock_return_series` holds)."""
    buffer = io.BytesIO()
    returns.select("datetime", *SERIES_COLUMNS).write_parquet(buffer, compression="zstd", statistics=False)
    return buffer.getvalue()


def _finalise_keys(item: Extracted, store: ObjectStore, result: StoredBatch) -> None:
    """Write the loop's small objects as one pack, then give every object and file ref its final key."""
    keys = store.flush_pack()
    result.objects = [store.finalise(o, keys) for o in result.objects]
    if result.series is not None:
        result.series = store.finalise(result.series, keys)
    by_sha = {o.sha256: o.storage_key for o in result.objects}
    refs = {ref["path"]: ref for ref in item.file_refs}
    for row in result.files:
        ref = refs.get(row["rel_path"])
        if ref is not None:
            ref["sha256"] = row["sha256"]
            ref["storage_key"] = by_sha[row["sha256"]]


@dataclass(frozen=True)
class Outcome:
    experiment_id: str
    task_run_id: str
    loop_id: int
    level: int
    state: str
    fingerprint: str
    errors: tuple[ItemError, ...]
    note: str | None = None


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pl.DataFrame:
    """Rows → frame with exactly `columns`; types inferred from all rows (DuckDB casts on insert)."""
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in columns})
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], infer_schema_length=None)


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, conflict: str) -> None:
    """INSERT ... SELECT from a registered Arrow table (one statement per table and batch)."""
    if frame.height == 0:
        return
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    _execute_with(
        con, "_batch", frame, f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _batch {conflict}"
    )


def _unregister_quietly(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Cleanup that never hides the error being handled (an aborted transaction refuses it too)."""
    try:
        con.unregister(name)
    except duckdb.Error:
        pass


def _execute_with(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, sql: str) -> None:
    """Run `sql` with `frame` visible as `name`; the original error wins over cleanup errors."""
    con.register(name, frame.to_arrow())
    try:
        con.execute(sql)
    finally:
        try:
            con.unregister(name)
        except duckdb.Error:
            pass


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    outcomes: list[Outcome],
    items: dict[str, Extracted],
    stored: dict[str, StoredBatch],
    *,
    layout: ArchiveLayout,
    run_id: str,
    now: datetime,
) -> None:
    """Write one batch in a single transaction (see the module docstring for the ordering).

    Before the COMMIT, every experiment of the batch gets a fresh manifest and the batch a record
    (`journal.py`), both synced: the rows can always be rebuilt from disk.
    """
    with recorded(con, layout, "archive-batch", run_id=run_id) as rec:
        resolve_name_only_factors(con, list(items.values()))
        _write_rows(con, outcomes, items, stored, run_id=run_id, now=now)
        series = {}
        for o in outcomes:
            batch = stored.get(o.experiment_id)
            item = items.get(o.experiment_id)
            if (
                o.level == 2
                and batch is not None
                and batch.series is not None
                and item is not None
                and item.returns is not None
            ):
                series[o.experiment_id] = series_pointer(batch.series, item.returns.height)
        rec.experiments(
            {o.experiment_id for o in outcomes if o.level >= 1 and o.experiment_id in items}, series
        )
        experiment_ids = [o.experiment_id for o in outcomes]
        rec.capture("wb_loop_state", experiment_id=experiment_ids)
        rec.capture("wb_item_errors", run_id=[run_id], experiment_id=experiment_ids)
        rec.capture("wb_objects", sha256=[o.sha256 for b in stored.values() for o in b.objects])
        rec.needs_sync = any(b.bytes_written or any(o.written for o in b.objects) for b in stored.values())


def resolve_name_only_factors(con: duckdb.DuckDBPyConnection, items: list[Extracted]) -> None:
    """A factor known only by name (named in a request) is the factor of that name that has an
    expression — in this batch or already in the library — so it is never stored twice."""
    by_name: dict[str, str] = {}
    for item in items:
        for f in item.factors:
            if f.get("expression_key") and (f["name"] not in by_name or f["id"] < by_name[f["name"]]):
                by_name[f["name"]] = f["id"]
    wanted = {f["name"] for item in items for f in item.factors if not f.get("expression_key")} - set(by_name)
    if wanted:
        frame = pl.DataFrame({"name": sorted(wanted)})
        con.register("_names", frame.to_arrow())
        try:
            found = con.execute(
                "SELECT f.name, f.id FROM aistock_factors f JOIN _names n USING (name) "
                "WHERE f.expression_key IS NOT NULL ORDER BY f.name, f.id"
            ).fetchall()
        finally:
            _unregister_quietly(con, "_names")
        for name, factor in found:
            by_name.setdefault(name, factor)
    for item in items:
        mapping = {
            f["id"]: by_name[f["name"]]
            for f in item.factors
            if not f.get("expression_key") and f["name"] in by_name and by_name[f["name"]] != f["id"]
        }
        remap_factor_ids(item, mapping)


def consolidate_factors(con: duckdb.DuckDBPyConnection, rec: Recorder | None = None) -> int:
    """Merge factors known only by name into the factor of that name with an expression.

    Batches resolve names against what exists when they commit; this pass at the end of a run
    makes the result independent of batch order and size. Returns the number of merged rows.
    `rec` records every row it changes and re-writes the manifests of the experiments involved.
    """
    pairs = con.execute(
        """SELECT n.id, min(e.id) FROM aistock_factors n JOIN aistock_factors e
               ON e.name = n.name AND e.expression_key IS NOT NULL
           WHERE n.expression_key IS NULL GROUP BY n.id"""
    ).fetchall()
    if not pairs:
        return 0
    mapping = dict(pairs)
    touched = sorted(set(mapping) | set(mapping.values()))
    experiments = {
        r[0]
        for r in con.execute(
            "SELECT experiment_id FROM aistock_factor_usage WHERE list_contains(?, factor_id) UNION "
            "SELECT experiment_id FROM aistock_factor_performance WHERE list_contains(?, factor_id) "
            "AND experiment_id IS NOT NULL",
            [touched, touched],
        ).fetchall()
    }
    for old, new in mapping.items():
        _fill_factor(con, old, new)
        con.execute("DELETE FROM aistock_factors WHERE id = ?", [old])
        con.execute(
            "INSERT INTO aistock_factor_usage SELECT ?, experiment_id, combination_id FROM aistock_factor_usage "
            "WHERE factor_id = ? ON CONFLICT DO NOTHING",
            [new, old],
        )
        con.execute("DELETE FROM aistock_factor_usage WHERE factor_id = ?", [old])
        for perf_id, window, experiment in con.execute(
            "SELECT id, window_name, experiment_id FROM aistock_factor_performance WHERE factor_id = ?", [old]
        ).fetchall():
            new_perf = ids_performance(new, window, experiment)
            con.execute(
                "DELETE FROM aistock_factor_performance WHERE id = ? AND EXISTS "
                "(SELECT 1 FROM aistock_factor_performance WHERE id = ?)",
                [perf_id, new_perf],
            )
            con.execute(
                "UPDATE aistock_factor_performance SET id = ?, factor_id = ? WHERE id = ?",
                [new_perf, new, perf_id],
            )
    combos = _remap_combinations(con, mapping)
    if rec is not None:
        combo_ids = sorted({c for pair in combos for c in pair})
        experiments |= {
            r[0]
            for r in con.execute(
                "SELECT experiment_id FROM aistock_factor_usage WHERE list_contains(?, combination_id)",
                [combo_ids],
            ).fetchall()
        }
        rec.experiments(experiments)
        rec.capture("aistock_factors", id=touched)
        rec.capture("aistock_factor_performance", factor_id=touched)
        rec.capture("aistock_factor_usage", factor_id=touched)
        rec.capture("aistock_factor_usage", combination_id=combo_ids)
        rec.capture("aistock_factor_combinations", id=combo_ids)
        rec.capture("aistock_strategies", factor_combination_id=combo_ids)
    return len(mapping)


def _fill_factor(con: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    """The surviving factor keeps its values and takes the merged one's where it has none."""
    con.execute(
        """UPDATE aistock_factors AS t SET
               description_cn = CASE WHEN coalesce(t.description_cn, '') = '' THEN o.description_cn ELSE t.description_cn END,
               version = coalesce(t.version, o.version),
               first_experiment_id = coalesce(t.first_experiment_id, o.first_experiment_id)
           FROM aistock_factors o WHERE t.id = ? AND o.id = ?""",
        [new, old],
    )


def _remap_combinations(con: duckdb.DuckDBPyConnection, mapping: dict[str, str]) -> list[tuple[str, str]]:
    """Give combinations with merged members their new ids; the (old, new) id pairs."""
    changed = []
    for combo_id, name, factor_ids, experiment, source, created in con.execute(
        "SELECT id, name, factor_ids, experiment_id, source, created_at FROM aistock_factor_combinations"
    ).fetchall():
        members = json.loads(factor_ids)
        if not set(members) & set(mapping):
            continue
        new_members = sorted({mapping.get(m, m) for m in members})
        new_id = ids_combination(new_members)
        con.execute("DELETE FROM aistock_factor_combinations WHERE id = ?", [combo_id])
        con.execute(
            "INSERT INTO aistock_factor_combinations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            [new_id, name, json.dumps(new_members), experiment, source, created],
        )
        con.execute(
            "UPDATE aistock_strategies SET factor_combination_id = ? WHERE factor_combination_id = ?",
            [new_id, combo_id],
        )
        con.execute(
            "INSERT INTO aistock_factor_usage SELECT factor_id, experiment_id, ? FROM aistock_factor_usage "
            "WHERE combination_id = ? ON CONFLICT DO NOTHING",
            [new_id, combo_id],
        )
        con.execute("DELETE FROM aistock_factor_usage WHERE combination_id = ?", [combo_id])
        changed.append((combo_id, new_id))
    return changed


def _write_rows(
    con: duckdb.DuckDBPyConnection,
    outcomes: list[Outcome],
    items: dict[str, Extracted],
    stored: dict[str, StoredBatch],
    *,
    run_id: str,
    now: datetime,
) -> None:
    rows_for = [o for o in outcomes if o.level >= 1 and o.experiment_id in items]
    extracted = [items[o.experiment_id] for o in rows_for]
    _write_library(con, extracted, now=now)
    _write_experiments(con, rows_for, items, now=now)
    level2 = [o for o in rows_for if o.level == 2]
    _write_objects(con, stored, now=now)
    _write_level2(con, level2, items, stored, now=now)
    _write_state(con, outcomes, run_id=run_id, now=now)


def _write_library(con: duckdb.DuckDBPyConnection, extracted: list[Extracted], *, now: datetime) -> None:
    stamp = now.isoformat()
    factors = _merge_by_id(
        [{**f, "created_at": stamp, "updated_at": stamp} for x in extracted for f in x.factors]
    )
    factor_cols = [
        "id",
        "name",
        "version",
        "source",
        "description_cn",
        "formula_hint",
        "expression",
        "expression_key",
        "tags",
        "region",
        "freq",
        "variables_json",
        "first_experiment_id",
        "created_at",
        "updated_at",
    ]
    fill = (
        ", ".join(
            f"{c} = CASE WHEN aistock_factors.{c} IS NULL OR (aistock_factors.{c} = '' AND excluded.{c} <> '') "
            f"THEN excluded.{c} ELSE aistock_factors.{c} END"
            for c in (
                "version",
                "description_cn",
                "formula_hint",
                "expression",
                "expression_key",
                "region",
                "freq",
            )
        )
        + ", variables_json = coalesce(aistock_factors.variables_json, excluded.variables_json)"
    )
    _insert(
        con,
        "aistock_factors",
        _dedupe(_frame(factors, factor_cols), "id"),
        f"ON CONFLICT (id) DO UPDATE SET {fill}",
    )
    perf_cols = [
        "id",
        "factor_id",
        "window_name",
        "start_date",
        "end_date",
        "ic_mean",
        "ic_ir",
        "coverage",
        "annual_return",
        "max_drawdown",
        "sharpe",
        "experiment_id",
        "basis",
        "rank_ic",
        "rank_ic_ir",
        "dates_from",
        "annual_return_cost",
        "max_drawdown_cost",
        "sharpe_cost",
        "periods_per_year",
        "combination_size",
        "updated_at",
    ]
    perf = [{**p, "updated_at": stamp} for x in extracted for p in x.performance]
    perf_frame = _dedupe(_frame(perf, perf_cols), "id")
    _insert(
        con,
        "aistock_factor_performance",
        perf_frame,
        "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in perf_cols[1:-1]),
    )
    combos = [{**x.combination, "created_at": stamp} for x in extracted if x.combination]
    combo_cols = ["id", "name", "factor_ids", "experiment_id", "source", "created_at"]
    _insert(
        con,
        "aistock_factor_combinations",
        _dedupe(_frame(combos, combo_cols), "id"),
        "ON CONFLICT (id) DO NOTHING",
    )
    usage = []
    for x in extracted:
        combination = x.combination["id"] if x.combination else ""
        members = set(json.loads(x.combination["factor_ids"])) if x.combination else set()
        for factor in {f["id"] for f in x.factors}:
            usage.append(
                {
                    "factor_id": factor,
                    "experiment_id": x.candidate.experiment_id,
                    "combination_id": combination if factor in members else "",
                }
            )
    _insert(
        con,
        "aistock_factor_usage",
        _dedupe(
            _frame(usage, ["factor_id", "experiment_id", "combination_id"]),
            ["factor_id", "experiment_id", "combination_id"],
        ),
        "ON CONFLICT DO NOTHING",
    )
    strategies = [{**x.strategy, "created_at": stamp, "updated_at": stamp} for x in extracted if x.strategy]
    strat_cols = [
        "id",
        "strategy_key",
        "name",
        "shape",
        "output_mode",
        "source",
        "strategy_type",
        "config_json",
        "factor_combination_id",
        "recommendation_status",
        "created_at",
        "updated_at",
    ]
    keep_manual = (
        "recommendation_status = CASE WHEN aistock_strategies.recommendation_status = 'manual_review' "
        "THEN aistock_strategies.recommendation_status ELSE excluded.recommendation_status END"
    )
    update = ", ".join(
        f"{c} = excluded.{c}"
        for c in (
            "name",
            "shape",
            "output_mode",
            "source",
            "strategy_type",
            "config_json",
            "factor_combination_id",
        )
    )
    _insert(
        con,
        "aistock_strategies",
        _dedupe(_frame(strategies, strat_cols), "id"),
        f"ON CONFLICT (id) DO UPDATE SET {update}, {keep_manual}",
    )


def _merge_by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per id: the first row, its missing fields filled from later rows.

    A value only ever improves (null < empty text < text), as in the upsert, so rerunning with
    the same rows changes nothing whatever the order.
    """
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = merged.setdefault(row["id"], dict(row))
        for key, value in row.items():
            if (current.get(key) is None and value is not None) or (
                current.get(key) == "" and value not in (None, "")
            ):
                current[key] = value
    return list(merged.values())


def _dedupe(frame: pl.DataFrame, key: str | list[str]) -> pl.DataFrame:
    if frame.height == 0:
        return frame
    return frame.unique(subset=key, keep="first", maintain_order=True)


EXPERIMENT_COLS = [
    "id",
    "task_run_id",
    "loop_id",
    "workspace_id",
    "strategy_id",
    "archiving_level",
    "action",
    "scenario",
    "loop_status",
    "workspace_path",
    "workspace_dir",
    "log_trace_path",
    "metrics_json",
    "recomputed_metrics_json",
    "feedback_json",
    "file_refs_json",
    "workspace_bytes",
    "request_name",
    "strategy_role",
    "source_fingerprint",
    "created_at",
    "imported_at",
    "level2_at",
]


def _write_experiments(
    con: duckdb.DuckDBPyConnection, outcomes: list[Outcome], items: dict[str, Extracted], *, now: datetime
) -> None:
    rows = []
    for outcome in outcomes:
        item = items[outcome.experiment_id]
        rows.append(
            {
                **item.experiment,
                "archiving_level": str(outcome.level),
                "loop_id": str(outcome.loop_id),
                "file_refs_json": to_json_text(item.file_refs) if outcome.level == 2 else None,
                "source_fingerprint": outcome.fingerprint,
                "imported_at": now.isoformat(),
                "level2_at": now.isoformat() if outcome.level == 2 else None,
            }
        )
    frame = _frame(rows, EXPERIMENT_COLS)
    if frame.height == 0:
        return
    con.register("_batch", frame.to_arrow())
    try:
        con.execute(
            f"""
            INSERT INTO aistock_experiments ({", ".join(EXPERIMENT_COLS)})
            SELECT id, task_run_id, CAST(loop_id AS BIGINT), workspace_id, strategy_id, CAST(archiving_level AS INTEGER),
                   action, scenario, loop_status, workspace_path, workspace_dir, log_trace_path, metrics_json,
                   recomputed_metrics_json, feedback_json, file_refs_json,
                   list_sum(CAST(json_extract(file_refs_json, '$[*].size_bytes') AS BIGINT[])), request_name, strategy_role,
                   source_fingerprint, TRY_CAST(replace(created_at, ' ', 'T') AS TIMESTAMPTZ),
                   CAST(imported_at AS TIMESTAMPTZ), CAST(level2_at AS TIMESTAMPTZ)
            FROM _batch
            ON CONFLICT (id) DO UPDATE SET
                workspace_id = excluded.workspace_id, strategy_id = excluded.strategy_id,
                archiving_level = greatest(aistock_experiments.archiving_level, excluded.archiving_level),
                action = excluded.action, scenario = excluded.scenario, loop_status = excluded.loop_status,
                workspace_path = excluded.workspace_path, workspace_dir = excluded.workspace_dir,
                log_trace_path = excluded.log_trace_path, metrics_json = excluded.metrics_json,
                recomputed_metrics_json = coalesce(excluded.recomputed_metrics_json, aistock_experiments.recomputed_metrics_json),
                feedback_json = coalesce(excluded.feedback_json, aistock_experiments.feedback_json),
                file_refs_json = coalesce(excluded.file_refs_json, aistock_experiments.file_refs_json),
                workspace_bytes = coalesce(excluded.workspace_bytes, aistock_experiments.workspace_bytes),
                request_name = excluded.request_name, strategy_role = excluded.strategy_role,
                source_fingerprint = excluded.source_fingerprint,
                created_at = coalesce(excluded.created_at, aistock_experiments.created_at),
                level2_at = coalesce(aistock_experiments.level2_at, excluded.level2_at)
            """
        )
    finally:
        _unregister_quietly(con, "_batch")


def _level2_returns(item: Extracted) -> pl.DataFrame:
    """The return series of an item archived at level 2 (`Extracted.can_reach_level2` requires one)."""
    if item.returns is None:
        raise TypeError(f"experiment {item.candidate.experiment_id} reached level 2 without a return series")
    return item.returns


def _write_level2(
    con: duckdb.DuckDBPyConnection,
    outcomes: list[Outcome],
    items: dict[str, Extracted],
    stored: dict[str, StoredBatch],
    *,
    now: datetime,
) -> None:
    if not outcomes:
        return
    ids = [o.experiment_id for o in outcomes]
    id_frame = pl.DataFrame({"experiment_id": ids})
    con.register("_ids", id_frame.to_arrow())
    try:
        con.execute(
            "DELETE FROM aistock_return_series WHERE experiment_id IN (SELECT experiment_id FROM _ids)"
        )
        con.execute("DELETE FROM wb_stored_files WHERE experiment_id IN (SELECT experiment_id FROM _ids)")
    finally:
        _unregister_quietly(con, "_ids")
    series = [
        _level2_returns(items[i]).select(pl.lit(i).alias("experiment_id"), "datetime", *SERIES_COLUMNS)
        for i in ids
    ]
    if series:
        frame = pl.concat(series, how="vertical_relaxed")
        con.register("_series", frame.to_arrow())
        try:
            columns = ", ".join(f'"{c}"' for c in frame.columns)
            con.execute(f"INSERT INTO aistock_return_series ({columns}) SELECT {columns} FROM _series")
        finally:
            _unregister_quietly(con, "_series")
    files = [f for i in ids for f in stored[i].files]
    file_cols = ["experiment_id", "rel_path", "sha256", "size_bytes", "file_class", "mtime_utc", "stored_at"]
    stamp = now.isoformat()
    _insert(
        con,
        "wb_stored_files",
        _frame([{**f, "stored_at": stamp} for f in files], file_cols),
        "ON CONFLICT DO NOTHING",
    )


def _write_objects(con: duckdb.DuckDBPyConnection, stored: dict[str, StoredBatch], *, now: datetime) -> None:
    """Objects of every stored item, failed ones too: later batches may reuse them by hash.

    An object written again (it was missing or damaged, or a small one packed anew) takes its new
    storage key; one found already stored keeps the row it has.
    """
    stamp = now.isoformat()
    objects: dict[str, StoredObject] = {}
    for o in (o for batch in stored.values() for o in batch.objects):  # failed items' objects too
        if o.sha256 not in objects or o.written:
            objects[o.sha256] = o
    columns = ["sha256", "size_bytes", "stored_bytes", "storage_key", "codec", "created_at"]
    for written, conflict in (
        (False, "ON CONFLICT (sha256) DO NOTHING"),
        (
            True,
            "ON CONFLICT (sha256) DO UPDATE SET stored_bytes = excluded.stored_bytes, "
            "storage_key = excluded.storage_key, codec = excluded.codec",
        ),
    ):
        rows = [
            {
                "sha256": o.sha256,
                "size_bytes": o.size_bytes,
                "stored_bytes": o.stored_bytes,
                "storage_key": o.storage_key,
                "codec": o.codec,
                "created_at": stamp,
            }
            for o in objects.values()
            if o.written == written
        ]
        _insert(con, "wb_objects", _frame(rows, columns), conflict)


def _write_state(
    con: duckdb.DuckDBPyConnection, outcomes: Iterable[Outcome], *, run_id: str, now: datetime
) -> None:
    stamp = now.isoformat()
    state_rows = []
    error_rows = []
    for o in outcomes:
        state_rows.append(
            {
                "task_run_id": o.task_run_id,
                "loop_id": o.loop_id,
                "experiment_id": o.experiment_id,
                "state": o.state,
                "archiving_level": o.level,
                "fingerprint": o.fingerprint,
                "last_run_id": run_id,
                "updated_at": stamp,
                "last_error": o.errors[0].message[:2000] if o.errors else (o.note[:2000] if o.note else None),
            }
        )
        for e in o.errors:
            error_rows.append(
                {
                    "run_id": run_id,
                    "task_run_id": o.task_run_id,
                    "loop_id": o.loop_id,
                    "experiment_id": o.experiment_id,
                    "path": e.path,
                    "stage": e.stage,
                    "error_type": e.error_type,
                    "message": e.message[:4000],
                    "created_at": stamp,
                }
            )
    state_cols = [
        "task_run_id",
        "loop_id",
        "experiment_id",
        "state",
        "archiving_level",
        "fingerprint",
        "last_run_id",
        "last_error",
        "updated_at",
    ]
    _insert(
        con,
        "wb_loop_state",
        _frame(state_rows, state_cols),
        "ON CONFLICT (task_run_id, loop_id) DO UPDATE SET experiment_id = excluded.experiment_id, state = excluded.state, "
        "archiving_level = greatest(wb_loop_state.archiving_level, excluded.archiving_level), "
        "fingerprint = excluded.fingerprint, last_run_id = excluded.last_run_id, last_error = excluded.last_error, "
        "updated_at = excluded.updated_at",
    )
    _insert(
        con,
        "wb_item_errors",
        _frame(
            error_rows,
            [
                "run_id",
                "task_run_id",
                "loop_id",
                "experiment_id",
                "path",
                "stage",
                "error_type",
                "message",
                "created_at",
            ],
        ),
        "",
    )


# --------------------------------------------------------------------------- the incremental cursor

CURSOR_NAME = "registry"


def load_cursor(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None] | None:
    """(registry rowid, registry updated-at) that the last completed run had seen, or None."""
    row = fetch_one(
        con, "SELECT registry_rowid, registry_updated_at FROM wb_cursor WHERE name = ?", [scoped(CURSOR_NAME)]
    )
    return (int(row[0]), row[1]) if row else None


def save_cursor(
    con: duckdb.DuckDBPyConnection, rec: Recorder, cursor: tuple[int, str | None], *, run_id: str
) -> None:
    """Move the cursor forward (never backwards) at the end of a completed run."""
    con.execute(
        "INSERT INTO wb_cursor VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "registry_rowid = greatest(wb_cursor.registry_rowid, excluded.registry_rowid), "
        "registry_updated_at = greatest(wb_cursor.registry_updated_at, excluded.registry_updated_at), "
        "run_id = excluded.run_id, updated_at = excluded.updated_at",
        [scoped(CURSOR_NAME), cursor[0], cursor[1], run_id, utc_now()],
    )
    rec.capture("wb_cursor", name=[scoped(CURSOR_NAME)])
