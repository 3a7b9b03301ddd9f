"""Publish an archive's catalog to the team's Delta Lake tables, merging by the stable ids.

Only what differs is written: each row carries ``row_version`` (its time stamp and a hash of its
content; an experiment's covers its manifest), so publishing the same archive again reads the
lake, finds nothing new and commits nothing. Where two archives hold the same row (a factor two
machines both found) the newer version stays, whatever order they publish in. An experiment whose hash changed (it was archived
again) has its rows in every experiment table replaced in one commit per table: return series
by an overwrite whose predicate names those experiments, the other tables by a merge that
deletes the experiment's rows the source no longer has. Experiments are written last, so a
publish that was interrupted is finished by the next one. Several publishers may write at once
(conditional commits, retried: see commits.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from workbench.archive.catalog import open_catalog
from workbench.archive.db import fetch_frame
from workbench.archive.remote import accepts_s3
from workbench.lake.commits import with_retries
from workbench.lake.storage import is_remote, lake_root, storage_options, table_uri
from workbench.lake.tables import EXPERIMENTS, LAKE_TABLES, RETURN_SERIES, LakeTable

__all__ = ["PublishResult", "TablePublish", "publish"]

_IDS_PER_PREDICATE = 2000
"""Experiments named in one overwrite predicate (one commit each); bigger lists make slow plans."""


@dataclass
class TablePublish:
    """What one table got: rows written, experiments replaced, its version before and after."""

    table: str
    rows_written: int = 0
    experiments_replaced: int = 0
    commits: int = 0
    attempts: int = 0
    version_before: int | None = None
    version_after: int | None = None


@dataclass
class PublishResult:
    lake: str
    archive: str
    n_experiments: int
    n_changed: int
    seconds: float = 0.0
    tables: list[TablePublish] = field(default_factory=list)

    @property
    def commits(self) -> int:
        return sum(t.commits for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "commits": self.commits}

    def format(self) -> str:
        lines = [
            f"published {self.archive} to {self.lake}: {self.n_changed} of {self.n_experiments} "
            f"experiments new or changed, {self.commits} commit(s), {self.seconds:.1f} s"
        ]
        for t in self.tables:
            if t.commits:
                lines.append(
                    f"  {t.table}: {t.rows_written} row(s) written, version {t.version_before} -> {t.version_after}"
                    + (f" ({t.attempts - 1} retried)" if t.attempts > t.commits else "")
                )
        if not self.commits:
            lines.append("  nothing differed: the lake already had this archive")
        return "\n".join(lines)


@accepts_s3(writes=False)
def publish(archive: Path | str | None, lake: str | Path, *, attempts: int = 12) -> PublishResult:
    """Write the archive's factors, strategies, experiments and return series to the lake at ``lake``.

    ``archive`` may be an ``s3://`` archive: it is read through this machine's cache, pulled first.
    """
    started = time.monotonic()
    root = lake_root(lake)
    if not is_remote(root):
        Path(root).mkdir(parents=True, exist_ok=True)
    rows = _catalog_rows(archive)
    experiments = rows[EXPERIMENTS.name]
    changed = _changed(root, EXPERIMENTS, experiments)["id"].to_list()
    series = _catalog_series(archive, changed) if changed else None
    months = dict(experiments.select("id", "month").iter_rows())
    result = PublishResult(root, str(archive), experiments.height, len(changed))
    for table in LAKE_TABLES:
        frame = series if table is RETURN_SERIES else rows[table.name]
        outcome = TablePublish(table.name)
        if frame is not None:
            _publish_table(root, table, frame, changed, outcome, attempts=attempts, months=months)
        result.tables.append(outcome)
    result.seconds = time.monotonic() - started
    return result


def _catalog_rows(archive: Path | str | None) -> dict[str, pl.DataFrame]:
    """Every lake table's rows from the catalog (except return series), with ``row_version``; one read."""
    out: dict[str, pl.DataFrame] = {}
    with open_catalog(archive, read_only=True) as con:
        for table in LAKE_TABLES:
            if table is RETURN_SERIES:
                continue
            sql = f"SELECT s.*, {_row_version(table)} AS row_version FROM ({table.select_sql}) s"
            out[table.name] = _in_utc(fetch_frame(con, sql))
    return out


def _row_version(table: LakeTable) -> str:
    """SQL for ``row_version``: the UTC time stamp (fixed width, so text order is time order), '|', an MD5 of the row."""
    stamp = (
        f"coalesce(strftime(s.{table.newest_by} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%f'), '')"
        if table.newest_by
        else "''"
    )
    return f"{stamp} || '|' || md5(CAST(to_json(s) AS VARCHAR))"


def _catalog_series(archive: Path | str | None, experiment_ids: Sequence[str]) -> pl.DataFrame:
    with open_catalog(archive, read_only=True) as con:
        frame = fetch_frame(
            con,
            f"SELECT * FROM ({RETURN_SERIES.select_sql}) WHERE list_contains($ids, experiment_id) "
            "ORDER BY task_run_id, experiment_id, datetime",
            {"ids": list(experiment_ids)},
        )
    return _in_utc(frame)


def _in_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps in UTC whatever the session's time zone (Delta stores UTC)."""
    fixes = [
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    ]
    return frame.with_columns(fixes) if fixes else frame


