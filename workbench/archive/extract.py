"""Extract: one loop's files → catalog rows, a return series and the list of files to keep.

Nothing here writes. Every unreadable or malformed input becomes an `ItemError`; whatever could
be read is still returned, and the level the loop may reach says how complete it is.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from workbench.archive import ids
from workbench.archive.files import WorkspaceFile
from workbench.archive.scan import LoopCandidate
from workbench.errors import ConfigError, InputFileError
from workbench.metrics import compute_return_metrics
from workbench.rdagent.files.factor_meta import read_factor_meta
from workbench.rdagent.files.factor_perf import read_factor_perf
from workbench.rdagent.files.feedback import read_feedback
from workbench.rdagent.files.jsonfile import read_json_file
from workbench.rdagent.files.qlib_res import qlib_metrics_by_name, read_qlib_res
from workbench.rdagent.files.reading import recording_reads
from workbench.rdagent.files.returns import read_returns
from workbench.rdagent.request import parse_request

REGISTRY_METRIC_COLUMNS = ("ic_mean", "rank_ic_mean", "ann_return", "mdd", "turnover", "multi_score")
META_FILES = (
    "workspace_meta.json",
    "experiment_summary.json",
    "manifest.json",
    "model_meta.json",
    "strategy_meta.json",
)


@dataclass(frozen=True)
class ItemError:
    stage: str
    error_type: str
    message: str
    path: str | None = None


@dataclass(frozen=True)
class FileToStore:
    rel_path: str
    source: Path
    info: WorkspaceFile


@dataclass
class Extracted:
    candidate: LoopCandidate
    factors: list[dict[str, Any]] = field(default_factory=list)
    performance: list[dict[str, Any]] = field(default_factory=list)
    combination: dict[str, Any] | None = None
    strategy: dict[str, Any] | None = None
    experiment: dict[str, Any] = field(default_factory=dict)
    returns: pl.DataFrame | None = None
    files: list[FileToStore] = field(default_factory=list)
    file_refs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    #: absolute path → sha256 of the bytes each reader parsed (checked again when the file is stored)
    read_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def can_reach_level2(self) -> bool:
        """Level 2 needs a readable return series, a workspace on disk and no extraction error."""
        return not self.errors and self.returns is not None and self.candidate.has_results_on_disk


def clean_json(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null (the catalog's JSON type has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def to_json_text(value: Any) -> str:
    """Sorted-key JSON text, NaN and infinities as null, anything else unknown as its `str`.

    Most values (file lists, parsed JSON) have text keys, finite floats and plain types, and
    `json.dumps` writes them as they are; only a value it refuses (a NaN, an object it cannot
    encode, keys it cannot sort) goes through `clean_json` first. Walking every value in Python
    was a large share of an archive batch's commit.
    """
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, default=_refuse)
    except (ValueError, TypeError):
        return json.dumps(clean_json(value), ensure_ascii=False, sort_keys=True, default=str)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not plain JSON")


def _error(stage: str, exc: Exception, path: Path | None = None) -> ItemError:
    return ItemError(stage, type(exc).__name__, str(exc), str(path) if path else getattr(exc, "path", None))


def _registry_metrics(loop: dict[str, Any]) -> dict[str, Any]:
    metrics = {c: loop.get(c) for c in REGISTRY_METRIC_COLUMNS if loop.get(c) is not None}
    raw = loop.get("metrics_json")
    if raw:
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                metrics["metrics_json"] = parsed
        except ValueError:
            metrics["metrics_json_unparsed"] = str(raw)[:2000]
    return metrics


def extract_loop(
    candidate: LoopCandidate,
    *,
    request: dict[str, Any] | None,
    include_heavy: bool,
    with_files: bool,
    library: dict[str, str] | None = None,
) -> Extracted:
    """Everything the catalog needs about one loop."""
    out = Extracted(candidate)
    ws = candidate.experiment_workspace
    directory = ws.directory if ws else None
    qlib_named: dict[str, Any] = {}
    qlib_raw: dict[str, Any] = {}
    feedback: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    factor_frame: pl.DataFrame | None = None
    combos: pl.DataFrame | None = None
    per_factor: pl.DataFrame | None = None

    if directory is not None:
        with recording_reads() as seen:
            qlib_named, qlib_raw, feedback, factor_frame, perf = _read_workspace(directory, meta, out)
        out.read_hashes = seen
        if perf is not None:
            combos, per_factor = perf.combinations, perf.factors

    entry = _strategy_entry(request, candidate.loop_id)
    factor_set = _entry_factor_set(entry, request)
    factor_ids = _build_factors(out, factor_frame, factor_set, library or {})
    members = _build_combination(out, factor_ids, entry, factor_set, combos)
    _build_performance(out, factor_ids, per_factor, combos, members)
    _build_strategy(out, feedback, meta, entry, request)
    recomputed = compute_return_metrics(out.returns) if out.returns is not None and out.returns.height else {}
    _build_experiment(out, qlib_named, qlib_raw, feedback, meta, recomputed, entry, request)
    if with_files:
        _collect_files(out, include_heavy=include_heavy)
    candidate.listings.clear()  # used: the item goes back to the main process without them
    return out


def _read_workspace(directory: Path, meta: dict[str, Any], out: Extracted) -> tuple[Any, ...]:
    """Parse the result and metadata files of an experiment workspace (errors go to `out`).

    Each reader refuses a file over its kind's size limit before reading it
    (`workbench.rdagent.files.limits`), so one hostile file fails its loop, not the machine.
    """
    qlib_named, qlib_raw = _read_qlib(directory, out)
    out.returns = _read_series(directory, out)
    feedback = _read_optional(directory / "feedback.json", read_feedback, "feedback", out)
    factor_frame = _read_optional(directory / "factor_meta.json", read_factor_meta, "factor_meta", out)
    perf = _read_optional(directory / "factor_perf.json", read_factor_perf, "factor_perf", out)
    for name in META_FILES:
        data = _read_optional(directory / name, read_json_file, "meta", out)
        if data is not None:
            meta[name] = data
    return qlib_named, qlib_raw, feedback, factor_frame, perf


def _present(path: Path) -> bool:
    """The entry exists (a link counts, so that a linked result file is reported, never read)."""
    return os.path.lexists(path)


def _read_optional(path: Path, reader: Any, stage: str, out: Extracted) -> Any:
    if not _present(path):
        return None
    try:
        return reader(path)
    except InputFileError as exc:
        out.errors.append(_error(stage, exc, path))
        return None


def _read_qlib(directory: Path, out: Extracted) -> tuple[dict[str, Any], dict[str, Any]]:
    path = directory / "qlib_res.csv"
    if not _present(path):
        return {}, {}
    try:
        frame = read_qlib_res(path)
    except InputFileError as exc:
        out.errors.append(_error("qlib_res", exc, path))
        return {}, {}
    raw = dict(zip(frame["metric"].to_list(), frame["value"].to_list(), strict=True))
    return qlib_metrics_by_name(frame), raw


def _read_series(directory: Path, out: Extracted) -> pl.DataFrame | None:
    path = directory / "ret.pkl"
    if not _present(path):
        return None
    try:
        # parsed from one read; storing the file checks it still has these bytes (read_hashes)
        return read_returns(path)
    except (InputFileError, OSError) as exc:
        out.errors.append(_error("returns", exc, path))
        return None


def _strategy_entry(request: dict[str, Any] | None, loop_id: int) -> dict[str, Any] | None:
    if not request:
        return None
    entries: list[dict[str, Any]] = request.get("strategies") or []
    for entry in entries:
        if entry.get("loop_id") == loop_id:
            return entry
    single = request.get("strategy")
    if single and not request.get("strategies"):
        return {**single, "role": single.get("role", "control")}
    return None


def _entry_factor_set(entry: dict[str, Any] | None, request: dict[str, Any] | None) -> dict[str, Any]:
    """The strategy entry's own factor set, else the request-wide one."""
    return (entry or {}).get("factor_set") or (request or {}).get("factor_set") or {}


