"""External factors: imported into the same library as RD-Agent's, validated, idempotent, source recorded.

Factor files (Parquet)
----------------------
``import_factors(path, source=...)`` reads one of two table shapes (told apart by their columns):

* **metadata table** — one row per factor, or per factor and window when it carries results:

  ============== ======== ===============================================================
  column         required meaning
  ============== ======== ===============================================================
  name           yes      factor name (non-empty)
  version        no       version label (numbers are read as text)
  expression     no       Qlib expression; the same normalised expression is the same factor
  formula_hint   no       formula as text/LaTeX (used for identity when there is no expression)
  description_cn no       description
  tags           no       list of strings, or one comma-separated string
  region, freq   no       e.g. ``cn``, ``1d``
  variables_json no       JSON text describing the inputs
  window_name    no       window of the result columns below (default ``main_window``)
  start_date,    no       the window's dates (text ``YYYY-MM-DD``)
  end_date
  ic_mean, ic_ir, no      the factor's own results in that window (numbers)
  rank_ic,
  rank_ic_ir,
  coverage,
  annual_return,
  max_drawdown,
  sharpe
  ============== ======== ===============================================================

  Any other column is an error (a typo would otherwise be dropped silently).

* **values table** — factor values, ``datetime`` (date, datetime or ISO text) and ``instrument``
  plus either ``factor`` (or ``name``/``factor_name``) and ``value`` (long), or one numeric
  column per factor (wide; a pandas ``MultiIndex(datetime, instrument)`` frame written to
  Parquet has exactly this shape, and tuple labels such as ``"('feature', 'RESI5')"`` become
  ``RESI5``). Values can also come as a second file (``values=``) next to a metadata table;
  then every factor with values must be in the metadata.

A factor's id follows the archive's rule (same normalised expression, else same name and
version → same factor), so an external factor that RD-Agent also produced joins the existing
row: its ``source`` stays the first one seen and only empty fields are filled, while a factor
first imported from the same source takes the file's new values. Importing the same file twice
changes nothing; values of an imported factor are replaced as a whole. Everything is validated
before anything is written, and written in one transaction.

Every import is recorded in ``wb_imports`` (`imports`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

import duckdb
import polars as pl

from workbench.archive import ids
from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout, new_archive_note
from workbench.archive.library_cache import refresh_library_cache
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError, InputFileError
from workbench.library.imports import ImportResult, file_sha256, record_import
from workbench.rdagent.files.factor_meta import normalise_factor_name

__all__ = ["FactorImportSource", "META_COLUMNS", "PERFORMANCE_COLUMNS", "import_factors"]


FactorImportSource = Literal["external_manual", "alpha_library"]

META_COLUMNS: tuple[str, ...] = (
    "name",
    "version",
    "expression",
    "formula_hint",
    "description_cn",
    "tags",
    "region",
    "freq",
    "variables_json",
)
TEXT_COLUMNS: tuple[str, ...] = (
    "version",
    "expression",
    "formula_hint",
    "description_cn",
    "region",
    "freq",
    "variables_json",
    "window_name",
    "start_date",
    "end_date",
)
PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "ic_mean",
    "ic_ir",
    "rank_ic",
    "rank_ic_ir",
    "coverage",
    "annual_return",
    "max_drawdown",
    "sharpe",
)
_PERF_TEXT = ("window_name", "start_date", "end_date")
_VALUE_KEYS = ("datetime", "instrument")
_LONG_NAME_COLUMNS = ("factor", "name", "factor_name")
_MERGED = (
    "version",
    "description_cn",
    "formula_hint",
    "expression",
    "expression_key",
    "region",
    "freq",
    "variables_json",
)
_SHOWN_ROWS = 5


# --------------------------------------------------------------------------- reading and validating


def _read_parquet(path: Path, *, what: str = "factor file") -> pl.DataFrame:
    """The Parquet table at ``path``; a missing, unreadable or non-Parquet file is an :class:`InputFileError`."""
    if not path.exists():
        raise InputFileError(path, f"{what} not found", hint="check the path")
    if not path.is_file():
        raise InputFileError(path, f"{what} is not a file", hint="give the path of a .parquet file")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for a file that is not Parquet
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputFileError(
            path,
            f"{what} is not a readable Parquet file ({type(exc).__name__}: {detail})",
            hint="export the table with DataFrame.to_parquet / write_parquet",
        ) from exc


def _rows(mask: pl.Series) -> str:
    """'rows 3, 7, 9' (1-based, as people count) for the True positions of a mask."""
    positions = [i + 1 for i, bad in enumerate(mask.to_list()) if bad]
    shown = ", ".join(str(p) for p in positions[:_SHOWN_ROWS])
    more = f" and {len(positions) - _SHOWN_ROWS} more" if len(positions) > _SHOWN_ROWS else ""
    return f"row{'s' if len(positions) > 1 else ''} {shown}{more}"


def _is_values_table(frame: pl.DataFrame) -> bool:
    return all(c in frame.columns for c in _VALUE_KEYS)


def _cast_text(frame: pl.DataFrame, column: str, *, where: str) -> pl.Series:
    """A column as text; numbers become their text form, nested values are refused."""
    series = frame[column]
    if series.dtype == pl.String or series.dtype == pl.Null:
        return series.cast(pl.String)
    if series.dtype.is_numeric() or series.dtype in (pl.Boolean, pl.Date, pl.Datetime):
        return series.cast(pl.String)
    raise ConfigError(f"{where}: column {column!r} must be text, got {series.dtype}")


def _cast_number(frame: pl.DataFrame, column: str, *, where: str) -> pl.Series:
    series = frame[column]
    if series.dtype.is_numeric() or series.dtype == pl.Null:
        return series.cast(pl.Float64).fill_nan(None)
    if series.dtype == pl.String:
        parsed = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = parsed.is_null() & series.is_not_null() & (series.str.strip_chars() != "")
        if bad.any():
            raise ConfigError(
                f"{where}: column {column!r} must be numeric; {_rows(bad)} "
                f"hold {series.filter(bad).head(3).to_list()}"
            )
        return parsed.fill_nan(None)
    raise ConfigError(f"{where}: column {column!r} must be numeric, got {series.dtype}")


def _cast_tags(frame: pl.DataFrame, *, where: str) -> pl.Series:
    if "tags" not in frame.columns:
        return pl.Series("tags", [[] for _ in range(frame.height)], dtype=pl.List(pl.String))
    series = frame["tags"]
    if series.dtype == pl.String or series.dtype == pl.Null:
        return (
            series.cast(pl.String)
            .fill_null("")
            .str.split(",")
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .alias("tags")
        )
    if isinstance(series.dtype, pl.List) and series.dtype.inner in (pl.String, pl.Null):
        return (
            series.cast(pl.List(pl.String)).fill_null([]).list.eval(pl.element().drop_nulls()).alias("tags")
        )
    raise ConfigError(
        f"{where}: column 'tags' must be a list of strings or a comma-separated string, got {series.dtype}"
    )


def _blank_to_null(series: pl.Series) -> pl.Series:
    """Trimmed text with empty strings as null (an empty cell means 'not given')."""
    text = series.str.strip_chars()
    return text.set(text == "", None)


def _validate_metadata(frame: pl.DataFrame, *, where: str) -> pl.DataFrame:
    """The metadata table with typed columns, a factor id per row and a non-null window per result row."""
    allowed = (*META_COLUMNS, *_PERF_TEXT, *PERFORMANCE_COLUMNS)
    unknown = [c for c in frame.columns if c not in allowed]
    if unknown:
        raise ConfigError(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; a metadata table may have "
            f"{', '.join(allowed)} (values go in a values table: datetime, instrument, ...)"
        )
    if frame.height == 0:
        raise ConfigError(f"{where}: the table has no rows")
    names = _cast_text(frame, "name", where=where).str.strip_chars()
    names = names.map_elements(normalise_factor_name, return_dtype=pl.String) if names.len() else names
    bad = names.is_null() | (names == "")
    if bad.any():
        raise ConfigError(f"{where}: column 'name' is empty in {_rows(bad)}; every factor needs a name")
    typed = (
        pl.DataFrame({"name": names})
        .with_columns(
            [
                (
                    _blank_to_null(_cast_text(frame, c, where=where))
                    if c in frame.columns
                    else pl.Series(c, [None] * frame.height, dtype=pl.String)
                ).alias(c)
                for c in TEXT_COLUMNS
            ]
        )
        .with_columns(_cast_tags(frame, where=where))
    )
    for column in PERFORMANCE_COLUMNS:
        typed = typed.with_columns(
            _cast_number(frame, column, where=where).alias(column)
            if column in frame.columns
            else pl.lit(None, dtype=pl.Float64).alias(column)
        )
    has_results = pl.any_horizontal([pl.col(c).is_not_null() for c in PERFORMANCE_COLUMNS])
    typed = typed.with_columns(
        pl.when(has_results | pl.col("window_name").is_not_null())
        .then(pl.col("window_name").fill_null("main_window"))
        .otherwise(None)
        .alias("window_name"),
        pl.struct("name", "expression", "formula_hint", "version")
        .map_elements(
            lambda r: ids.factor_id(
                r["name"], expression=r["expression"] or r["formula_hint"], version=r["version"]
            ),
            return_dtype=pl.String,
        )
        .alias("factor_id"),
    )
    duplicated = typed.select(pl.struct("factor_id", "window_name").is_duplicated()).to_series()
    if duplicated.any():
        raise ConfigError(
            f"{where}: the same factor appears twice for one window in {_rows(duplicated)} "
            "(same name and version, or the same expression); keep one row per factor and window"
        )
    return typed


def _long_values(frame: pl.DataFrame, *, where: str) -> pl.DataFrame:
    name_column = next((c for c in _LONG_NAME_COLUMNS if c in frame.columns), None)
    if name_column is None:
        raise ConfigError(
            f"{where}: a long values table needs a factor column ({' or '.join(_LONG_NAME_COLUMNS)})"
        )
    extra = [c for c in frame.columns if c not in (*_VALUE_KEYS, name_column, "value")]
    if extra:
        raise ConfigError(
            f"{where}: unexpected column(s) {', '.join(map(repr, extra))} in a long values table "
            f"(datetime, instrument, {name_column}, value)"
        )
    names = _cast_text(frame, name_column, where=where)
    return pl.DataFrame(
        {
            "name": names.map_elements(normalise_factor_name, return_dtype=pl.String)
            if names.len()
            else names,
            "datetime": frame["datetime"],
            "instrument": frame["instrument"],
            "value": _cast_number(frame, "value", where=where),
        }
    )


def _wide_values(frame: pl.DataFrame, *, where: str) -> pl.DataFrame:
    factor_columns = [c for c in frame.columns if c not in _VALUE_KEYS]
    if not factor_columns:
        raise ConfigError(
            f"{where}: a wide values table needs at least one factor column besides datetime and instrument"
        )
    not_numeric = [
        c for c in factor_columns if not (frame[c].dtype.is_numeric() or frame[c].dtype == pl.Null)
    ]
    if not_numeric:
        raise ConfigError(
            f"{where}: factor column(s) {', '.join(map(repr, not_numeric))} are not numeric; "
            "a wide values table has datetime, instrument and one numeric column per factor"
        )
    renamed = {c: normalise_factor_name(c) for c in factor_columns}
    if len(set(renamed.values())) < len(renamed):
        raise ConfigError(f"{where}: two columns name the same factor after normalisation: {renamed}")
    return (
        frame.select(*_VALUE_KEYS, *[pl.col(c).cast(pl.Float64).alias(n) for c, n in renamed.items()])
        .unpivot(index=list(_VALUE_KEYS), variable_name="name", value_name="value")
        .with_columns(pl.col("value").fill_nan(None))
    )


def _validate_values(frame: pl.DataFrame, *, where: str) -> pl.DataFrame:
    """Long frame ``name, datetime (Date), instrument, value`` without duplicate keys."""
    long = _long_values(frame, where=where) if "value" in frame.columns else _wide_values(frame, where=where)
    stamp = long["datetime"]
    if stamp.dtype == pl.Date:
        dates = stamp
    elif isinstance(stamp.dtype, pl.Datetime):
        dates = stamp.dt.date()
    elif stamp.dtype == pl.String:
        dates = stamp.str.strip_chars().str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        bad = dates.is_null() & stamp.is_not_null()
        if bad.any():
            raise ConfigError(f"{where}: column 'datetime' is not a date (YYYY-MM-DD) in {_rows(bad)}")
    else:
        raise ConfigError(
            f"{where}: column 'datetime' must be a date, datetime or ISO text, got {stamp.dtype}"
        )
    instrument = _cast_text(long, "instrument", where=where)
    long = long.with_columns(dates.alias("datetime"), instrument.alias("instrument"))
    missing = long["datetime"].is_null() | long["instrument"].is_null() | long["name"].is_null()
    if missing.any():
        raise ConfigError(
            f"{where}: datetime, instrument and factor must be set in every row; missing in {_rows(missing)}"
        )
    duplicated = long.select(pl.struct("name", "datetime", "instrument").is_duplicated()).to_series()
    if duplicated.any():
        raise ConfigError(
            f"{where}: the same factor, date and instrument appear more than once ({_rows(duplicated)})"
        )
    return long


def _attach_value_ids(
    values: pl.DataFrame, meta: pl.DataFrame, *, where: str, meta_where: str | None = None
) -> pl.DataFrame:
    """Factor id for every value row, through the metadata's names (each name must mean one factor).

    ``where`` names the file the values came from; ``meta_where`` the metadata file when the
    values came as a second file (``--values``), so each message names the file to fix.
    """
    meta_label = f"the metadata table {meta_where}" if meta_where else "the metadata table"
    by_name = meta.select("name", "factor_id").unique()
    ambiguous = by_name.filter(pl.col("name").is_duplicated())["name"].unique().to_list()
    used_ambiguous = sorted(set(ambiguous) & set(values["name"].unique().to_list()))
    if used_ambiguous:
        raise ConfigError(
            f"{where}: factor name(s) {used_ambiguous} stand for several factors (versions or expressions) "
            f"in {meta_label}; import their values in separate files, one version each"
        )
    unknown = sorted(set(values["name"].unique().to_list()) - set(by_name["name"].to_list()))
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ConfigError(
            f"{where}: values for factor(s) not in {meta_label}: {unknown[:10]}{more}; "
            "add them to the metadata or drop their values"
        )
    return values.join(by_name, on="name", how="left")


# --------------------------------------------------------------------------- factors


@storage_errors("imported factors to the archive")
def import_factors(
    path: Path | str,
    *,
    archive: Path | str | None,
    source: FactorImportSource,
    values: Path | str | None = None,
) -> ImportResult:
    """Import an external factor table (and optionally its values) into the factor library.

    See the module docstring for the accepted shapes. A missing file, or one that is not
    Parquet, is an :class:`InputFileError` naming it (exit 3); a readable table with a problem is
    a :class:`ConfigError` naming the file, the column and rows of the first problem (exit 2);
    nothing is written then.
    """
    if source not in get_args(FactorImportSource):
        raise ConfigError(f"--source {source!r} is not one of: {', '.join(get_args(FactorImportSource))}")
    path = Path(path)
    values_path = Path(values) if values is not None else None
    table = _read_parquet(path)
    value_frame: pl.DataFrame | None = None
    if _is_values_table(table):
        if values_path is not None:
            raise ConfigError(
                f"{path}: is a values table; give the metadata table first and the values with --values"
            )
        value_frame = _validate_values(table, where=str(path))
        meta = _validate_metadata(value_frame.select("name").unique(maintain_order=True), where=str(path))
        value_frame = _attach_value_ids(value_frame, meta, where=str(path))
    elif "name" in table.columns:
        meta = _validate_metadata(table, where=str(path))
        if values_path is not None:
            second = _read_parquet(values_path, what="values file")
            if not _is_values_table(second):
                raise ConfigError(
                    f"{values_path}: a values table needs the columns datetime and instrument; "
                    f"columns are {second.columns}"
                )
            value_frame = _validate_values(second, where=str(values_path))
            value_frame = _attach_value_ids(value_frame, meta, where=str(values_path), meta_where=str(path))
    else:
        raise ConfigError(
            f"{path}: neither a factor metadata table (needs a 'name' column) nor a values table "
            f"(needs 'datetime' and 'instrument'); columns are {table.columns}"
        )
    sha256 = file_sha256(path)
    if values_path is not None:
        sha256 = hashlib.sha256(f"{sha256}|{file_sha256(values_path)}".encode()).hexdigest()
    created = new_archive_note(archive)
    result = _write_factors(archive, meta, value_frame, source=source, path=path, sha256=sha256)
    refresh_library_cache(archive)
    return replace(result, notes=(*result.notes, created)) if created else result


def _factor_rows(meta: pl.DataFrame, *, source: str, now: datetime) -> pl.DataFrame:
    """One row per factor (first row of each factor supplies the metadata; tags are united)."""
    expression = pl.coalesce("expression", "formula_hint")
    return (
        meta.group_by("factor_id", maintain_order=True)
        .agg(
            pl.col("name").first(),
            *[
                pl.col(c).drop_nulls().first()
                for c in (
                    "version",
                    "expression",
                    "formula_hint",
                    "description_cn",
                    "region",
                    "freq",
                    "variables_json",
                )
            ],
            pl.col("tags")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .drop_nulls()
            .unique()
            .sort()
            .alias("tags"),
        )
        .with_columns(
            expression.map_elements(
                lambda e: ids.normalise_expression(e) or None, return_dtype=pl.String
            ).alias("expression_key"),
            pl.lit(source).alias("source"),
        )
        .rename({"factor_id": "id"})
    )


def _merge_factors(incoming: pl.DataFrame, existing: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """The rows to write: new factors as given; known ones merged by the rules of the module docstring."""
    joined = incoming.join(existing, on="id", how="left", suffix="_old")
    same_source = pl.col("source_old") == pl.lit(source)
    merged = [
        pl.when(pl.col("source_old").is_null())
        .then(pl.col(c))
        .when(same_source)
        .then(pl.coalesce(c, f"{c}_old"))
        .otherwise(pl.coalesce(pl.when(pl.col(f"{c}_old") != "").then(pl.col(f"{c}_old")), c, f"{c}_old"))
        .alias(c)
        for c in _MERGED
    ]
    return joined.with_columns(
        *merged,
        pl.coalesce("name_old", "name").alias("name"),
        pl.coalesce("source_old", "source").alias("source"),
        pl.when(pl.col("tags_old").is_null())
        .then(pl.col("tags"))
        .otherwise(pl.concat_list("tags", "tags_old").list.unique().list.sort())
        .alias("tags"),
        pl.col("source_old").is_null().alias("_new"),
    )


def _changed(merged: pl.DataFrame) -> pl.Series:
    """Known factors whose stored row would change."""
    differs = pl.any_horizontal(
        [pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in (*_MERGED, "name", "source")]
        + [pl.col("tags").list.join("\x1f").ne_missing(pl.col("tags_old").list.join("\x1f"))]
    )
    return merged.select(~pl.col("_new") & differs).to_series()


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register(name, frame.to_arrow())


def _write_factors(
    archive: Path | str | None,
    meta: pl.DataFrame,
    values: pl.DataFrame | None,
    *,
    source: str,
    path: Path,
    sha256: str,
) -> ImportResult:
    now = utc_now()
    incoming = _factor_rows(meta, source=source, now=now)
    perf = meta.filter(pl.col("window_name").is_not_null()).select(
        pl.struct("factor_id", "window_name")
        .map_elements(
            lambda r: ids.performance_id(r["factor_id"], r["window_name"], None), return_dtype=pl.String
        )
        .alias("id"),
        "factor_id",
        "window_name",
        "start_date",
        "end_date",
        *PERFORMANCE_COLUMNS,
    )
    notes: list[str] = []
    created = not ArchiveLayout.at(archive).catalog.exists()
    if created:
        notes.append(f"no archive at {ArchiveLayout.at(archive).root}: created a new one")
    factor_ids = incoming["id"].to_list()
    with archive_lock(archive, job="import-factors"), open_catalog(archive, create=True) as con:
        _register(con, "_ids", pl.DataFrame({"id": factor_ids}))
        existing = pl.from_arrow(
            con.sql(
                "SELECT id, name, version, source, description_cn, formula_hint, expression, expression_key, "
                "CAST(coalesce(tags, '[]') AS VARCHAR[]) AS tags, region, freq, CAST(variables_json AS VARCHAR) AS variables_json "
                "FROM aistock_factors WHERE id IN (SELECT id FROM _ids)"
            ).to_arrow_table()
        )
        assert isinstance(existing, pl.DataFrame)
        existing = existing.with_columns(pl.col("tags").cast(pl.List(pl.String)))
        merged = _merge_factors(incoming, existing, source=source)
        changed = _changed(merged)
        to_write = merged.filter(pl.col("_new") | changed)
        kept_other_source = merged.filter(~pl.col("_new") & (pl.col("source") != source))
        if kept_other_source.height:
            notes.append(
                f"{kept_other_source.height} factor(s) were already in the library from another source "
                f"(e.g. {kept_other_source['name'][0]!r} from {kept_other_source['source'][0]}); "
                "they keep that source, empty fields were filled"
            )
        with recorded(con, ArchiveLayout.at(archive), "import-factors") as rec:
            _upsert_factors(con, to_write, now=now)
            # the file is the truth for its own factors' imported windows: a window dropped from it goes
            _register(con, "_imported", merged.select(pl.col("id").alias("factor_id")))
            _register(
                con,
                "_perf_ids",
                perf.select("id") if perf.height else pl.DataFrame({"id": []}, schema={"id": pl.String}),
            )
            con.execute(
                "DELETE FROM aistock_factor_performance WHERE experiment_id IS NULL AND basis = 'factor' "
                "AND factor_id IN (SELECT factor_id FROM _imported) AND id NOT IN (SELECT id FROM _perf_ids)"
            )
            if perf.height:
                _register(con, "_perf", perf.with_columns(pl.lit(now).alias("updated_at")))
                con.execute(
                    "INSERT INTO aistock_factor_performance (id, factor_id, window_name, start_date, end_date, ic_mean, "
                    "ic_ir, rank_ic, rank_ic_ir, coverage, annual_return, max_drawdown, sharpe, experiment_id, basis, "
                    "dates_from, combination_size, updated_at) "
                    "SELECT id, factor_id, window_name, start_date, end_date, ic_mean, ic_ir, rank_ic, rank_ic_ir, "
                    "coverage, annual_return, max_drawdown, sharpe, NULL, 'factor', "
                    "CASE WHEN start_date IS NOT NULL OR end_date IS NOT NULL THEN 'file' END, 1, updated_at "
                    "FROM _perf ON CONFLICT (id) DO UPDATE SET "
                    + ", ".join(
                        f"{c} = excluded.{c}"
                        for c in ("start_date", "end_date", "dates_from", *PERFORMANCE_COLUMNS)
                    )
                )
            n_values = _replace_values(con, values)
            import_id = record_import(
                con,
                kind="factors",
                source=source,
                path=path,
                sha256=sha256,
                item_ids=factor_ids,
                n_values=n_values,
                now=now,
            )
            rec.capture("aistock_factors", id=factor_ids)
            rec.capture("aistock_factor_performance", factor_id=factor_ids)
            rec.capture("aistock_factor_values", factor_id=factor_ids)
            rec.capture("wb_imports", import_id=[import_id])
    n_new = int(merged["_new"].sum())
    n_updated = int(changed.sum())
    return ImportResult(
        "factors",
        source,
        str(path),
        sha256,
        tuple(factor_ids),
        n_new,
        n_updated,
        len(factor_ids) - n_new - n_updated,
        perf.height,
        n_values,
        tuple(notes),
    )


def _upsert_factors(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, *, now: datetime) -> None:
    if rows.height == 0:
        return
    frame = rows.select(
        "id",
        "name",
        "version",
        "source",
        "description_cn",
        "formula_hint",
        "expression",
        "expression_key",
        pl.col("tags").map_elements(lambda t: json.dumps(list(t)), return_dtype=pl.String).alias("tags"),
        "region",
        "freq",
        "variables_json",
        pl.lit(now).alias("now"),
    )
    _register(con, "_factors", frame)
    con.execute(
        """
        INSERT INTO aistock_factors (id, name, version, source, description_cn, formula_hint, expression, expression_key,
                                     tags, region, freq, variables_json, first_experiment_id, created_at, updated_at)
        SELECT id, name, version, source, description_cn, formula_hint, expression, expression_key, tags, region, freq,
               variables_json, NULL, now, now FROM _factors
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, source = excluded.source,
            description_cn = excluded.description_cn, formula_hint = excluded.formula_hint,
            expression = excluded.expression, expression_key = excluded.expression_key, tags = excluded.tags,
            region = excluded.region, freq = excluded.freq, variables_json = excluded.variables_json,
            updated_at = excluded.updated_at
        """
    )


def _replace_values(con: duckdb.DuckDBPyConnection, values: pl.DataFrame | None) -> int:
    """Replace the stored values of every factor in the file (so re-importing never duplicates)."""
    if values is None or values.height == 0:
        return 0
    frame = values.select("factor_id", "datetime", "instrument", "value")
    _register(con, "_values", frame)
    con.execute(
        "DELETE FROM aistock_factor_values WHERE factor_id IN (SELECT DISTINCT factor_id FROM _values)"
    )
    con.execute(
        "INSERT INTO aistock_factor_values (factor_id, datetime, instrument, value) "
        "SELECT factor_id, datetime, instrument, value FROM _values"
    )
    return frame.height
