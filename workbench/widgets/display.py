"""How archive frames and charts show in a notebook: set up once per notebook by `setup_notebook()`.

Charts are interactive (tooltips, zoom and pan) and offline: Altair's JupyterChart widget with the
Vega libraries bundled by vl-convert, so nothing is fetched from a CDN. Outside a notebook, and
for saved files, charts are rendered to SVG or PNG by vl-convert (`workbench.analysis.charts`).

JupyterLab typesets ``$…$`` in HTML outputs as LaTeX, which turns a Qlib expression such as
``Corr($close, Log($volume+1), 20)`` into italic maths with the ``$`` signs gone. Polars frames
are therefore shown inside an element MathJax ignores, so every expression reads exactly as
stored: ``mathjax_ignore`` is MathJax 3's class (JupyterLab 4), ``tex2jax_ignore`` MathJax 2's
(classic Notebook, nbconvert's HTML). The browser tests check that nothing is typeset.
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import polars as pl

from workbench.analysis import charts

MATHJAX_IGNORE = "mathjax_ignore tex2jax_ignore"
# SVG rather than canvas: crisp at any zoom, text selectable, each mark an element of the page. The
# chart menu keeps "save as SVG/PNG" (done in the browser) and drops "open in the Vega editor" (a
# web site) and the source views.
EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}


def frame_html(frame: pl.DataFrame) -> str:
    """Polars' own HTML table of `frame`, wrapped so that JupyterLab never typesets it as LaTeX."""
    return f'<div class="{MATHJAX_IGNORE}">{frame._repr_html_()}</div>'


def setup_notebook(*, columns: int = 16, text_width: int = 60, interactive: bool = True) -> None:
    """Charts interactive and offline (or static SVG with `interactive=False`); frames show literal
    text, up to `columns` columns and `text_width` characters per value. Safe to call more than once
    and outside IPython."""
    if interactive:
        enable_interactive_charts()
    else:
        charts.enable_offline_rendering()
    pl.Config.set_tbl_cols(columns)
    pl.Config.set_fmt_str_lengths(text_width)
    pl.Config.set_thousands_separator(",")  # bytes and row counts read at a glance: 1,234,567
    shell = _ipython()
    if shell is not None:
        html = shell.display_formatter.formatters["text/html"]
        html.for_type(pl.DataFrame, frame_html)


def enable_interactive_charts() -> None:
    """Display Altair charts as JupyterChart widgets whose JavaScript comes from vl-convert (offline)."""
    alt.JupyterChart.enable_offline()
    alt.renderers.enable("jupyter", offline=True, embed_options=EMBED_OPTIONS)


def interactive_chart(chart: alt.TopLevelMixin) -> Any:
    """A widget showing `chart` with tooltips, zoom and pan, its JavaScript bundled offline.

    Charts keep the widths charts.py gives them, chosen to fit beside JupyterLab's file browser on
    a 1,500-pixel screen (the browser tests check it): Vega-Lite's "container" width measures 0
    inside the JupyterChart widget, so charts cannot follow the notebook's width there.
    """
    alt.JupyterChart.enable_offline()
    return alt.JupyterChart(cast("alt.TopLevelSpec", chart), embed_options=EMBED_OPTIONS)


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency; a bare interpreter still works
        return None
    return get_ipython()