def _build_factors(
    out: Extracted,
    frame: pl.DataFrame | None,
    factor_set: dict[str, Any],
    library: dict[str, str],
) -> dict[str, str]:
    """Factor library rows; returns name → factor id for this loop.

    A factor a request names without an expression is the library's factor of that name (ids
    given by `export-request` under `factor_set.extra.library_factor_ids` first), so naming a
    library factor never creates a second row for it.
    """
    experiment = out.candidate.experiment_id
    name_to_id: dict[str, str] = {}
    if frame is not None:
        for row in frame.iter_rows(named=True):
            name = row["name"]
            expression = row.get("expression") or row.get("formula_hint")
            factor = ids.factor_id(name, expression=expression)
            name_to_id[name] = factor
            out.factors.append(
                {
                    "id": factor,
                    "name": name,
                    "version": row.get("impl_version"),
                    "source": row.get("source") or "rdagent_generated",
                    "description_cn": row.get("description_cn"),
                    "formula_hint": row.get("formula_hint"),
                    "expression": row.get("expression"),
                    "expression_key": ids.normalise_expression(expression) or None,
                    "tags": to_json_text(row.get("tags") or []),
                    "region": row.get("region"),
                    "freq": row.get("freq"),
                    "variables_json": row.get("variables_json"),
                    "first_experiment_id": experiment,
                }
            )
    given = ((factor_set.get("extra") or {}).get("library_factor_ids")) or {}
    for ref in factor_set.get("factors") or []:
        name = ref.get("name")
        if not name or name in name_to_id:
            continue
        factor = given.get(name) or library.get(name) or ids.factor_id(name, version=ref.get("version"))
        name_to_id[name] = factor
        out.factors.append(
            {
                "id": factor,
                "name": name,
                "version": ref.get("version"),
                "source": ref.get("source") or "rdagent_generated",
                "description_cn": None,
                "formula_hint": None,
                "expression": None,
                "expression_key": None,
                "tags": "[]",
                "region": None,
                "freq": None,
                "variables_json": None,
                "first_experiment_id": experiment,
            }
        )
    return name_to_id


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


