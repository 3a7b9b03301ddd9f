"""The asset pool: factor and strategy libraries, combinations, external imports, experiment requests.

Built on the archive: every function reads or writes the catalog of one archive (`archive=DIR`).
Its public API is `__all__`, each name imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.library.combinations import combination_members as combination_members
    from workbench.library.combinations import save_combination as save_combination
    from workbench.library.external_factors import import_factors as import_factors
    from workbench.library.external_strategies import import_strategy as import_strategy
    from workbench.library.factors import factor_library as factor_library
    from workbench.library.factors import factor_lineage as factor_lineage
    from workbench.library.factors import factor_performance as factor_performance
    from workbench.library.factors import resolve_factor_id as resolve_factor_id
    from workbench.library.factors import resolve_factor_ids as resolve_factor_ids
    from workbench.library.imports import ImportResult as ImportResult
    from workbench.library.requests import attach_request as attach_request
    from workbench.library.requests import export_request as export_request
    from workbench.library.strategies import set_recommendation as set_recommendation
    from workbench.library.strategies import strategy_config as strategy_config
    from workbench.library.strategies import strategy_library as strategy_library

_EXPORTS = {
    "factor_library": "factors",
    "factor_lineage": "factors",
    "factor_performance": "factors",
    "resolve_factor_id": "factors",
    "resolve_factor_ids": "factors",
    "set_recommendation": "strategies",
    "strategy_config": "strategies",
    "strategy_library": "strategies",
    "combination_members": "combinations",
    "save_combination": "combinations",
    "import_factors": "external_factors",
    "import_strategy": "external_strategies",
    "ImportResult": "imports",
    "attach_request": "requests",
    "export_request": "requests",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
