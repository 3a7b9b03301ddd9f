"""ipywidgets panels for notebooks, thin over the layers below: strategy comparison and cleanup review.

The cleanup panel only reads a stored plan and writes an approval; it never deletes. Its public API is `__all__`, each name imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.widgets.cleanup_panel import CleanupPanel as CleanupPanel
    from workbench.widgets.cleanup_panel import exclusions_frame as exclusions_frame
    from workbench.widgets.cleanup_panel import items_frame as items_frame
    from workbench.widgets.comparison_panel import ComparisonPanel as ComparisonPanel
    from workbench.widgets.display import frame_html as frame_html
    from workbench.widgets.display import setup_notebook as setup_notebook
    from workbench.widgets.report import export_html as export_html

_EXPORTS = {
    "ComparisonPanel": "comparison_panel",
    "CleanupPanel": "cleanup_panel",
    "exclusions_frame": "cleanup_panel",
    "items_frame": "cleanup_panel",
    "frame_html": "display",
    "export_html": "report",
    "setup_notebook": "display",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