MAIN_WINDOW = "main_window"
"""The window name the backfill gives the experiment's own backtest (its only window in HEAD files)."""


def _build_performance(
    out: Extracted,
    factor_ids: dict[str, str],
    per_factor: pl.DataFrame | None,
    combos: pl.DataFrame | None,
    members: list[str],
) -> None:
    """Per-factor windows where the file has them; else the combination's windows for its members.

    `members` are the names of the loop's combination (the strategy's factor set when a request
    defines one). A member gets the combination's figures labelled `basis='combination'` (with
    `combination_size`, how many factors share them), never as its own. A window without dates
    that is the experiment's own backtest (`main_window`) takes the first and last date of the
    experiment's return series (`dates_from='backtest'`).
    """
    experiment = out.candidate.experiment_id
    backtest = _backtest_dates(out.returns)
    seen: set[str] = set()
    if per_factor is not None:
        for row in per_factor.iter_rows(named=True):
            factor = factor_ids.get(row["name"]) or ids.factor_id(row["name"])
            window = row.get("window_name") or MAIN_WINDOW
            perf_id = ids.performance_id(factor, window, experiment)
            seen.add(perf_id)
            stats = {**row, "combination_size": 1}
            out.performance.append(
                _perf_row(perf_id, factor, window, stats, experiment, basis="factor", backtest=backtest)
            )
    if combos is None:
        return
    for row in combos.iter_rows(named=True):
        combined = list(dict.fromkeys(members or row.get("factor_names") or []))
        for name in (n for n in combined if n in factor_ids):
            factor_id = factor_ids[name]
            window = row.get("window_name") or MAIN_WINDOW
            perf_id = ids.performance_id(factor_id, window, experiment)
            if perf_id in seen:
                continue
            seen.add(perf_id)
            stats = {**row, "ic_mean": row.get("ic"), "coverage": None, "combination_size": len(combined)}
            out.performance.append(
                _perf_row(
                    perf_id, factor_id, window, stats, experiment, basis="combination", backtest=backtest
                )
            )


def _backtest_dates(returns: pl.DataFrame | None) -> tuple[str, str] | None:
    """First and last day of the experiment's return series (its backtest), as ISO dates."""
    if returns is None or returns.height == 0 or "datetime" not in returns.columns:
        return None
    days = returns["datetime"].drop_nulls()
    if days.is_empty():
        return None
    return str(days.min()), str(days.max())


