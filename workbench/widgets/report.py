"""HTML copies of executed notebooks (the scheduled archive runs' reports) that open offline.

nbconvert's HTML template loads MathJax, RequireJS and the widget renderer from CDNs; a report of
an archive run must open on a machine with no network, so those are left out. The archive
notebooks draw their charts as inline SVG, so the copy shows them as they were.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from workbench.errors import ConfigError, InputFileError

#: nbconvert settings that would point the page at a CDN, emptied
_NO_CDN = {
    name: ""
    for name in (
        "mathjax_url",
        "require_js_url",
        "widget_renderer_url",
        "jquery_url",
        "mermaid_js_url",
        "mermaid_layout_elk_js_url",
    )
}


#: the template's script that loads a widget renderer from unpkg when the page opens
_WIDGET_LOADER = re.compile(
    r"<script>\s*\(function\(\) \{\s*function addWidgetsRenderer\(\).*?\}\(\)\);\s*</script>", re.S
)


def export_html(notebook: Path | str, out: Path | str | None = None) -> Path:
    """Write an HTML copy of an executed notebook next to it (or to `out`); returns its path."""
    from nbconvert import HTMLExporter  # imported here: only reports need it

    source = Path(notebook)
    if not source.is_file():
        raise InputFileError(source, "no such notebook", hint="give the executed .ipynb papermill wrote")
    target = Path(out) if out is not None else source.with_suffix(".html")
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; give a file name such as {source.stem}.html")
    exporter = HTMLExporter(embed_images=True, **_NO_CDN)  # type: ignore[no-untyped-call]  # traitlets config class
    try:
        body, _resources = exporter.from_filename(str(source))
    except Exception as exc:  # nbformat/nbconvert raise many kinds for a broken file
        raise InputFileError(source, f"not a readable notebook ({type(exc).__name__}: {exc})") from exc
    body = body.replace('<script src=""></script>', "")
    body = _WIDGET_LOADER.sub("", body)  # it would fetch a widget renderer from unpkg; the copy is static
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    temp.write_text(body, encoding="utf-8")
    os.replace(temp, target)
    return target
