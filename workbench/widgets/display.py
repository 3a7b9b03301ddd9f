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

import functools
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


RENDERER = "workbench"


def enable_interactive_charts() -> None:
    """Display Altair charts as widgets (JavaScript bundled by vl-convert: offline), as wide as the
    notebook where Vega-Lite allows."""
    alt.renderers.register(RENDERER, _render_fitted)
    alt.renderers.enable(RENDERER)


def _render_fitted(spec: dict[str, Any], **_metadata: Any) -> Any:
    chart = alt.Chart.from_dict(fit_to_container(spec))
    return FittedChart(chart, embed_options=EMBED_OPTIONS)._repr_mimebundle_()


def interactive_chart(chart: alt.TopLevelMixin) -> Any:
    """A widget showing `chart` with tooltips, zoom and pan, as wide as the notebook, its JavaScript
    bundled offline. Charts that cannot follow the width (side by side) keep their own widths."""
    fitted = fit_to_container(chart.to_dict())
    return FittedChart(cast("alt.TopLevelSpec", alt.Chart.from_dict(fitted)), embed_options=EMBED_OPTIONS)


def fit_to_container(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` (a Vega-Lite dict) drawn as wide as its output: single, layered and vertically stacked
    charts take the container's width (Vega-Lite cannot do this for side-by-side charts, which keep
    theirs). Saved SVG/PNG files keep the fixed widths of charts.py."""
    spec = dict(spec)
    if "vconcat" in spec:
        spec["vconcat"] = [_container_wide(view) for view in spec["vconcat"]]
    elif "mark" in spec or "layer" in spec:
        spec = _container_wide(spec)
    else:
        return spec
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    return spec


def _container_wide(view: dict[str, Any]) -> dict[str, Any]:
    if "vconcat" in view:  # a stack inside the stack (curves above drawdowns, then differences)
        return {**view, "vconcat": [_container_wide(inner) for inner in view["vconcat"]]}
    if "mark" not in view and "layer" not in view:
        return view  # side-by-side charts or facets: left as drawn
    view = {**view, "width": "container"}
    if "layer" in view:
        view["layer"] = [{k: v for k, v in layer.items() if k != "width"} for layer in view["layer"]]
    return view


# Altair's widget embeds the chart as soon as it is created, before JupyterLab attaches it to the
# page, where a "container" width measures 0 and stays 0. This version embeds once the output has a
# width, and again whenever that width changes (the file browser opened or closed, the window resized).
_FIRST_EMBED = "    await reembed();\n}"
_EMBED_WHEN_SIZED = """    el.style.display = "block";  // vega-embed's own style shrinks the output to the chart's width
    el.style.width = "100%";
    let width = 0;
    const observer = new ResizeObserver(() => {
        const now = el.clientWidth;
        if (now > 0 && Math.abs(now - width) > 4) { width = now; reembed(); }
    });
    observer.observe(el);
    return () => observer.disconnect();
}"""


class FittedChart(alt.JupyterChart):
    """Altair's JupyterChart (offline) that draws at its output's width; see `fit_to_container`."""

    _is_offline = True  # its JavaScript is always vl-convert's bundle

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        type(self)._esm = _fitted_esm()
        super().__init__(chart, **kwargs)


@functools.cache
def _fitted_esm() -> str:
    import vl_convert as vlc
    from altair.jupyter.jupyter_chart import load_js_src
    from altair.utils._importers import vl_version_for_vl_convert

    lines = load_js_src().split("\n")
    body = "\n".join(line for line in lines if not line.startswith("import "))
    if _FIRST_EMBED not in body:  # another Altair: its own widget, charts at their fixed widths
        alt.JupyterChart.enable_offline()
        return str(alt.JupyterChart._esm)
    body = body.replace(_FIRST_EMBED, _EMBED_WHEN_SIZED, 1)
    return str(vlc.javascript_bundle(body, vl_version=vl_version_for_vl_convert()))


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency; a bare interpreter still works
        return None
    return get_ipython()