def _perf_row(
    perf_id: str,
    factor: str,
    window: str,
    row: dict[str, Any],
    experiment: str,
    *,
    basis: str,
    backtest: tuple[str, str] | None,
) -> dict[str, Any]:
    start, end = row.get("start"), row.get("end")
    dates_from = "file" if start or end else None
    if dates_from is None and window == MAIN_WINDOW and backtest is not None:
        (start, end), dates_from = backtest, "backtest"
    return {
        "id": perf_id,
        "factor_id": factor,
        "window_name": window,
        "start_date": start,
        "end_date": end,
        "ic_mean": _finite(row.get("ic_mean")),
        "ic_ir": _finite(row.get("ic_ir")),
        "coverage": _finite(row.get("coverage")),
        "annual_return": _finite(row.get("annual_return")),
        "max_drawdown": _finite(row.get("max_drawdown")),
        "sharpe": _finite(row.get("sharpe")),
        "experiment_id": experiment,
        "basis": basis,
        "rank_ic": _finite(row.get("rank_ic")),
        "rank_ic_ir": _finite(row.get("rank_ic_ir")),
        "dates_from": dates_from,
        "annual_return_cost": row.get("annual_return_cost"),
        "max_drawdown_cost": row.get("max_drawdown_cost"),
        "sharpe_cost": row.get("sharpe_cost"),
        "periods_per_year": row.get("periods_per_year"),
        "combination_size": row.get("combination_size"),
    }


def _build_combination(
    out: Extracted,
    factor_ids: dict[str, str],
    entry: dict[str, Any] | None,
    factor_set: dict[str, Any],
    combos: pl.DataFrame | None,
) -> list[str]:
    """The loop's factor combination; returns its member names."""
    names: list[str] = []
    label = "main"
    set_factors = factor_set.get("factors") or []
    if set_factors:
        names = [f["name"] for f in set_factors if f.get("name")]
        label = f"{entry.get('name', 'strategy')}_factors" if entry else "request_factors"
    elif combos is not None and combos.height:
        names = list(combos.row(0, named=True).get("factor_names") or [])
        label = combos.row(0, named=True).get("combination_name") or label
    if not names:
        names = list(factor_ids)
    members = [factor_ids[n] for n in names if n in factor_ids]
    if not members:
        return []
    out.combination = {
        "id": ids.combination_id(members),
        "name": f"{label}:{out.candidate.task_run_id[:8]}/{out.candidate.loop_id}",
        "factor_ids": to_json_text(sorted(set(members))),
        "experiment_id": out.candidate.experiment_id,
        "source": "rdagent",
    }
    return [n for n in names if n in factor_ids]


def _recommendation(feedback: dict[str, Any] | None) -> str | None:
    decision = (feedback or {}).get("decision")
    if decision is True:
        return "rdagent_accept"
    if decision is False:
        return "rdagent_reject"
    return None


def _build_strategy(
    out: Extracted,
    feedback: dict[str, Any] | None,
    meta: dict[str, Any],
    entry: dict[str, Any] | None,
    request: dict[str, Any] | None,
) -> None:
    candidate = out.candidate
    ws = candidate.experiment_workspace
    key = ids.strategy_key(candidate.task_run_id, candidate.loop_id, ws.workspace_id if ws else None)
    raw_strategy_meta = meta.get("strategy_meta.json")
    strategy_meta: dict[str, Any] = raw_strategy_meta if isinstance(raw_strategy_meta, dict) else {}
    config: dict[str, Any] = {}
    if entry:
        config = {
            k: entry.get(k)
            for k in ("trading_rule", "risk_model", "benchmark", "factor_set", "extra")
            if entry.get(k) is not None
        }
    elif strategy_meta.get("portfolio_config"):
        config = {"portfolio_config": strategy_meta["portfolio_config"]}
    name = (
        (entry or {}).get("name")
        or strategy_meta.get("strategy_name")
        or (f"{candidate.loop.get('action') or 'loop'}_{candidate.task_run_id[:8]}_{candidate.loop_id}")
    )
    out.strategy = {
        "id": ids.strategy_id(key),
        "strategy_key": key,
        "name": name,
        "shape": "portfolio",
        "output_mode": "target_weight",
        "source": (entry or {}).get("source") or "rdagent",
        "strategy_type": (entry or {}).get("strategy_type") or "topk",
        "config_json": to_json_text(config),
        "factor_combination_id": out.combination["id"] if out.combination else None,
        "recommendation_status": _recommendation(feedback),
        "request_name": (request or {}).get("name"),
        "role": (entry or {}).get("role"),
    }


