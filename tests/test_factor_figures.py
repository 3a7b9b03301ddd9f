"""Factor figures that say what they measure: every factor_perf.json variant, the library summary, schema 7.

Performance rows are checked against values written by hand into each variant of spec §5.2; the
backtest dates against the sample's own ret.pkl read with pandas; the library summary against a
catalog whose figures are known; the migration against a schema-6 catalog with old rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pytest

from workbench.archive import ids
from workbench.archive.catalog import migrate, open_catalog, schema_version
from workbench.archive.extract import extract_loop
from workbench.archive.scan import LoopCandidate, WorkspaceRef
from workbench.archive.schema import LATEST_VERSION
from workbench.errors import ConfigError
from workbench.library.factors import factor_library

FACTOR_META = {
    "version": "v1",
    "factors": [
        {"name": "RESI5", "source": "qlib_alpha158", "expression": "Resi($close, 5)/$close"},
        {"name": "KLOW", "source": "qlib_alpha158", "expression": "(Less($open, $close)-$low)/$open"},
        {"name": "('feature', 'NEWF')", "source": "rdagent_generated"},
    ],
}
NAMES = ["RESI5", "KLOW", "('feature', 'NEWF')"]

QLIB = {  # one qlib_res.csv's metrics, as the HEAD backfill copies them into the window
    "IC": 0.047,
    "ICIR": 0.31,
    "Rank IC": 0.05,
    "Rank ICIR": 0.33,
    "1day.excess_return_without_cost.annualized_return": 0.922,
    "1day.excess_return_without_cost.information_ratio": 1.87,
    "1day.excess_return_without_cost.max_drawdown": -0.354,
    "1day.excess_return_with_cost.annualized_return": 0.886,
    "1day.excess_return_with_cost.information_ratio": 1.79,
    "1day.excess_return_with_cost.max_drawdown": -0.361,
}


def _head(metrics: dict[str, Any], *, annual: float, mdd: float, sharpe: float) -> dict[str, Any]:
    first = next(iter(metrics))
    window_metrics = {"": first, "0": metrics[first], **metrics}
    window_metrics |= {"annualized_return": annual, "max_drawdown": mdd, "sharpe": sharpe}
    window_metrics |= {"ic": metrics.get("IC"), "ic_ir": metrics.get("ICIR")}
    window = {
        "name": "main_window",
        "annual_return": annual,
        "max_drawdown": mdd,
        "sharpe": sharpe,
        "metrics": window_metrics,
    }
    return {
        "version": "v1",
        "factors": [],
        "combinations": [{"name": "main", "factor_names": NAMES, "windows": [window]}],
    }


def _gap(first: str, value: float) -> dict[str, Any]:
    window = {
        "name": "main_window",
        "annual_return": None,
        "max_drawdown": None,
        "sharpe": None,
        "metrics": {"Unnamed: 0": first, "0": value},
    }
    return {
        "version": "v1",
        "factors": [],
        "combinations": [{"name": "main", "factor_names": NAMES, "windows": [window]}],
    }


@pytest.fixture()
def workspace(sample_template: Path, tmp_path: Path) -> Path:
    """A copy of one real experiment workspace of the sample (its ret.pkl is the backtest)."""
    root = sample_template / "git_ignore_folder" / "RD-Agent_workspace"
    source = next(
        d for d in sorted(root.iterdir()) if (d / "factor_perf.json").is_file() and (d / "ret.pkl").is_file()
    )
    target = tmp_path / source.name
    shutil.copytree(source, target, symlinks=True)
    (target / "factor_meta.json").write_text(json.dumps(FACTOR_META))
    return target


def _rows(workspace: Path, perf: dict[str, Any] | str) -> dict[str, dict[str, Any]]:
    """The performance rows extract_loop makes of this factor_perf.json, by factor name."""
    text = perf if isinstance(perf, str) else json.dumps(perf)
    (workspace / "factor_perf.json").write_text(text)
    ref = WorkspaceRef(workspace.name, "experiment_workspace", str(workspace), workspace)
    candidate = LoopCandidate(
        "run1", 1, ids.experiment_id("run1", 1), {"action": "model"}, None, ref, has_results_on_disk=True
    )
    out = extract_loop(candidate, request=None, include_heavy=False, with_files=False)
    assert not out.errors, out.errors
    names = {f["id"]: f["name"] for f in out.factors}
    return {names[p["factor_id"]]: p for p in out.performance}


def _backtest(workspace: Path) -> tuple[str, str]:
    frame = pd.read_pickle(workspace / "ret.pkl")
    days = pd.to_datetime(frame.index.get_level_values(0) if frame.index.name != "datetime" else frame.index)
    return str(days.min().date()), str(days.max().date())


def test_head_file_gives_every_member_the_combinations_figures_labelled_as_such(workspace: Path) -> None:
    rows = _rows(workspace, _head(QLIB, annual=0.922, mdd=-0.354, sharpe=1.87))
    start, end = _backtest(workspace)
    assert set(rows) == {"RESI5", "KLOW", "NEWF"}
    for row in rows.values():
        assert row["basis"] == "combination" and row["combination_size"] == 3
        assert (row["ic_mean"], row["ic_ir"], row["rank_ic"], row["rank_ic_ir"]) == (0.047, 0.31, 0.05, 0.33)
        assert (row["annual_return"], row["max_drawdown"], row["sharpe"]) == (0.922, -0.354, 1.87)
        assert row["annual_return_cost"] == row["max_drawdown_cost"] == row["sharpe_cost"] == "without_cost"
        assert row["periods_per_year"] == 238
        assert (row["window_name"], row["start_date"], row["end_date"]) == ("main_window", start, end)
        assert row["dates_from"] == "backtest" and row["coverage"] is None


def test_head_file_with_a_zero_without_cost_return_says_the_figure_is_with_cost(workspace: Path) -> None:
    metrics = {**QLIB, "1day.excess_return_without_cost.annualized_return": 0.0}
    row = _rows(workspace, _head(metrics, annual=0.886, mdd=-0.354, sharpe=1.87))["RESI5"]
    assert (row["annual_return"], row["annual_return_cost"]) == (0.886, "with_cost")
    assert (row["sharpe"], row["sharpe_cost"]) == (1.87, "without_cost")


def test_gap_era_file_whose_only_metric_is_rank_ic_gives_rank_ic(workspace: Path) -> None:
    rows = _rows(workspace, _gap("Rank IC", 0.0034))
    for row in rows.values():
        assert row["rank_ic"] == 0.0034 and row["basis"] == "combination"
        assert row["ic_mean"] is None and row["ic_ir"] is None and row["rank_ic_ir"] is None
        assert row["annual_return"] is None and row["periods_per_year"] is None
    rows = _rows(workspace, _gap("Rank ICIR", 0.026))
    assert {r["rank_ic_ir"] for r in rows.values()} == {0.026}


def test_gap_era_file_whose_only_metric_is_a_return_figure_says_its_cost_and_annualisation(
    workspace: Path,
) -> None:
    row = _rows(workspace, _gap("1day.excess_return_with_cost.information_ratio", -0.18))["KLOW"]
    assert (row["sharpe"], row["sharpe_cost"], row["periods_per_year"]) == (-0.18, "with_cost", 238)
    assert row["annual_return"] is None and row["annual_return_cost"] is None
    row = _rows(workspace, _gap("1day.excess_return_without_cost.annualized_return", 0.5))["KLOW"]
    assert (row["annual_return"], row["annual_return_cost"]) == (0.5, "without_cost")


def test_nan_and_a_window_figure_the_metrics_do_not_confirm(workspace: Path) -> None:
    perf = _head({**QLIB, "ICIR": float("nan")}, annual=0.5, mdd=-0.354, sharpe=1.87)
    text = json.dumps(perf)  # NaN tokens, as Python's json writes them
    assert "NaN" in text
    row = _rows(workspace, text)["RESI5"]
    assert row["ic_ir"] is None and row["ic_mean"] == 0.047  # NaN is no figure
    assert row["annual_return"] == 0.5 and row["annual_return_cost"] is None  # equals neither Qlib figure


def test_per_factor_figures_are_the_factors_own_and_win_over_the_combinations(workspace: Path) -> None:
    perf = _head(QLIB, annual=0.922, mdd=-0.354, sharpe=1.87)
    perf["factors"] = [
        {
            "name": "RESI5",
            "metrics": {"ic_mean": 0.021, "ic_ir": 0.18, "coverage": 0.97, "rank_ic": 0.025},
            "windows": [
                {"name": "test_2021_2025", "start": "2021-01-01", "end": "2025-12-31", "sharpe": 0.9},
                {"name": "main_window", "annual_return": 0.12},
            ],
        },
        {"name": "KLOW", "metrics": {"Rank IC": 0.011}},
    ]
    (workspace / "factor_perf.json").write_text(json.dumps(perf))
    ref = WorkspaceRef(workspace.name, "experiment_workspace", str(workspace), workspace)
    candidate = LoopCandidate(
        "run1", 1, ids.experiment_id("run1", 1), {}, None, ref, has_results_on_disk=True
    )
    out = extract_loop(candidate, request=None, include_heavy=False, with_files=False)
    names = {f["id"]: f["name"] for f in out.factors}
    rows = {(names[p["factor_id"]], p["window_name"]): p for p in out.performance}
    start, end = _backtest(workspace)
    test = rows[("RESI5", "test_2021_2025")]
    assert (test["basis"], test["combination_size"], test["dates_from"]) == ("factor", 1, "file")
    assert (test["start_date"], test["end_date"], test["sharpe"]) == ("2021-01-01", "2025-12-31", 0.9)
    assert (test["ic_mean"], test["ic_ir"], test["rank_ic"], test["coverage"]) == (0.021, 0.18, 0.025, 0.97)
    assert test["sharpe_cost"] is None and test["periods_per_year"] is None  # the file does not say
    main = rows[("RESI5", "main_window")]
    assert (main["basis"], main["annual_return"], main["start_date"], main["end_date"]) == (
        "factor",
        0.12,
        start,
        end,
    )
    klow = rows[("KLOW", "main_window")]
    assert (klow["basis"], klow["rank_ic"], klow["ic_mean"]) == ("factor", 0.011, None)
    newf = rows[("NEWF", "main_window")]  # no figures of its own: the combination's, labelled
    assert (newf["basis"], newf["ic_mean"], newf["combination_size"]) == ("combination", 0.047, 3)


# --------------------------------------------------------------------------- library summary

_FIGURES = [  # factor, basis, experiment, window, ic_ir, sharpe
    ("A", "factor", "e1", "main_window", 0.146, 1.0),
    ("A", "factor", "e2", "main_window", 0.200, 0.5),
    ("A", "factor", "e3", "main_window", 0.606, -0.2),
    ("A", "combination", "e4", "main_window", 0.0669, 2.0),
    ("B", "combination", "e4", "main_window", 0.0669, 2.0),
    ("B", "combination", "e5", "main_window", 0.1, 1.0),
    ("C", "factor", "e6", "main_window", 0.300, 0.1),
    ("C", "factor", None, "test_2021_2025", 0.500, None),
]


@pytest.fixture()
def known_library(tmp_path: Path) -> Path:
    archive = tmp_path / "ar"
    with open_catalog(archive, create=True) as con:
        for name in ("A", "B", "C"):
            con.execute(
                "INSERT INTO aistock_factors (id, name, source) VALUES (?, ?, 'rdagent_generated')",
                [name, name],
            )
        for i, (factor, basis, experiment, window, ic_ir, sharpe) in enumerate(_FIGURES):
            con.execute(
                "INSERT INTO aistock_factor_performance (id, factor_id, window_name, ic_ir, sharpe, basis, "
                "experiment_id, combination_size, sharpe_cost, periods_per_year) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    f"p{i}",
                    factor,
                    window,
                    ic_ir,
                    sharpe,
                    basis,
                    experiment,
                    1 if basis == "factor" else 2,
                    None if sharpe is None else "with_cost" if experiment == "e5" else "without_cost",
                    None if sharpe is None else 252 if experiment == "e5" else 238,
                ],
            )
    return archive


def test_library_summarises_each_factors_own_figures_and_ranks_them_before_combinations(
    known_library: Path,
) -> None:
    frame = factor_library(known_library)
    assert frame["name"].to_list() == ["C", "A", "B"]  # own figures first (C 0.4, A 0.317), then B
    rows = {r["name"]: r for r in frame.iter_rows(named=True)}
    a, b, c = rows["A"], rows["B"], rows["C"]
    assert a["basis"] == "factor" and a["n_experiments_with_figures"] == 3 and a["n_figures"] == 3
    assert a["ic_ir"] == pytest.approx((0.146 + 0.200 + 0.606) / 3)
    assert (a["median_ic_ir"], a["best_ic_ir"], a["worst_ic_ir"]) == (0.200, 0.606, 0.146)
    assert (a["window_name"], a["combination_size"], a["sharpe_cost"], a["periods_per_year"]) == (
        None,  # every window (n_windows of them)
        1,
        "without_cost",
        "238",
    )
    # C: two windows, one figure from an import (no experiment)
    assert c["ic_ir"] == pytest.approx(0.4) and c["n_figures"] == 2 and c["n_experiments_with_figures"] == 1
    assert c["n_windows"] == 2 and (c["best_ic_ir"], c["worst_ic_ir"]) == (0.5, 0.3)
    # B has only a combination's figures: shown as such, ranked after every factor with its own
    assert b["basis"] == "combination" and b["combination_size"] == 2
    assert b["ic_ir"] == pytest.approx((0.0669 + 0.1) / 2) and b["n_experiments_with_figures"] == 2
    assert (b["sharpe_cost"], b["periods_per_year"]) == (
        "with_cost,without_cost",
        "238,252",
    )  # figures differ


def test_library_sorts_by_the_best_value_only_when_asked_by_name(known_library: Path) -> None:
    assert factor_library(known_library)["name"].to_list() == ["C", "A", "B"]
    best = factor_library(known_library, sort_by="best_ic_ir")
    assert best["name"].to_list() == ["A", "C", "B"] and best["best_ic_ir"].to_list() == [0.606, 0.5, 0.1]
    worst = factor_library(known_library, sort_by="worst_ic_ir")
    assert worst["name"].to_list() == ["C", "A", "B"]
    sharpe = factor_library(known_library, sort_by="median_sharpe")
    assert sharpe["median_sharpe"].to_list() == [0.5, 0.1, 1.5] and "best_sharpe" in sharpe.columns
    with pytest.raises(ConfigError, match="sort_by='best'"):
        factor_library(known_library, sort_by="best")


def test_library_basis_and_window_choose_whose_figures_are_summarised(known_library: Path) -> None:
    combos = factor_library(known_library, basis="combination", window="main_window")
    rows = {r["name"]: r for r in combos.iter_rows(named=True)}
    assert set(rows) == {"A", "B"}  # C never was in a combination
    assert rows["A"]["ic_ir"] == pytest.approx(0.0669) and rows["A"]["basis"] == "combination"
    assert rows["A"]["window_name"] == "main_window" and rows["B"]["n_experiments_with_figures"] == 2
    own = factor_library(
        known_library, basis="factor", window="main_window", sort_by="name", descending=False
    )
    assert own["name"].to_list() == ["A", "C"] and own["ic_ir"].to_list()[1] == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="basis='model'"):
        factor_library(known_library, basis="model")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- schema 7 migration


def test_a_schema_6_catalog_gets_the_new_columns_filled_from_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "ar"
    path.mkdir()
    con = duckdb.connect(str(path / "catalog.duckdb"))
    migrate(con, target=6)
    qlib = {
        "rank_ic": 0.05,
        "rank_icir": 0.33,
        "excess_return_without_cost_annualized_return": 0.0,
        "excess_return_with_cost_annualized_return": 0.886,
        "excess_return_without_cost_information_ratio": 1.87,
        "excess_return_with_cost_information_ratio": 1.79,
        "excess_return_without_cost_max_drawdown": -0.354,
    }
    con.execute(
        "INSERT INTO aistock_experiments (id, task_run_id, loop_id, metrics_json) VALUES ('e1', 'run1', 1, ?)",
        [json.dumps({"qlib": qlib})],
    )
    con.execute(
        'INSERT INTO aistock_return_series (experiment_id, datetime, "return") VALUES '
        "('e1', DATE '2024-01-02', 0.01), ('e1', DATE '2024-03-29', 0.0), ('e1', DATE '2024-02-01', -0.01)"
    )
    old = (
        "INSERT INTO aistock_factor_performance (id, factor_id, window_name, start_date, end_date, ic_mean, "
        "annual_return, max_drawdown, sharpe, experiment_id, basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for factor in ("f1", "f2"):
        con.execute(
            old,
            [
                f"p{factor}",
                factor,
                "main_window",
                None,
                None,
                0.047,
                0.886,
                -0.354,
                1.87,
                "e1",
                "combination",
            ],
        )
    con.execute(
        old, ["px", "f3", "test_2021", "2021-01-01", "2021-12-31", 0.02, None, None, 0.9, None, "factor"]
    )
    con.close()

    with open_catalog(path) as upgraded:
        assert schema_version(upgraded) == LATEST_VERSION == 8
        rows = {
            r[0]: r[1:]
            for r in upgraded.execute(
                "SELECT id, start_date, end_date, dates_from, rank_ic, rank_ic_ir, annual_return_cost, "
                "max_drawdown_cost, sharpe_cost, periods_per_year, combination_size "
                "FROM aistock_factor_performance ORDER BY id"
            ).fetchall()
        }
    expected = (
        "2024-01-02",
        "2024-03-29",
        "backtest",
        0.05,
        0.33,
        "with_cost",
        "without_cost",
        "without_cost",
        238,
        2,
    )
    assert rows["pf1"] == rows["pf2"] == expected
    assert rows["px"] == ("2021-01-01", "2021-12-31", "file", None, None, None, None, None, None, 1)


_SCHEMA_7 = (
    "rank_ic",
    "rank_ic_ir",
    "dates_from",
    "annual_return_cost",
    "max_drawdown_cost",
    "sharpe_cost",
    "periods_per_year",
    "combination_size",
)


def test_upgrading_an_archived_sample_gives_the_rows_a_fresh_archive_gives(env: Any) -> None:
    """The backfill of schema 7 on the sample's rows matches what extraction writes today; only a
    rank IC the file lacked (a gap-era file keeps one metric) is filled from the experiment's Qlib metrics."""
    query = (
        "SELECT id, start_date, end_date, "
        + ", ".join(_SCHEMA_7)
        + " FROM aistock_factor_performance ORDER BY id"
    )
    before = env.query(query)
    assert {r[5] for r in before} == {"backtest"} and all(r[1] and r[2] for r in before)
    con = duckdb.connect(str(env.ar / "catalog.duckdb"))
    for column in _SCHEMA_7:
        con.execute(f"ALTER TABLE aistock_factor_performance DROP COLUMN {column}")
    con.execute("UPDATE aistock_factor_performance SET start_date = NULL, end_date = NULL")
    con.execute("ALTER TABLE aistock_experiments DROP COLUMN workspace_bytes")  # schema 8's, added again
    con.execute("UPDATE wb_meta SET value = '6' WHERE key = 'schema_version'")
    con.close()
    with open_catalog(env.ar) as upgraded:
        after = upgraded.execute(query).fetchall()
    assert len(after) == len(before)
    qlib_rank_ic = dict(
        env.query(
            "SELECT p.id, TRY_CAST(json_extract_string(e.metrics_json, '$.qlib.rank_ic') AS DOUBLE) "
            "FROM aistock_factor_performance p JOIN aistock_experiments e ON e.id = p.experiment_id"
        )
    )
    filled = 0
    for old, new in zip(before, after, strict=True):
        for i, column in enumerate(("id", "start_date", "end_date", *_SCHEMA_7)):
            if column in ("rank_ic", "rank_ic_ir") and old[i] is None:
                filled += new[i] is not None
                if column == "rank_ic":
                    assert new[i] == qlib_rank_ic[old[0]]
                continue
            assert new[i] == old[i], (old[0], column)
    assert filled > 0  # the sample's gap-era files keep one metric, seldom the rank IC


