"""Control versus treatments: the comparison, its honest ranking, charts and the widget panel."""

from __future__ import annotations

import json
import math
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from workbench.analysis import charts
from workbench.analysis.compare import comparable_task_runs, compare_task_run
from workbench.archive.pipeline import archive
from workbench.cli import main
from workbench.errors import ConfigError
from workbench.metrics import (
    bootstrap_sharpe_diff_ci,
    deflated_sharpe_ratio,
    holm_adjust,
    probabilistic_sharpe_ratio,
    sharpe_stats,
)
from workbench.widgets.comparison_panel import ComparisonPanel

MULTI = "4279b14dae554dffb4ab18fd0a68e88e"  # the sample's multi-strategy task run (seed 0)
PLAIN = "8f837ef727464f22803d1f83a859890c"  # a regular run without a request; loop 2 has no readable series


@pytest.fixture(scope="module")
def archive_dir(sample_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    shutil.copytree(sample_template, root / "rd", symlinks=True)
    manifest = json.loads((root / "rd" / "sample_manifest.json").read_text(encoding="utf-8"))
    assert MULTI in manifest["multi_strategy_task_runs"]
    archive(root / "rd", archive=root / "ar", mode="full", progress=False)
    return root / "ar"


def _archived_series(archive_dir: Path, task_run_id: str) -> dict[int, pl.DataFrame]:
    """Return series straight from the catalog, by loop (what compare must have used)."""
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        frame = con.sql(
            'SELECT e.loop_id, r.datetime, r."return", r.bench, r.cost, r.turnover FROM aistock_return_series r '
            "JOIN aistock_experiments e ON e.id = r.experiment_id WHERE e.task_run_id = ? ORDER BY e.loop_id, r.datetime",
            params=[task_run_id],
        ).pl()
    finally:
        con.close()
    return {key[0]: group.drop("loop_id") for key, group in frame.group_by("loop_id", maintain_order=True)}


def test_control_and_treatments_side_by_side_with_differences(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, MULTI[:8], n_boot=500)
    table = result.table
    assert result.task_run_id == MULTI and result.request_name == "topk_ab_2026q1"
    assert (result.control, result.control_basis) == ("sota_topk50", "request")
    assert table["role"].to_list() == ["control", "treatment", "treatment", "treatment"]
    assert (result.n_days, result.start, result.end) == (60, "2024-07-01", "2024-09-20")
    control = table.row(0, named=True)
    for row in table.iter_rows(named=True):
        for metric in ("annualized_excess_return", "information_ratio", "max_drawdown", "ic", "turnover"):
            assert row[metric] is not None
            expected = None if row["role"] == "control" else row[metric] - control[metric]
            assert row[f"{metric}_diff"] == pytest.approx(expected)
        assert row["max_drawdown"] <= 0 and 0 <= row["psr"] <= 1 and 0 <= row["dsr"] <= row["psr"]
    curves = result.curves
    assert curves.columns == ["strategy", "datetime", "cum_excess", "drawdown"]
    assert curves.group_by("strategy").len()["len"].to_list() == [60] * 4
    # the curves end where the metrics say: cumulative excess = mean * n, worst drawdown = max_drawdown
    for row in table.iter_rows(named=True):
        own = curves.filter(pl.col("strategy") == row["strategy"])
        assert own["cum_excess"][-1] == pytest.approx(row["annualized_excess_return"] / 252 * 60)
        assert own["drawdown"].min() == pytest.approx(row["max_drawdown"])


def test_psr_and_dsr_equal_the_metric_functions_on_the_archived_series(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, MULTI, n_boot=200)
    series = _archived_series(archive_dir, MULTI)
    assert result.n_trials == len(series) == 4  # every loop of the run with a return series is a trial
    excess = {loop: (f["return"] - f["bench"] - f["cost"]).to_numpy() for loop, f in series.items()}
    annual = [sharpe_stats(x)["sr"] * math.sqrt(252) for x in excess.values()]  # type: ignore[operator]
    assert result.var_trials == pytest.approx(float(np.var(annual, ddof=1)), rel=1e-12)
    for row in result.table.iter_rows(named=True):
        stats = sharpe_stats(excess[row["loop_id"]])
        psr = probabilistic_sharpe_ratio(
            stats["sr"], n=stats["n"], skew=stats["skew"], kurtosis=stats["kurtosis"]
        )  # type: ignore[arg-type]
        dsr = deflated_sharpe_ratio(
            stats["sr"] * math.sqrt(252),
            n=stats["n"],
            skew=stats["skew"],  # type: ignore[operator,arg-type]
            kurtosis=stats["kurtosis"],
            n_trials=4,
            var_trials=result.var_trials,  # type: ignore[arg-type]
            periods_per_year=252,
        )
        assert row["psr"] == pytest.approx(psr, abs=1e-12)
        assert row["dsr"] == pytest.approx(dsr, abs=1e-12)
        assert row["information_ratio"] == pytest.approx(stats["sr"] * math.sqrt(252))  # type: ignore[operator]


def _aligned_excess(treatment: pl.DataFrame, control: pl.DataFrame) -> pl.DataFrame:
    """Excess returns with cost of two reports on their common finite days, computed independently."""
    sides = [
        frame.filter(
            pl.col("return").is_finite() & pl.col("bench").is_finite() & pl.col("cost").is_finite()
        ).select("datetime", (pl.col("return") - pl.col("bench") - pl.col("cost")).alias(label))
        for label, frame in (("treatment", treatment), ("control", control))
    ]
    return sides[0].join(sides[1], on="datetime", how="inner").sort("datetime")


def test_sharpe_difference_intervals_equal_the_paired_bootstrap(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, MULTI, n_boot=700, seed=11, block=3)
    series = _archived_series(archive_dir, MULTI)
    for row in result.table.filter(pl.col("role") == "treatment").iter_rows(named=True):
        aligned = _aligned_excess(series[row["loop_id"]], series[0])
        point, low, high = bootstrap_sharpe_diff_ci(
            aligned["treatment"], aligned["control"], n_boot=700, seed=11, block=3
        )
        assert (row["sharpe_diff"], row["sharpe_diff_low"], row["sharpe_diff_high"]) == pytest.approx(
            (point, low, high), abs=1e-9
        )
        assert row["sharpe_diff"] == pytest.approx(row["information_ratio_diff"])
    same = compare_task_run(archive_dir, MULTI, n_boot=700, seed=11, block=3)
    assert same.table.equals(result.table)  # a seed makes the interval reproducible


def test_compare_json_carries_psr_dsr_and_the_interval_for_every_strategy(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare",
            MULTI,
            "--archive",
            str(archive_dir),
            "--json",
            "--n-boot",
            "300",
            "--save-chart",
            str(tmp_path / "chart.svg"),
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["control_basis"] == "request" and data["n_trials"] == 4
    assert data["trials_basis"].startswith("N = 4: every loop row the archive keeps of the search")
    assert data["trials"]["n_effective"] <= data["trials"]["n"] == 4
    assert data["window"] == {"start": "2024-07-01", "end": "2024-09-20", "n_days": 60}
    assert data["bootstrap"]["method"] == "stationary" and data["bootstrap"]["block_basis"].startswith(
        "Politis"
    )
    assert [a["strategy"] for a in data["alignment"]] == [s["strategy"] for s in data["strategies"]]
    assert data["warnings"] == [] and data["max_dropped_share"] == 0.1
    for entry in data["strategies"]:
        assert {"psr", "dsr", "dsr_effective", "sharpe_diff_ci", "information_ratio_own", "dsr_own"} <= set(
            entry
        )
        if entry["role"] == "control":
            assert entry["sharpe_diff_ci"] is None and entry["sharpe_diff_p_holm"] is None
        else:
            low, high = entry["sharpe_diff_ci"]
            assert low < high
            low, high = entry["sharpe_diff_ci_studentized"]
            assert low < entry["sharpe_diff"] < high
            assert entry["sharpe_diff_p_value"] <= entry["sharpe_diff_p_holm"] <= 1
    assert (tmp_path / "chart.svg").read_text(encoding="utf-8").lstrip().startswith("<svg")
    code = main(["compare", PLAIN, "--archive", str(archive_dir), "--n-boot", "100", "--without-cost"])
    text = capsys.readouterr().out
    assert code == 0 and "first loop" in text and "without cost" in text and "skipped:" in text


def test_without_a_request_the_first_loop_is_the_control(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, PLAIN, n_boot=200)
    assert result.control_basis == "first_loop" and result.request_name is None
    assert result.table["loop_id"].to_list() == [0, 1]
    assert [s["loop_id"] for s in result.skipped] == [2]
    # loop 2 (failed at level 1, no usable series) and loop 3 (no results) were trials too
    assert result.n_trials == 4
    json.dumps(result.to_dict(curves=True))


def test_choosing_strategies_and_the_control(archive_dir: Path) -> None:
    subset = compare_task_run(archive_dir, MULTI, strategies=["alt_factors"], n_boot=200)
    assert subset.table["strategy"].to_list() == ["sota_topk50", "alt_factors"]  # the control is always kept
    assert subset.n_trials == 4  # the trials are the whole run, not the chosen few
    by_loop = compare_task_run(archive_dir, MULTI, strategies=[2], control="topk30", n_boot=200)
    assert by_loop.control_basis == "chosen" and by_loop.table["strategy"].to_list() == [
        "topk30",
        "topk50_riskcap",
    ]
    gross = compare_task_run(archive_dir, MULTI, with_cost=False, n_boot=200)
    net = compare_task_run(archive_dir, MULTI, n_boot=200)
    assert (gross.table["annualized_excess_return"] > net.table["annualized_excess_return"]).all()
    with pytest.raises(ConfigError, match="matches no strategy.*available: sota_topk50"):
        compare_task_run(archive_dir, MULTI, strategies=["nope"])
    with pytest.raises(ConfigError, match="unknown task run"):
        compare_task_run(archive_dir, "ffffffffffff")


def test_comparable_task_runs_put_requests_first(archive_dir: Path) -> None:
    runs = comparable_task_runs(archive_dir)
    assert runs["task_run_id"][0] == MULTI and runs["control"][0] == "sota_topk50"
    assert (runs["n_with_series"] >= 1).all() and (runs["n_with_series"] <= runs["n_loops"]).all()


# --------------------------------------------------------------------------- charts


def _many_curves(n_strategies: int, n_days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(0)
    dates = [date(2015, 1, 1) + timedelta(days=i) for i in range(n_days)]
    frames = []
    for i in range(n_strategies):
        cum = np.cumsum(rng.normal(0.0002, 0.01, n_days))
        frames.append(
            pl.DataFrame(
                {
                    "strategy": f"s{i:02d}",
                    "datetime": dates,
                    "cum_excess": cum,
                    "drawdown": cum - np.maximum.accumulate(cum),
                }
            )
        )
    table = pl.DataFrame(
        {
            "strategy": [f"s{i:02d}" for i in range(n_strategies)],
            "role": ["control"] + ["treatment"] * (n_strategies - 1),
            "sharpe_diff": [None] + [0.1] * (n_strategies - 1),
            "sharpe_diff_low": [None] + [-0.4] * (n_strategies - 1),
            "sharpe_diff_high": [None] + [0.6] * (n_strategies - 1),
            "psr": [0.5] * n_strategies,
            "dsr": [0.3] * n_strategies,
        }
    )
    return pl.concat(frames), table


def test_fifty_strategies_over_ten_years_chart_offline_to_svg_and_png(tmp_path: Path) -> None:
    curves, table = _many_curves(50, 2520)
    chart = charts.comparison_chart(curves, table, control="s00")
    spec = chart.to_dict()  # would raise Altair's MaxRowsError above 5,000 rows
    datasets = spec["datasets"]
    assert all(len(rows) <= charts.MAX_ROWS for rows in datasets.values())
    rows = datasets[spec["hconcat"][0]["data"]["name"]]
    assert {r["strategy"] for r in rows} == {f"s{i:02d}" for i in range(50)}
    assert max(r["datetime"] for r in rows) == "2021-11-24"  # each strategy's last day is kept
    svg = charts.save(chart, tmp_path / "c.svg").read_bytes()
    png = charts.save(chart, tmp_path / "c.png").read_bytes()
    assert svg.lstrip().startswith(b"<svg") and png.startswith(b"\x89PNG")


def test_a_comparison_chart_renders(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, MULTI, n_boot=200)
    svg = charts.render(result.chart()).decode("utf-8")
    assert "sota_topk50" in svg and "Sharpe ratio versus the control" in svg


# --------------------------------------------------------------------------- widget


def test_the_comparison_panel_follows_the_pickers(archive_dir: Path) -> None:
    panel = ComparisonPanel(archive_dir, n_boot=200)
    assert panel.task_run.value == MULTI
    assert panel.strategies.options == ("sota_topk50", "topk30", "topk50_riskcap", "alt_factors")
    assert panel.comparison is not None and panel.comparison.table.height == 4
    assert "topk50_riskcap" in panel.table_view.value
    (shown,) = panel.chart_view.children  # an interactive chart widget (tooltips, zoom), offline
    assert type(shown).__name__ == "FittedChart" and panel.chart is not None
    assert '"width": "container"' in json.dumps(shown.spec)  # as wide as the notebook
    assert "topk50_riskcap" in json.dumps(shown.spec) and shown._is_offline

    panel.select_strategies(["topk30"])
    assert panel.table()["strategy"].to_list() == ["sota_topk50", "topk30"]
    assert "alt_factors" not in panel.table_view.value

    panel.with_cost.value = False
    assert panel.comparison.with_cost is False and panel.table().height == 2

    panel.select_task_run(PLAIN[:8])
    assert panel.task_run.value == PLAIN and len(panel.strategies.options) == 2
    assert panel.table().height == 2 and "skipped" in panel.table_view.value
    assert "first_loop" in panel.table_view.value

    with pytest.raises(ConfigError):
        panel.select_task_run("not-a-run")


def _colours(panel: ComparisonPanel) -> dict[str, str]:
    """strategy → the colour its line is drawn in, read from the panel's chart specification."""
    from workbench.analysis import charts

    assert panel.comparison is not None
    spec = charts.comparison_chart(
        panel.comparison.curves,
        panel.comparison.table,
        control=panel.comparison.control,
        domain=panel._domain,
        stacked=True,
    ).to_dict()
    scale = spec["vconcat"][0]["vconcat"][0]["encoding"]["color"]["scale"]
    palette = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6"]
    assert scale["scheme"] == "tableau10"
    return {name: palette[i] for i, name in enumerate(scale["domain"])}


def test_a_strategy_keeps_its_colour_and_the_control_shows_as_selected(archive_dir: Path) -> None:
    from workbench.analysis import charts

    panel = ComparisonPanel(archive_dir, n_boot=100)
    everything = _colours(panel)
    panel.select_strategies(["alt_factors"])  # the control is compared too: the picker says so
    assert set(panel.strategies.value) == {"sota_topk50", "alt_factors"}
    assert _colours(panel) == everything  # same domain, same order: same colour for each strategy
    spec = charts.comparison_chart(
        panel.comparison.curves, panel.comparison.table, domain=panel._domain, stacked=True
    ).to_dict()
    legend = spec["vconcat"][0]["vconcat"][0]["encoding"]["color"]["legend"]
    assert legend["orient"] == "top"  # above the chart: in view at any window width


# --------------------------------------------------------------------------- user mistakes: one-line errors, documented exit codes


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_save_chart_refuses_an_unsupported_suffix_before_comparing(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        [
            "compare",
            MULTI,
            "--archive",
            str(archive_dir),
            "--n-boot",
            "50",
            "--save-chart",
            str(tmp_path / "c.gif"),
        ],
        capsys,
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "'.gif'" in err and ".svg, .png, .json" in err
    assert not (tmp_path / "c.gif").exists()
    with pytest.raises(ConfigError, match=r"\.svg, \.png, \.json"):
        charts.save(compare_task_run(archive_dir, MULTI, n_boot=50).chart(), tmp_path / "c.pdf")


def test_save_chart_creates_missing_folders_and_writes_atomically(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "deeper" / "c.svg"
    code, out, _ = _cli(
        ["compare", MULTI, "--archive", str(archive_dir), "--n-boot", "50", "--save-chart", str(target)],
        capsys,
    )
    assert code == 0 and f"chart written to {target}" in out
    assert target.read_text(encoding="utf-8").lstrip().startswith("<svg")
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.svg"]  # no temporary file left behind
    spec = charts.save(compare_task_run(archive_dir, MULTI, n_boot=50).chart(), tmp_path / "more" / "c.json")
    assert json.loads(spec.read_text(encoding="utf-8"))["$schema"].startswith("https://vega.github.io/")


def test_save_chart_to_an_unwritable_place_is_a_one_line_error(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    code, _, err = _cli(
        [
            "compare",
            MULTI,
            "--archive",
            str(archive_dir),
            "--n-boot",
            "50",
            "--save-chart",
            str(blocker / "c.svg"),
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "cannot write the chart" in err and "is a file, not a folder" in err
    assert blocker.read_text(encoding="utf-8") == "not a folder"
    (tmp_path / "folder.svg").mkdir()
    code, _, err = _cli(
        ["compare", MULTI, "--archive", str(archive_dir), "--save-chart", str(tmp_path / "folder.svg")],
        capsys,
    )
    assert code == 2 and "is a folder" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--n-boot", "0"], "n_boot (--n-boot) must be a whole number of at least 1, got 0"),
        (["--n-boot", "-5"], "n_boot"),
        (["--seed", "-1"], "seed (--seed) must be a whole number of at least 0, got -1"),
    ],
)
def test_impossible_bootstrap_settings_are_refused(
    archive_dir: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code, out, err = _cli(["compare", MULTI, "--archive", str(archive_dir), *options], capsys)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_compare_mistakes_name_the_problem_with_the_documented_exit_code(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["compare", "no-such-run", "--archive", str(archive_dir)], 2, "unknown task run 'no-such-run'"),
        (["compare", "", "--archive", str(archive_dir)], 2, "task run id is empty"),
        (
            ["compare", MULTI, "--archive", str(archive_dir), "--strategy", "nope"],
            2,
            "available: sota_topk50",
        ),
        (["compare", MULTI, "--archive", str(archive_dir), "--control", "nope"], 2, "control 'nope'"),
        (["compare", MULTI, "--archive", str(tmp_path / "missing")], 5, "no archive at"),
    ]
    for argv, expected, message in cases:
        code, _, err = _cli(argv, capsys)
        assert (code, err.count("\n")) == (expected, 1), (argv, err)
        assert message in err, (argv, err)
    with pytest.raises(ConfigError, match="alpha"):
        compare_task_run(archive_dir, MULTI, alpha=1.5)


def test_frames_in_a_notebook_show_qlib_expressions_as_written() -> None:
    """JupyterLab typesets $…$ in HTML outputs as LaTeX; the frame's HTML is marked for MathJax to skip."""
    from IPython.core.interactiveshell import InteractiveShell

    from workbench.widgets import frame_html, setup_notebook

    frame = pl.DataFrame({"expression": ["Corr($close, Log($volume+1), 20)", "$open / $close - 1"]})
    shell = InteractiveShell.instance()
    try:
        setup_notebook()
        shown, _ = shell.display_formatter.format(frame)
    finally:
        InteractiveShell.clear_instance()
    html = shown["text/html"]
    assert html == frame_html(frame)
    assert (
        html.startswith('<div class="mathjax_ignore tex2jax_ignore">')
        and "Corr($close, Log($volume+1), 20)" in html
    )
    assert shown["text/plain"] == repr(frame)  # the text form is polars' own


def test_interactive_charts_load_nothing_from_the_network() -> None:
    """Notebook charts are JupyterChart widgets whose JavaScript is vl-convert's bundle, not a CDN."""
    import altair as alt

    from workbench.widgets.display import enable_interactive_charts, interactive_chart

    enable_interactive_charts()
    try:
        chart = alt.Chart(pl.DataFrame({"x": [1, 2], "y": [3.0, 4.0]})).mark_line().encode(x="x:Q", y="y:Q")
        widget = interactive_chart(chart)
        assert alt.renderers.active == "workbench"
        source = str(widget._esm)
        assert "vega" in source and "ResizeObserver" in source  # drawn once the output has a width
        assert not any(cdn in source for cdn in ("esm.sh", "jsdelivr", "unpkg", "https://cdn"))
        bundle, _metadata = alt.renderers.get()(chart.to_dict())
        assert "application/vnd.jupyter.widget-view+json" in bundle
    finally:
        alt.renderers.enable("svg")


def test_charts_fit_the_notebook_width_where_vega_lite_can() -> None:
    import altair as alt

    from workbench.widgets.display import fit_to_container

    line = alt.Chart(pl.DataFrame({"x": [1, 2], "y": [3.0, 4.0]})).mark_line().encode(x="x:Q", y="y:Q")
    single = fit_to_container(line.properties(width=300).to_dict())
    assert single["width"] == "container" and single["autosize"]["type"] == "fit-x"
    stacked = fit_to_container(alt.vconcat(alt.vconcat(line, line + line), line).to_dict())
    inner = stacked["vconcat"][0]["vconcat"]
    assert [v["width"] for v in (*inner, stacked["vconcat"][1])] == ["container"] * 3
    assert all("width" not in layer for layer in inner[1]["layer"])
    side_by_side = alt.hconcat(line.properties(width=300), line.properties(width=300)).to_dict()
    assert fit_to_container(side_by_side) == side_by_side  # Vega-Lite cannot fit these: fixed widths


# --------------------------------------------------------------------------- trials from the whole search

DUPLICATE = (
    "2026-01-14_01-22-24-878352"  # the sample's bootstrap duplicate: loops 0-2 duplicate, 3 without results
)


def _qlib_ir(archive_dir: Path, task_run_id: str, loop_id: int) -> float:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT json_extract_string(metrics_json, '$.qlib.excess_return_with_cost_information_ratio') "
            "FROM aistock_experiments WHERE task_run_id = ? AND loop_id = ?",
            [task_run_id, loop_id],
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return float(row[0])


def test_trials_count_failed_and_result_less_loops_and_use_level_1_sharpe_ratios(archive_dir: Path) -> None:
    """PLAIN: loops 0 and 1 archived with series, loop 2 failed at level 1 (Qlib figures only), loop 3 no results."""
    result = compare_task_run(archive_dir, PLAIN, n_boot=100)
    trials = result.trials
    assert trials is not None
    assert (trials.n, trials.n_loops) == (4, 4)
    assert trials.by_state == {"archived": 2, "failed": 1, "no_results": 1}
    assert trials.sharpe_sources == {"qlib_metrics": 1, "series_common_window": 2, "unknown": 1}
    series = _archived_series(archive_dir, PLAIN)
    by_hand = [
        sharpe_stats((f["return"] - f["bench"] - f["cost"]).to_numpy())["sr"] * math.sqrt(252)  # type: ignore[operator]
        for f in series.values()
    ]
    by_hand.append(_qlib_ir(archive_dir, PLAIN, 2) * math.sqrt(252 / 238))  # Qlib annualises with 238 days
    assert result.var_trials == pytest.approx(float(np.var(by_hand, ddof=1)), rel=1e-12)
    assert trials.window == {"start": result.start, "end": result.end}
    assert "failed and result-less loops included" in trials.source


def test_the_search_spans_named_task_runs_and_counts_a_duplicate_loop_once(archive_dir: Path) -> None:
    wider = compare_task_run(archive_dir, PLAIN, n_boot=100, search=[MULTI[:8], DUPLICATE])
    trials = wider.trials
    assert trials is not None and trials.task_runs == (PLAIN, MULTI, DUPLICATE)
    # 4 loops of PLAIN + 4 of MULTI + loop 3 of the duplicate run; its 3 duplicate rows are not new trials
    assert (trials.n, trials.n_duplicates) == (9, 3) and "2 named by --search" in trials.source
    assert trials.n_sharpe_known == 7 and wider.n_trials == 9
    row = wider.table.row(0, named=True)
    stats = sharpe_stats(
        (lambda f: (f["return"] - f["bench"] - f["cost"]).to_numpy())(_archived_series(archive_dir, PLAIN)[0])
    )
    assert row["dsr"] == pytest.approx(
        deflated_sharpe_ratio(
            stats["sr"] * math.sqrt(252),  # type: ignore[operator]
            n=stats["n"],  # type: ignore[arg-type]
            skew=stats["skew"],  # type: ignore[arg-type]
            kurtosis=stats["kurtosis"],  # type: ignore[arg-type]
            n_trials=9,
            var_trials=wider.var_trials,
            periods_per_year=252,
        ),
        abs=1e-12,
    )
    with pytest.raises(ConfigError, match="search task run 'nothing-like-this'"):
        compare_task_run(archive_dir, PLAIN, search=["nothing-like-this"])


def test_task_runs_of_the_same_request_are_one_search(archive_dir: Path, tmp_path: Path) -> None:
    from workbench.library.requests import attach_request, export_request

    copy = tmp_path / "ar"
    shutil.copytree(archive_dir, copy)
    con = duckdb.connect(str(copy / "catalog.duckdb"), read_only=True)
    try:
        factor = con.execute("SELECT min(id) FROM aistock_factors").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    request = export_request(
        copy,
        out=tmp_path / "again.yaml",
        factor_ids=[factor],
        strategy_ids=["sota_topk50"],
        name="topk_ab_2026q1",
    )
    attach_request(copy, PLAIN, request)  # the same request run again in another task run
    result = compare_task_run(copy, MULTI, n_boot=100)
    assert result.trials is not None and result.trials.task_runs == (MULTI, PLAIN)
    assert result.n_trials == 8 and "1 more with request 'topk_ab_2026q1'" in result.trials.source


def test_n_trials_override_and_the_effective_number_of_trials(
    archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["compare", MULTI, "--archive", str(archive_dir), "--json", "--n-boot", "100", "--n-trials", "50"]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["n_trials"] == 50 and data["trials"]["source"].startswith("given (--n-trials)")
    rho = data["trials"]["mean_correlation"]
    assert data["trials"]["n_effective"] == pytest.approx(rho + (1 - rho) * 50)
    series = _archived_series(archive_dir, MULTI)
    excess = np.stack([(f["return"] - f["bench"] - f["cost"]).to_numpy() for f in series.values()])
    corr = np.corrcoef(excess)
    assert rho == pytest.approx(corr[np.triu_indices(4, 1)].mean(), rel=1e-9)
    for entry in data["strategies"]:
        assert entry["dsr_effective"] >= entry["dsr"]  # fewer independent trials deflate less
    code, _, err = _cli(["compare", MULTI, "--archive", str(archive_dir), "--n-trials", "0"], capsys)
    assert code == 2 and "n_trials (--n-trials) must be a whole number of at least 1" in err


# --------------------------------------------------------------------------- alignment in the open


@pytest.fixture(scope="module")
def ragged_archive(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MULTI with topk30 starting 10 days late, alt_factors missing 3 days and a NaN bench in the control."""
    copy = tmp_path_factory.mktemp("ragged") / "ar"
    shutil.copytree(archive_dir, copy)
    con = duckdb.connect(str(copy / "catalog.duckdb"))
    try:
        ids = dict(
            con.execute(
                "SELECT loop_id, id FROM aistock_experiments WHERE task_run_id = ?", [MULTI]
            ).fetchall()
        )
        dates = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT datetime FROM aistock_return_series WHERE experiment_id = ? ORDER BY 1",
                [ids[0]],
            ).fetchall()
        ]
        con.execute(
            "DELETE FROM aistock_return_series WHERE experiment_id = ? AND datetime < ?", [ids[1], dates[10]]
        )
        con.execute(
            "DELETE FROM aistock_return_series WHERE experiment_id = ? AND list_contains(?, datetime)",
            [ids[3], dates[20:23]],
        )
        con.execute(
            "UPDATE aistock_return_series SET bench = 'NaN'::DOUBLE WHERE experiment_id = ? AND datetime = ?",
            [ids[0], dates[30]],
        )
    finally:
        con.close()
    return copy


def test_alignment_says_what_it_drops_from_each_strategy_and_why(ragged_archive: Path) -> None:
    result = compare_task_run(ragged_archive, MULTI, n_boot=100)
    assert result.n_days == 46  # 60 − 10 late − 3 missing − 1 non-finite
    report = {a.strategy: a for a in result.alignment}
    control = report["sota_topk50"]
    assert (control.own_days, control.aligned_days, control.late_start, control.missing_days) == (
        59,
        46,
        10,
        3,
    )
    assert (control.early_end, control.non_finite) == (0, 1)
    assert control.dropped_share == pytest.approx(13 / 59)
    assert any("topk30 start(s) then" in c for c in control.causes)
    assert any("alt_factors (3)" in c for c in control.causes)
    late = report["topk30"]
    assert (late.own_days, late.late_start, late.missing_days) == (50, 0, 4)
    gappy = report["alt_factors"]
    assert (gappy.own_days, gappy.late_start, gappy.missing_days) == (57, 10, 1)
    # topk30 loses 4 of its 50 days (8%): under the 10% threshold, the others are over it
    assert [w.split("'s ")[0].split(" of ")[1] for w in result.warnings] == [
        "sota_topk50",
        "topk50_riskcap",
        "alt_factors",
    ]
    assert "22%" in result.warnings[0]
    assert compare_task_run(ragged_archive, MULTI, n_boot=50, max_dropped_share=0.25).warnings == ()
    # the headline on its own full series stands beside the aligned one
    series = _archived_series(ragged_archive, MULTI)
    own = series[0].filter(pl.col("bench").is_finite())
    excess = (own["return"] - own["bench"] - own["cost"]).to_numpy()
    row = result.table.row(0, named=True)
    assert row["n_days_own"] == 59 and row["n_days"] == 46
    assert row["information_ratio_own"] == pytest.approx(excess.mean() / excess.std(ddof=1) * math.sqrt(252))
    assert row["information_ratio_own"] != pytest.approx(row["information_ratio"])
    text = result.format()
    assert "WARNING: alignment drops 13 of sota_topk50's 59 days" in text and "late start 10" in text
    # curves run over each strategy's own days; the chart shades the common window
    assert result.curves.group_by("strategy").len().sort("strategy")["len"].to_list() == [57, 59, 50, 60]
    assert "common window" in json.dumps(result.chart().to_dict())


# --------------------------------------------------------------------------- intervals: options and Holm


def test_bootstrap_options_reach_the_interval_and_holm_adjusts_across_treatments(
    archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", MULTI, "--archive", str(archive_dir), "--json", "--n-boot", "400", "--seed", "3"]
    code = main([*argv, "--method", "circular", "--block", "5", "--alpha", "0.1"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {k: data["bootstrap"][k] for k in ("method", "block", "alpha")} == {
        "method": "circular",
        "block": 5.0,
        "alpha": 0.1,
    }
    series = _archived_series(archive_dir, MULTI)
    treatments = [e for e in data["strategies"] if e["role"] == "treatment"]
    for entry in treatments:
        aligned = _aligned_excess(series[entry["loop_id"]], series[0])
        expected = bootstrap_sharpe_diff_ci(
            aligned["treatment"],
            aligned["control"],
            n_boot=400,
            seed=3,
            method="circular",
            block=5,
            alpha=0.1,
        )
        assert [entry["sharpe_diff"], *entry["sharpe_diff_ci"]] == pytest.approx(list(expected), abs=1e-9)
    assert [e["sharpe_diff_p_holm"] for e in treatments] == pytest.approx(
        holm_adjust([e["sharpe_diff_p_value"] for e in treatments])
    )
    code, out, err = _cli([*argv, "--method", "moving"], capsys)
    assert code == 2 and out == "" and "method (--method) must be one of stationary, circular" in err
    code, out, err = _cli([*argv, "--block", "0.5"], capsys)
    assert code == 2 and "block (--block) must be a number of days, at least 1" in err


def test_the_panel_shows_the_new_figures_and_what_alignment_dropped(ragged_archive: Path) -> None:
    panel = ComparisonPanel(ragged_archive, task_run_id=MULTI[:8], n_boot=100)
    shown = panel.table_view.value
    for label in ("DSR eff. N", "stud. low", "p (Holm)", "IR own series", "effective"):
        assert label in shown
    assert "warning: alignment drops 13 of sota_topk50" in shown and "late start 10" in shown
    assert "trials: N = 4" in shown
    assert "common window" in json.dumps(panel.chart.to_dict())
    panel.select_strategies(["topk30"])  # the control is still added back, colours still fixed
    assert panel.table()["strategy"].to_list() == ["sota_topk50", "topk30"]


def test_the_sharpe_chart_states_its_level_and_draws_the_studentized_interval(archive_dir: Path) -> None:
    result = compare_task_run(archive_dir, MULTI, n_boot=100, alpha=0.1)
    spec = json.dumps(result.chart().to_dict())
    assert "90% CI; grey: studentized" in spec and "sharpe_diff_studentized_high" in spec


def test_the_cli_warns_on_alignment_and_counts_the_searched_task_runs(
    ragged_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", MULTI, "--archive", str(ragged_archive), "--n-boot", "50"]
    code, out, _ = _cli(argv, capsys)
    assert code == 0 and "WARNING: alignment drops 13 of sota_topk50's 59 days (22% > 10%)" in out
    code, out, _ = _cli([*argv, "--json", "--max-dropped-share", "0.25", "--search", PLAIN[:8]], capsys)
    data = json.loads(out)
    assert code == 0 and data["warnings"] == [] and data["max_dropped_share"] == 0.25
    assert data["n_trials"] == 8 and data["trials"]["task_runs"] == [MULTI, PLAIN]


def test_factor_windows_chart_orders_factors_by_median_not_best() -> None:
    from workbench.analysis import charts

    performance = pl.DataFrame(
        {
            "name": ["lucky"] * 5 + ["steady"] * 3,
            "window_name": ["w"] * 8,
            "basis": ["factor"] * 8,
            # lucky: one great result among poor ones (best 0.9, median 0.1); steady: median 0.4
            "ic_ir": [0.9, 0.1, 0.05, 0.1, 0.0, 0.4, 0.4, 0.35],
        }
    )
    spec = charts.factor_windows_chart(performance).to_dict()
    assert spec["encoding"]["y"]["sort"] == ["steady", "lucky"]
