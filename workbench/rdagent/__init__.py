"""Reading an RD-Agent installation, never writing it: the registry, paths, one reader per file kind
(`files`), the registry's timestamps and the experiment request model (RD-Agent's own format).

Everything here treats its input as untrusted (`files/reading.py`) and raises `InputFileError`,
`RegistryError` or `ConfigError`. Its public API is `__all__`, each name imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.rdagent.installation import Installation as Installation
    from workbench.rdagent.paths import PathResolver as PathResolver
    from workbench.rdagent.paths import normalise_path_key as normalise_path_key
    from workbench.rdagent.paths import parse_path_map as parse_path_map
    from workbench.rdagent.registry import RegistrySnapshot as RegistrySnapshot
    from workbench.rdagent.registry import read_loops_changed_since as read_loops_changed_since
    from workbench.rdagent.registry import read_registry as read_registry
    from workbench.rdagent.registry import registry_max_cursor as registry_max_cursor
    from workbench.rdagent.request import ExperimentRequest as ExperimentRequest
    from workbench.rdagent.request import StrategyConfig as StrategyConfig
    from workbench.rdagent.request import load_request as load_request
    from workbench.rdagent.request import load_strategy_config as load_strategy_config
    from workbench.rdagent.request import parse_request as parse_request
    from workbench.rdagent.request import request_to_rdagent_json as request_to_rdagent_json
    from workbench.rdagent.times import loop_timestamp as loop_timestamp
    from workbench.rdagent.times import parse_time as parse_time

_EXPORTS = {
    "Installation": "installation",
    "RegistrySnapshot": "registry",
    "read_loops_changed_since": "registry",
    "read_registry": "registry",
    "registry_max_cursor": "registry",
    "PathResolver": "paths",
    "normalise_path_key": "paths",
    "parse_path_map": "paths",
    "ExperimentRequest": "request",
    "StrategyConfig": "request",
    "load_request": "request",
    "load_strategy_config": "request",
    "parse_request": "request",
    "request_to_rdagent_json": "request",
    "loop_timestamp": "times",
    "parse_time": "times",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
