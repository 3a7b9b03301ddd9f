"""The team notebook and its daft questions: on a published lake, locally and on a local Ray instance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import polars as pl
import pytest
from cleanup_helpers import Env

from workbench.lake import publish
from workbench.lake.questions import (
    best_by_deflated_sharpe,
    information_ratio_distribution,
    recent_top_experiments,
    return_moments,
    top_return_correlations,
    use_daft_runner,
)
from workbench.library import strategy_library
from workbench.metrics import excess_returns, sharpe_stats, usable_rows

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture()
def lake(env: Env) -> Path:
    out = env.tmp / "lake"
    publish(env.ar, out)
    use_daft_runner(None)
    return out


def test_the_team_notebook_runs_under_papermill_on_a_published_lake(lake: Path, tmp_path: Path) -> None:
    output = tmp_path / "team_lake_run.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "team_lake.ipynb"),
        str(output),
        parameters={"lake": str(lake), "top_n": 5},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = nbformat.read(output, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(outputs)
    assert "daft runs on: native" in text
    assert "5 experiments" in text
    assert (
        "FittedChart" in text or "application/vnd.vegalite" in text
    )  # the charts, as the other notebooks show them


def test_return_moments_are_those_of_the_metrics_module(lake: Path, env: Env) -> None:
    import duckdb

    con = duckdb.connect(str(env.ar / "catalog.duckdb"), read_only=True)
    try:
        series = con.sql(
            'SELECT experiment_id, datetime, "return", bench, cost FROM aistock_return_series'
        ).pl()
    finally:
        con.close()
    moments = return_moments(lake)
    assert moments.height == series["experiment_id"].n_unique() > 0
    for row in moments.iter_rows(named=True):
        rows = series.filter((pl.col("experiment_id") == row["experiment_id"]) & usable_rows())
        expected = sharpe_stats(excess_returns(rows))
        assert row["n"] == expected["n"]
        for key in ("sr", "skew", "kurtosis"):
            assert math.isclose(row[key], expected[key], rel_tol=1e-6, abs_tol=1e-9), key  # type: ignore[arg-type]


def test_questions_answer_from_the_lake(lake: Path, env: Env) -> None:
    distribution = information_ratio_distribution(lake)
    library = strategy_library(env.ar).drop_nulls("information_ratio")
    assert distribution["n_experiments"].sum() == library.height
    best = best_by_deflated_sharpe(lake, limit=3)
    assert best.height == 3 and best["dsr"].is_sorted(descending=True)
    assert ((best["dsr"] >= 0) & (best["dsr"] <= 1)).all()
    top, series = recent_top_experiments(lake, n=4, days=3650)
    assert (
        top["information_ratio"].to_list() == sorted(library["information_ratio"].to_list(), reverse=True)[:4]
    )
    with_series = set(series["experiment_id"].unique().to_list())
    assert with_series <= set(top["experiment_id"].to_list())  # a level-1 experiment has Qlib's IR, no series
    assert len(with_series) >= 2
    correlations = top_return_correlations(series)
    diagonal = correlations.filter(pl.col("a") == pl.col("b"))
    assert diagonal.height == len(with_series) and np.allclose(diagonal["correlation"].to_numpy(), 1.0)


RAY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from workbench.lake.questions import (
        best_by_deflated_sharpe, information_ratio_distribution, recent_top_experiments, use_daft_runner,
    )

    lake = sys.argv[1]
    context = ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        assert use_daft_runner(context.address_info["address"]) == "ray"
        top, series = recent_top_experiments(lake, n=4, days=3650)
        out = {
            "distribution": information_ratio_distribution(lake).drop("q25", "median", "q75").to_dicts(),
            "best": best_by_deflated_sharpe(lake, limit=3)["experiment_id"].to_list(),
            "top": top["experiment_id"].to_list(),
            "series_rows": series.height,
            "ray_nodes": len(ray.nodes()),
        }
    finally:
        ray.shutdown()
    print("RESULT" + json.dumps(out, default=str))
    """
)


@pytest.mark.slow
def test_the_daft_questions_run_on_a_local_ray_instance(lake: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RAY_SCRIPT, str(lake)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    on_ray = json.loads(line[len("RESULT") :])
    assert on_ray["ray_nodes"] == 1
    top, series = recent_top_experiments(lake, n=4, days=3650)
    assert on_ray["top"] == top["experiment_id"].to_list()
    assert on_ray["series_rows"] == series.height
    assert on_ray["best"] == best_by_deflated_sharpe(lake, limit=3)["experiment_id"].to_list()
    local = information_ratio_distribution(lake).drop("q25", "median", "q75")
    remote = pl.DataFrame(on_ray["distribution"], schema=local.schema).sort("month", "task_run_id")
    assert remote.select("task_run_id", "month", "n_experiments").equals(
        local.select("task_run_id", "month", "n_experiments")
    )
    assert np.allclose(remote["mean"].to_numpy(), local["mean"].to_numpy())
