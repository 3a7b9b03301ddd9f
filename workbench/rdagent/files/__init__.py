"""One reader per RD-Agent file kind; each takes a Path, never writes, raises InputFileError."""

from workbench.rdagent.files.factor_meta import normalise_factor_name, read_factor_meta
from workbench.rdagent.files.factor_perf import FactorPerf, read_factor_perf
from workbench.rdagent.files.feedback import Feedback, read_feedback
from workbench.rdagent.files.jsonfile import expect_object, read_json_file
from workbench.rdagent.files.model_meta import ModelMeta, StrategyMeta, read_model_meta, read_strategy_meta
from workbench.rdagent.files.qlib_res import qlib_metrics_by_name, read_qlib_res
from workbench.rdagent.files.ret_schema import read_ret_schema
from workbench.rdagent.files.returns import read_returns
from workbench.rdagent.files.signals import read_signals
from workbench.rdagent.files.workspace_meta import (
    WorkspaceJson,
    read_experiment_summary,
    read_workspace_manifest,
    read_workspace_meta,
)

__all__ = [
    "FactorPerf",
    "Feedback",
    "ModelMeta",
    "StrategyMeta",
    "WorkspaceJson",
    "expect_object",
    "normalise_factor_name",
    "qlib_metrics_by_name",
    "read_experiment_summary",
    "read_factor_meta",
    "read_factor_perf",
    "read_feedback",
    "read_json_file",
    "read_model_meta",
    "read_qlib_res",
    "read_ret_schema",
    "read_returns",
    "read_signals",
    "read_strategy_meta",
    "read_workspace_manifest",
    "read_workspace_meta",
]