def test_an_imported_factor_whose_only_figure_is_rank_ic_has_it_as_its_own(tmp_path: Path) -> None:
    from workbench.library.external_factors import import_factors
    from workbench.library.factors import factor_performance

    meta = tmp_path / "meta.parquet"
    pl.DataFrame(
        {
            "name": ["ext_rank_only", "ext_dated"],
            "expression": ["Rank($close)", "Ref($close, 1)"],
            "window_name": ["test_2024", "test_2024"],
            "start_date": [None, "2024-01-02"],
            "end_date": [None, "2024-12-31"],
            "rank_ic": [0.031, None],
            "rank_ic_ir": [None, 0.42],
        }
    ).write_parquet(meta)
    result = import_factors(meta, archive=tmp_path / "ar", source="external_manual")
    assert result.n_performance == 2
    rows = {r["name"]: r for r in factor_performance(tmp_path / "ar").iter_rows(named=True)}
    only = rows["ext_rank_only"]
    assert (only["rank_ic"], only["ic_mean"], only["basis"], only["combination_size"]) == (
        0.031,
        None,
        "factor",
        1,
    )
    assert only["dates_from"] is None and only["experiment_id"] is None
    dated = rows["ext_dated"]
    assert (dated["rank_ic_ir"], dated["start_date"], dated["dates_from"]) == (0.42, "2024-01-02", "file")
