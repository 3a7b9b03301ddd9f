"""Comparisons of archived strategies (control vs treatments) and the charts that show them.

`workbench.metrics` computes; this package reads the series from the archive, aligns them and
draws them (`charts`, Altair rendered offline). Its public API is `__all__`, each name imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.analysis.compare import Comparison as Comparison
    from workbench.analysis.compare import comparable_task_runs as comparable_task_runs
    from workbench.analysis.compare import compare_task_run as compare_task_run
    from workbench.analysis.compare import resolve_task_run_id as resolve_task_run_id

_EXPORTS = {
    "Comparison": "compare",
    "comparable_task_runs": "compare",
    "compare_task_run": "compare",
    "resolve_task_run_id": "compare",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
