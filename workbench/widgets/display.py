"""How archive frames and charts show in a notebook: set up once per notebook by `setup_notebook()`.

JupyterLab typesets ``$…$`` in HTML outputs as LaTeX, which turns a Qlib expression such as
``Corr($close, Log($volume+1), 20)`` into italic maths with the ``$`` signs gone. Polars frames
are therefore shown inside an element MathJax ignores (``tex2jax_ignore``, the class pandas uses
for the same purpose), so every expression reads exactly as stored.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from workbench.analysis import charts

MATHJAX_IGNORE = "tex2jax_ignore"


def frame_html(frame: pl.DataFrame) -> str:
    """Polars' own HTML table of `frame`, wrapped so that JupyterLab never typesets it as LaTeX."""
    return f'<div class="{MATHJAX_IGNORE}">{frame._repr_html_()}</div>'


def setup_notebook(*, columns: int = 16, text_width: int = 60) -> None:
    """Charts render offline (SVG by vl-convert); frames show literal text, up to `columns` columns
    and `text_width` characters per value. Safe to call more than once and outside IPython."""
    charts.enable_offline_rendering()
    pl.Config.set_tbl_cols(columns)
    pl.Config.set_fmt_str_lengths(text_width)
    shell = _ipython()
    if shell is not None:
        html = shell.display_formatter.formatters["text/html"]
        html.for_type(pl.DataFrame, frame_html)


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency; a bare interpreter still works
        return None
    return get_ipython()
