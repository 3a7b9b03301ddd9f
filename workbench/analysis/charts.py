"""Altair charts, rendered and exported without any network access.

Charts are specifications built from Polars frames; `render` turns one into SVG (or PNG) with
vl-convert, which bundles Vega, so nothing is fetched from a CDN. Long series are thinned before
they reach a chart (`thin_series`), so a chart never trips Altair's 5,000-row limit.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import altair as alt
import polars as pl

from workbench.errors import ConfigError

MAX_ROWS = 5000


def enable_offline_rendering() -> None:
    """Make notebooks display charts as inline SVG rendered locally by vl-convert."""
    alt.renderers.enable("svg")


def render(chart: alt.TopLevelMixin, *, fmt: Literal["svg", "png"] = "svg", scale: float = 1.0) -> bytes:
    """The chart as SVG text bytes or PNG bytes."""
    import vl_convert as vlc

    spec = chart.to_json()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    return vlc.vegalite_to_png(spec, scale=scale)


CHART_FORMATS: tuple[str, ...] = (".svg", ".png", ".json")
"""File suffixes :func:`save` can write."""


def check_chart_path(path: Path | str) -> Path:
    """The path as a Path if its suffix is a chart format :func:`save` writes; else a ConfigError listing them.

    Why: a command can check ``--save-chart`` before spending time on the comparison.
    """
    path = Path(path)
    if path.suffix.lower() not in CHART_FORMATS:
        raise ConfigError(
            f"{path}: cannot save a chart as {path.suffix or '(no suffix)'!r}; "
            f"use a file name ending in {', '.join(CHART_FORMATS)}"
        )
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name ending in {', '.join(CHART_FORMATS)}")
    return path


def save(chart: alt.TopLevelMixin, path: Path | str) -> Path:
    """Export by suffix (.svg, .png, .json) without network access; returns the path written.

    Missing parent folders are created and the file is written atomically (a temporary file in
    the same folder, then renamed), so an interrupted export never leaves half a chart. An
    unsupported suffix, or a path that cannot be written, is a :class:`ConfigError` naming it.
    """
    path = check_chart_path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = chart.to_json().encode("utf-8")
    else:
        payload = render(chart, fmt="png" if suffix == ".png" else "svg")  # check_chart_path: .svg or .png
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(payload)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise ConfigError(
            f"{path}: cannot write the chart: {_os_reason(exc, own=(path, temp))}; "
            "choose a writable file path"
        ) from exc
    return path


def _os_reason(exc: OSError, *, own: tuple[Path, ...] = ()) -> str:
    """Why a write failed, in words (a parent that is a file is the common surprise).

    ``own`` are the paths the message already names (the target, its temporary file): not repeated.
    """
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return f"{exc.filename or 'a parent'} is a file, not a folder"
    reason = exc.strerror or type(exc).__name__
    named = exc.filename is not None and str(exc.filename) not in {str(p) for p in own}
    return f"{reason} ({exc.filename})" if named else reason


def thin_series(
    frame: pl.DataFrame, *, by: str, date: str = "datetime", max_rows: int = MAX_ROWS
) -> pl.DataFrame:
    """Keep every k-th date per group (and each group's last date) so the frame has ≤ max_rows rows."""
    if frame.height <= max_rows:
        return frame
    groups = max(frame[by].n_unique(), 1)
    per_group = max(max_rows // groups, 2)
    return (
        frame.sort(by, date)
        .with_columns(pl.int_range(pl.len()).over(by).alias("_i"), pl.len().over(by).alias("_n"))
        .filter((pl.col("_i") % ((pl.col("_n") // per_group) + 1) == 0) | (pl.col("_i") == pl.col("_n") - 1))
        .drop("_i", "_n")
    )


def _inline_data(rows: list[dict[str, Any]]) -> alt.Data:
    """Rows embedded in the spec as `{"values": [...]}` (not as a named dataset)."""
    return alt.Data(values=rows)  # type: ignore[no-untyped-call]  # altair's generated wrapper is unannotated


def archive_levels_chart(by_task_run: pl.DataFrame) -> alt.Chart:
    """Experiments per task run, stacked by archiving level."""
    long = by_task_run.select(
        pl.col("task_run_id").str.slice(0, 12).alias("task_run"),
        pl.col("level1").alias("level 1"),
        pl.col("level2").alias("level 2"),
        (pl.col("experiments") - pl.col("level1") - pl.col("level2")).alias("level 0"),
    ).unpivot(index="task_run", variable_name="level", value_name="experiments")
    return cast(
        "alt.Chart",  # altair's mark_* methods are typed through a decorator that mypy reads as Any
        alt.Chart(_inline_data(long.to_dicts()))
        .mark_bar()
        .encode(
            x=alt.X("task_run:N", title="task run"),
            y=alt.Y("experiments:Q", title="experiments"),
            color=alt.Color("level:N", title="archiving level"),
            tooltip=["task_run:N", "level:N", "experiments:Q"],
        )
        .properties(title="Experiments by archiving level and task run", width=420, height=220),
    )


def archive_bytes_chart(storage: dict[str, int]) -> alt.Chart:
    """Bytes stored in the archive versus bytes of kept files versus bytes in the workspaces."""
    rows = [
        {"what": "workspaces (all files)", "bytes": storage.get("workspace_bytes", 0)},
        {"what": "kept key files", "bytes": storage.get("original_bytes", 0)},
        {"what": "stored in archive", "bytes": storage.get("stored_bytes", 0)},
    ]
    return cast(
        "alt.Chart",  # altair's mark_* methods are typed through a decorator that mypy reads as Any
        alt.Chart(_inline_data(rows))
        .mark_bar()
        .encode(
            y=alt.Y("what:N", sort=None, title=None),
            x=alt.X("bytes:Q", title="bytes"),
            tooltip=["what:N", "bytes:Q"],
        )
        .properties(title="Bytes stored versus bytes in workspaces", width=420, height=120),
    )


# --------------------------------------------------------------------------- strategy comparison


def _strategy_color(
    n_strategies: int, domain: Sequence[str] | None = None, shown: Sequence[str] | None = None
) -> alt.Color:
    """Distinct colours for up to 20 strategies, listed above the chart so the legend is always in view.

    With `domain` (every strategy of the task run, in a fixed order) a strategy keeps its colour
    whichever strategies are shown, and the legend lists only the `shown` ones; without it colours
    follow the order of appearance.
    """
    n_colours = len(domain) if domain else n_strategies
    scale = alt.Scale(scheme="tableau20" if n_colours > 10 else "tableau10")
    if domain:
        scale = alt.Scale(domain=list(domain), scheme="tableau20" if n_colours > 10 else "tableau10")
    return alt.Color(
        "strategy:N",
        sort=None,
        scale=scale,
        legend=alt.Legend(
            title="strategy",
            symbolLimit=0,
            orient="top",
            columns=4,
            labelLimit=200,
            values=list(shown) if domain and shown is not None else alt.Undefined,
        ),
    )


def comparison_curves_chart(
    curves: pl.DataFrame,
    *,
    control: str | None = None,
    max_rows: int = MAX_ROWS,
    width: int = 560,
    domain: Sequence[str] | None = None,
    window: tuple[str, str] | None = None,
) -> alt.VConcatChart:
    """Cumulative excess return above drawdown, one line per strategy, the control drawn thicker.

    `curves` is long (`strategy, datetime, cum_excess, drawdown`); it is thinned per strategy to
    at most `max_rows` points (50 strategies over 10 years stay below Altair's 5,000-row limit),
    and both panels share one copy of the data. `window` (first and last ISO date) is shaded on
    both panels: the common days the comparison's figures are computed on.
    """
    # A frame (not inline values) becomes one top-level dataset that Altair does not validate row by
    # row, which keeps building the specification fast; thinning keeps it under MAX_ROWS.
    data = thin_series(curves, by="strategy", max_rows=max_rows).with_columns(
        pl.col("datetime").cast(pl.String)
    )
    n_strategies = max(curves["strategy"].n_unique(), 1)
    size = (
        alt.condition(alt.datum.strategy == control, alt.value(3.0), alt.value(1.2))
        if control
        else alt.value(1.5)
    )
    tooltip = [
        "strategy:N",
        alt.Tooltip("datetime:T"),
        alt.Tooltip("cum_excess:Q", format=".2%"),
        alt.Tooltip("drawdown:Q", format=".2%"),
    ]
    base = (
        alt.Chart()
        .mark_line()
        .encode(
            x=alt.X("datetime:T", title=None),
            color=_strategy_color(
                n_strategies, domain, curves["strategy"].unique(maintain_order=True).to_list()
            ),
            size=size,
            tooltip=tooltip,
        )
    )
    cumulative = (
        base.encode(
            y=alt.Y("cum_excess:Q", title="cumulative excess return", axis=alt.Axis(format="%"))
        ).interactive(bind_y=False)  # zoom and pan along time in a notebook; static files ignore it
    ).properties(
        width=width,
        height=220,
        title="Cumulative excess return" + (f" (control: {control})" if control else ""),
    )
    drawdown = base.encode(y=alt.Y("drawdown:Q", title="drawdown", axis=alt.Axis(format="%"))).properties(
        width=width, height=130, title="Drawdown of cumulative excess return"
    )
    if window is not None:
        cumulative = _with_window(cumulative, window, label=True)
        drawdown = _with_window(drawdown, window, label=False)
    return alt.vconcat(cumulative, drawdown, data=data)


def _with_window(chart: alt.Chart, window: tuple[str, str], *, label: bool) -> alt.LayerChart:
    """The chart over a grey band from window[0] to window[1] (the common window), labelled once."""
    band_data = _inline_data([{"start": window[0], "end": window[1], "label": "common window"}])
    band = (
        alt.Chart(band_data)
        .mark_rect(opacity=0.12, color="#888888")
        .encode(x="start:T", x2="end:T", tooltip=[alt.Tooltip("start:T"), alt.Tooltip("end:T")])
    )
    layers: list[Any] = [band, chart]
    if label:
        layers.append(
            alt.Chart(band_data)
            .mark_text(align="left", baseline="top", dx=3, dy=3, color="#666666")
            .encode(x="start:T", y=alt.value(0), text="label:N")
        )
    title = chart.title
    return alt.LayerChart(layer=layers).properties(title=title)


def sharpe_diff_chart(table: pl.DataFrame, *, width: int = 300, level: float = 0.95) -> alt.LayerChart:
    """Each treatment's Sharpe ratio minus the control's with its bootstrap intervals; 0 = no difference.

    The thick bar is the percentile interval, the thin one under it the studentized interval (when
    the table has one); the dot is green or red when the percentile interval excludes 0.
    """
    studentized = ("sharpe_diff_studentized_low", "sharpe_diff_studentized_high", "sharpe_diff_p_holm")
    extra = [c for c in studentized if c in table.columns]
    rows = table.filter((pl.col("role") == "treatment") & pl.col("sharpe_diff").is_not_null()).select(
        "strategy", "sharpe_diff", "sharpe_diff_low", "sharpe_diff_high", "psr", "dsr", *extra
    )
    data = rows
    y = alt.Y("strategy:N", sort=None, title=None)
    intervals = (
        alt.Chart(data)
        .mark_rule(strokeWidth=2)
        .encode(
            y=y,
            x=alt.X(
                "sharpe_diff_low:Q",
                title=f"Sharpe ratio − control's ({level:.0%} CI; grey: studentized)"
                if len(extra) >= 2
                else f"Sharpe ratio − control's ({level:.0%} CI)",
            ),
            x2="sharpe_diff_high:Q",
        )
    )
    tooltip = [
        "strategy:N",
        alt.Tooltip("sharpe_diff:Q", format="+.2f"),
        alt.Tooltip("sharpe_diff_low:Q", format="+.2f"),
        alt.Tooltip("sharpe_diff_high:Q", format="+.2f"),
        *(alt.Tooltip(f"{c}:Q", format=".3f" if c.endswith("holm") else "+.2f") for c in extra),
        alt.Tooltip("psr:Q", format=".2f"),
        alt.Tooltip("dsr:Q", format=".2f"),
    ]
    points = (
        alt.Chart(data)
        .mark_point(filled=True, size=60)
        .encode(
            y=y,
            x="sharpe_diff:Q",
            color=alt.when(alt.datum.sharpe_diff_low > 0)
            .then(alt.value("#2ca02c"))
            .when(alt.datum.sharpe_diff_high < 0)
            .then(alt.value("#d62728"))
            .otherwise(alt.value("#555555")),
            tooltip=tooltip,
        )
    )
    zero = alt.Chart(pl.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="#888888").encode(x="x:Q")
    layers: list[Any] = [intervals, points, zero]
    if len(extra) >= 2:
        layers.insert(
            1,
            alt.Chart(data)
            .mark_rule(strokeWidth=1, color="#888888", yOffset=6)
            .encode(y=y, x="sharpe_diff_studentized_low:Q", x2="sharpe_diff_studentized_high:Q"),
        )
    # LayerChart rather than alt.layer(), which is typed as possibly a FacetChart (only with facet encodings)
    return alt.LayerChart(layer=layers).properties(
        width=width, height=max(60, 18 * rows.height), title="Sharpe ratio versus the control"
    )


def comparison_chart(
    curves: pl.DataFrame,
    table: pl.DataFrame,
    *,
    control: str | None = None,
    domain: Sequence[str] | None = None,
    stacked: bool = False,
    width: int = 560,
    window: tuple[str, str] | None = None,
    level: float = 0.95,
) -> alt.TopLevelMixin:
    """The comparison at a glance: curves, and the Sharpe differences when there are treatments.

    Side by side by default; `stacked` puts the differences under the curves (about `width` + 100
    pixels wide in all), which fits a notebook next to JupyterLab's file browser. `domain` fixes
    each strategy's colour (see `_strategy_color`); `window` shades the common window.
    """
    left = comparison_curves_chart(curves, control=control, domain=domain, width=width, window=window)
    if table.filter(pl.col("role") == "treatment").height == 0:
        return left
    if stacked:
        return alt.vconcat(left, sharpe_diff_chart(table, width=width, level=level))
    return alt.hconcat(left, sharpe_diff_chart(table, level=level))


# --------------------------------------------------------------------------- factor library


def factor_windows_chart(performance: pl.DataFrame, *, metric: str = "ic_ir", width: int = 420) -> alt.Chart:
    """A factor's result in each window (one dot per window and experiment), factors by their median
    value (not their best: a factor tried often would otherwise rank by its luckiest result).

    `performance` is :func:`workbench.library.factors.factor_performance` output (or a subset);
    the shape tells a factor's own figures from those of a combination it was part of.
    """
    rows = (
        performance.filter(pl.col(metric).is_not_null())
        .select("name", "window_name", "basis", metric)
        .head(MAX_ROWS)
    )
    order = rows.group_by("name").agg(pl.col(metric).median()).sort(metric, descending=True)["name"].to_list()
    return cast(
        "alt.Chart",  # altair's mark_* methods are typed through a decorator that mypy reads as Any
        alt.Chart(rows)
        .mark_point(filled=True, size=60)
        .encode(
            x=alt.X(f"{metric}:Q", title=metric),
            y=alt.Y("name:N", sort=order, title=None),
            color=alt.Color("window_name:N", title="window"),
            shape=alt.Shape("basis:N", title="basis"),
            tooltip=["name:N", "window_name:N", "basis:N", alt.Tooltip(f"{metric}:Q", format=".3f")],
        )
        .properties(width=width, height=max(80, 16 * len(order)), title=f"{metric} by window"),
    )


def information_ratio_distribution_chart(distribution: pl.DataFrame, *, width: int = 520) -> alt.LayerChart:
    """Box per task run and month from ``lake.questions.information_ratio_distribution``: whiskers
    from minimum to maximum, box from the 25th to the 75th percentile, tick at the median."""
    rows = distribution.with_columns(
        (pl.col("month") + " " + pl.col("task_run_id").str.slice(0, 8)).alias("run"),
    ).select("run", "month", "n_experiments", "min", "q25", "median", "q75", "max", "mean")
    base = alt.Chart(_inline_data(rows.to_dicts())).encode(
        x=alt.X("run:N", title="month and task run", sort=None),
        tooltip=["run:N", "n_experiments:Q", "min:Q", "q25:Q", "median:Q", "q75:Q", "max:Q", "mean:Q"],
    )
    whiskers = base.mark_rule().encode(y=alt.Y("min:Q", title="information ratio"), y2="max:Q")
    boxes = base.mark_bar(size=14).encode(y="q25:Q", y2="q75:Q", color=alt.Color("month:N", title="month"))
    medians = base.mark_tick(color="black", size=14).encode(y="median:Q")
    return cast(
        "alt.LayerChart",
        alt.layer(whiskers, boxes, medians).properties(
            title="Information ratios per task run and month", width=width, height=240
        ),
    )


def correlation_heatmap(correlations: pl.DataFrame, *, labels: dict[str, str] | None = None) -> alt.Chart:
    """Pairwise correlations of daily excess returns (``a``, ``b``, ``correlation``) as a heat map."""
    names = labels or {}
    rows = correlations.with_columns(
        pl.col("a").replace_strict(names, default=pl.col("a").str.slice(0, 8)).alias("a"),
        pl.col("b").replace_strict(names, default=pl.col("b").str.slice(0, 8)).alias("b"),
    )
    return cast(
        "alt.Chart",
        alt.Chart(_inline_data(rows.to_dicts()))
        .mark_rect()
        .encode(
            x=alt.X("a:N", title=None, sort=None, axis=alt.Axis(labels=rows.height <= 900)),
            y=alt.Y("b:N", title=None, sort=None, axis=alt.Axis(labels=rows.height <= 900)),
            color=alt.Color("correlation:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True)),
            tooltip=["a:N", "b:N", alt.Tooltip("correlation:Q", format=".2f"), "days:Q"],
        )
        .properties(title="Correlation of daily excess returns", width=420, height=420),
    )
