"""`model_meta.json` (spec §5.7) and `strategy_meta.json` (§5.8): HEAD backfill, no version field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import expect_object, get_int, get_object, get_text, read_json_file
from workbench.rdagent.files.limits import JSON_METADATA

PLACEHOLDER_STRATEGY_FUNC = "get_placeholder_config"


@dataclass(frozen=True, eq=False)
class ModelMeta:
    """Model class and configs; `model_conf`/`dataset_conf` are None when the YAML was a Jinja template.

    `preprocess_config` is almost always the backfill's invented default (spec §5.7).
    """

    model_type: str | None
    model_conf: dict[str, Any] | None
    dataset_conf: dict[str, Any] | None
    feature_schema: Any
    preprocess_config: dict[str, Any] | None
    task_run_id: str | None
    loop_id: int | None
    workspace_id: str | None


@dataclass(frozen=True, eq=False)
class StrategyMeta:
    """Strategy identity; `is_placeholder` when no strategy YAML was found by the backfill."""

    strategy_name: str | None
    impl_module: str | None
    impl_func: str | None
    python_module: str | None
    python_func: str | None
    portfolio_config: dict[str, Any] | None
    is_placeholder: bool


def read_model_meta(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> ModelMeta:
    """Read a model_meta.json."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    if not any(k in data for k in ("model_type", "model_conf", "dataset_conf")):
        raise InputFileError(
            path, "not a model_meta.json: none of model_type/model_conf/dataset_conf present"
        )
    return ModelMeta(
        model_type=get_text(data, "model_type", path),
        model_conf=get_object(data, "model_conf", path),
        dataset_conf=get_object(data, "dataset_conf", path),
        feature_schema=data.get("feature_schema"),
        preprocess_config=get_object(data, "preprocess_config", path),
        task_run_id=get_text(data, "task_run_id", path),
        loop_id=get_int(data, "loop_id", path),
        workspace_id=get_text(data, "workspace_id", path),
    )


def read_strategy_meta(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> StrategyMeta:
    """Read a strategy_meta.json."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    if not any(k in data for k in ("strategy_name", "impl_func", "python_implementation")):
        raise InputFileError(path, "not a strategy_meta.json: none of strategy_name/impl_func present")
    python = get_object(data, "python_implementation", path) or {}
    impl_func = get_text(data, "impl_func", path)
    return StrategyMeta(
        strategy_name=get_text(data, "strategy_name", path),
        impl_module=get_text(data, "impl_module", path),
        impl_func=impl_func,
        python_module=get_text(python, "module", path, where="python_implementation"),
        python_func=get_text(python, "func", path, where="python_implementation"),
        portfolio_config=get_object(data, "portfolio_config", path),
        is_placeholder=impl_func == PLACEHOLDER_STRATEGY_FUNC,
    )