def _build_experiment(
    out: Extracted,
    qlib_named: dict[str, Any],
    qlib_raw: dict[str, Any],
    feedback: dict[str, Any] | None,
    meta: dict[str, Any],
    recomputed: dict[str, Any],
    entry: dict[str, Any] | None,
    request: dict[str, Any] | None,
) -> None:
    candidate = out.candidate
    ws = candidate.experiment_workspace
    task_run = candidate.task_run or {}
    raw_summary = meta.get("experiment_summary.json")
    summary: dict[str, Any] = raw_summary if isinstance(raw_summary, dict) else {}
    metrics = {
        "qlib": qlib_named,
        "qlib_raw": qlib_raw,
        "registry": _registry_metrics(candidate.loop),
        "summary_key_metrics": summary.get("key_metrics") or (summary.get("loop") or {}).get("key_metrics"),
    }
    out.experiment = {
        "id": candidate.experiment_id,
        "task_run_id": candidate.task_run_id,
        "loop_id": candidate.loop_id,
        "workspace_id": ws.workspace_id if ws else None,
        "strategy_id": out.strategy["id"] if out.strategy else None,
        "action": candidate.loop.get("action"),
        "scenario": task_run.get("scenario"),
        "loop_status": candidate.loop.get("status"),
        "workspace_path": ws.raw_path if ws else None,
        "workspace_dir": str(ws.directory) if ws and ws.directory else None,
        "log_trace_path": task_run.get("log_trace_path"),
        "metrics_json": to_json_text(metrics),
        "recomputed_metrics_json": to_json_text(recomputed) if recomputed else None,
        "feedback_json": to_json_text(feedback) if feedback is not None else None,
        "request_name": (request or {}).get("name"),
        "strategy_role": (entry or {}).get("role"),
        "created_at": candidate.loop.get("started_at_utc") or task_run.get("created_at_utc"),
    }


def _collect_files(out: Extracted, *, include_heavy: bool) -> None:
    """Decide, file by file, what level 2 keeps; record the rest as deliberately left out."""
    refs = [(out.candidate.experiment_workspace, "")] + [
        (sub, f"sub/{sub.workspace_id}/") for sub in out.candidate.sub_workspaces
    ]
    for ref, prefix in refs:
        if ref is None or ref.directory is None:
            continue
        for info in out.candidate.listing(ref.directory):  # the fingerprint's walk, not a second one
            keep = info.file_class == "key" or (include_heavy and info.file_class == "heavy")
            rel = prefix + info.rel_path
            if info.file_class == "unreadable":  # the archive cannot hold it: no level 2, no cleanup
                out.errors.append(
                    ItemError(
                        "files",
                        "UnreadableEntry",
                        f"{rel}: {info.reason}",
                        str(ref.directory / info.rel_path),
                    )
                )
            entry: dict[str, Any] = {
                "path": rel,
                "workspace_id": ref.workspace_id,
                "size_bytes": info.size_bytes,
                "class": info.file_class,
                "reason": info.reason,
                "kept": keep,
            }
            if info.link_target is not None:
                entry["link_target"] = info.link_target
            out.file_refs.append(entry)
            if keep:
                out.files.append(FileToStore(rel, ref.directory / info.rel_path, info))


def remap_factor_ids(item: Extracted, mapping: dict[str, str]) -> None:
    """Point a loop's rows at other factor ids (a request's name-only factor → the library's factor)."""
    if not mapping:
        return
    kept: dict[str, dict[str, Any]] = {}
    for factor in item.factors:
        factor["id"] = mapping.get(factor["id"], factor["id"])
        kept.setdefault(factor["id"], factor)
    item.factors = list(kept.values())
    for perf in item.performance:
        if perf["factor_id"] in mapping:
            perf["factor_id"] = mapping[perf["factor_id"]]
            perf["id"] = ids.performance_id(perf["factor_id"], perf["window_name"], perf["experiment_id"])
    if item.combination:
        members = sorted({mapping.get(f, f) for f in json.loads(item.combination["factor_ids"])})
        item.combination["id"] = ids.combination_id(members)
        item.combination["factor_ids"] = to_json_text(members)
        if item.strategy:
            item.strategy["factor_combination_id"] = item.combination["id"]


def validate_request(raw: Any, *, source: str) -> dict[str, Any]:
    """A request as a plain dict after validation by the request model (raises ConfigError)."""
    request = parse_request(raw, source=source)
    return request.model_dump(mode="json")


__all__ = ["Extracted", "FileToStore", "ItemError", "extract_loop", "validate_request", "ConfigError"]