def _open(uri: str, root: str) -> DeltaTable | None:
    try:
        return DeltaTable(uri, storage_options=storage_options(root))
    except TableNotFoundError:
        return None


def _changed(root: str, table: LakeTable, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``frame`` the lake's table lacks or holds in an older version."""
    target = _open(table_uri(root, table.name), root)
    return frame if target is None else _newer(target, table, frame)


def _newer(target: DeltaTable, table: LakeTable, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``frame`` that are new to ``target`` or newer than its version of them."""
    present = pl.from_arrow(target.to_pyarrow_dataset().to_table(columns=[*table.keys, "row_version"]))
    assert isinstance(present, pl.DataFrame)
    joined = frame.join(
        present.rename({"row_version": "_lake_version"}), on=list(table.keys), how="left", nulls_equal=True
    )
    newer = pl.col("_lake_version").is_null() | (pl.col("row_version") > pl.col("_lake_version"))
    return joined.filter(newer).drop("_lake_version")


def _publish_table(
    root: str,
    table: LakeTable,
    frame: pl.DataFrame,
    changed: list[str],
    outcome: TablePublish,
    *,
    attempts: int,
    months: dict[str, str],
) -> None:
    uri = table_uri(root, table.name)
    done: set[str] = set()

    def step(attempt: int) -> None:
        target = _open(uri, root)
        if target is None:
            _create(uri, root, table, frame, outcome)
            return
        outcome.version_before = outcome.version_before if attempt > 1 else target.version()
        if table is RETURN_SERIES:
            _replace_series(uri, root, frame, changed, outcome, done, months)
        else:
            _merge(target, table, frame, changed, outcome)
        if outcome.commits:
            outcome.version_after = DeltaTable(uri, storage_options=storage_options(root)).version()

    _, outcome.attempts = with_retries(step, what=f"publishing {table.name} to {root}", attempts=attempts)


def _create(uri: str, root: str, table: LakeTable, frame: pl.DataFrame, outcome: TablePublish) -> None:
    """A table's first commit: version 0 or nothing. If another publisher created the table meanwhile,
    this commit fails (no automatic retry, which would turn it into an append of rows the other may
    hold too) and the step is redone as a merge."""
    write_deltalake(
        uri,
        frame.to_arrow(),
        mode="error",
        partition_by=list(table.partition_by) or None,
        storage_options=storage_options(root),
        commit_properties=CommitProperties(max_commit_retries=0),
    )
    outcome.rows_written += frame.height
    outcome.experiments_replaced = frame["experiment_id"].n_unique() if table.by_experiment else 0
    outcome.commits += 1
    outcome.version_before, outcome.version_after = None, 0


def _id_list(ids: Sequence[str]) -> str:
    return ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)


def _replace_series(
    uri: str,
    root: str,
    frame: pl.DataFrame,
    changed: list[str],
    outcome: TablePublish,
    done: set[str],
    months_of: dict[str, str],
) -> None:
    """Delete-then-insert the changed experiments' return series, one commit per batch of experiments.

    ``done`` holds the experiments already replaced by an earlier attempt (a retry goes on from
    there); ``months_of`` each experiment's month (its partition, also where its old rows are).
    """
    todo = [i for i in changed if i not in done]
    for start in range(0, len(todo), _IDS_PER_PREDICATE):
        batch = todo[start : start + _IDS_PER_PREDICATE]
        part = frame.filter(pl.col("experiment_id").is_in(batch))
        months = sorted({months_of[i] for i in batch if months_of.get(i)})
        predicate = f"experiment_id IN ({_id_list(batch)})"
        if len(months) == len({months_of.get(i) for i in batch}):  # every one known: skip other months' files
            predicate = f"month IN ({_id_list(months)}) AND {predicate}"
        write_deltalake(
            uri, part.to_arrow(), mode="overwrite", predicate=predicate, storage_options=storage_options(root)
        )
        outcome.rows_written += part.height
        outcome.experiments_replaced += len(batch)
        outcome.commits += 1
        done.update(batch)


def _merge(
    target: DeltaTable, table: LakeTable, frame: pl.DataFrame, changed: list[str], outcome: TablePublish
) -> None:
    """Upsert the rows that differ; for an experiment table also replace the changed experiments' rows."""
    source = _newer(target, table, frame)
    if table.by_experiment and changed:
        source = pl.concat([source, frame.filter(pl.col("experiment_id").is_in(changed))]).unique(
            subset=list(table.keys), keep="first", maintain_order=True
        )
    if source.is_empty() and not (table.by_experiment and changed):
        return
    merger = target.merge(
        source.to_arrow(),
        predicate=" AND ".join(f"t.{k} = s.{k}" for k in table.keys),
        source_alias="s",
        target_alias="t",
    )
    # a row another publisher made newer meanwhile stays (an experiment's own rows are replaced whole)
    newer_only = None if table.by_experiment else "s.row_version > t.row_version"
    merger = merger.when_matched_update_all(predicate=newer_only).when_not_matched_insert_all()
    if table.by_experiment and changed:
        merger = merger.when_not_matched_by_source_delete(
            predicate=f"t.experiment_id IN ({_id_list(changed)})"
        )
    metrics = merger.execute()
    if not any(
        metrics.get(k)
        for k in ("num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_deleted")
    ):
        return
    outcome.rows_written += source.height
    outcome.commits += 1
