"""Altair charts, rendered and exported without any network access.

Charts are specifications built from Polars frames; `render` turns one into SVG (or PNG) with
vl-convert, which bundles Vega, so nothing is fetched from a CDN. Long series are thinned before
they reach a chart (`thin_series`), so a chart never trips Altair's 5,000-row limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import altair as alt
import polars as pl

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


def save(chart: alt.TopLevelMixin, path: Path | str) -> Path:
    """Export by suffix (.svg, .png, .json) without network access."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(chart.to_json(), encoding="utf-8")
    elif suffix in (".svg", ".png"):
        path.write_bytes(render(chart, fmt=suffix[1:]))  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown chart format {suffix!r}; use .svg, .png or .json")
    return path


def thin_series(frame: pl.DataFrame, *, by: str, date: str = "datetime", max_rows: int = MAX_ROWS) -> pl.DataFrame:
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


def archive_levels_chart(by_task_run: pl.DataFrame) -> alt.Chart:
    """Experiments per task run, stacked by archiving level."""
    long = by_task_run.select(
        pl.col("task_run_id").str.slice(0, 12).alias("task_run"),
        pl.col("level1").alias("level 1"),
        pl.col("level2").alias("level 2"),
        (pl.col("experiments") - pl.col("level1") - pl.col("level2")).alias("level 0"),
    ).unpivot(index="task_run", variable_name="level", value_name="experiments")
    return (
        alt.Chart(alt.Data(values=long.to_dicts()))
        .mark_bar()
        .encode(
            x=alt.X("task_run:N", title="task run"),
            y=alt.Y("experiments:Q", title="experiments"),
            color=alt.Color("level:N", title="archiving level"),
            tooltip=["task_run:N", "level:N", "experiments:Q"],
        )
        .properties(title="Experiments by archiving level and task run", width=420, height=220)
    )


def archive_bytes_chart(storage: dict[str, int]) -> alt.Chart:
    """Bytes stored in the archive versus bytes of kept files versus bytes in the workspaces."""
    rows = [
        {"what": "workspaces (all files)", "bytes": storage.get("workspace_bytes", 0)},
        {"what": "kept key files", "bytes": storage.get("original_bytes", 0)},
        {"what": "stored in archive", "bytes": storage.get("stored_bytes", 0)},
    ]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(y=alt.Y("what:N", sort=None, title=None), x=alt.X("bytes:Q", title="bytes"), tooltip=["what:N", "bytes:Q"])
        .properties(title="Bytes stored versus bytes in workspaces", width=420, height=120)
    )
