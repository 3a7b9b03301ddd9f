"""JSON metadata files of the sample installation, in every shape the spec lists (§5).

Each builder returns a plain dict; `dump_json` writes it the way RD-Agent does
(`ensure_ascii=False`, `indent=2`, `default=str`, NaN allowed).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

from workbench.rdagent.files.model_meta import PLACEHOLDER_STRATEGY_FUNC
from workbench.sample.plan import JsonObject, LoopPlan, RunPlan
from workbench.sample.templates import ALPHA158_SUBSET

_CATEGORY_CN = {
    "Momentum": ("动量因子", "过去{w}日收益率"),
    "Reversal": ("反转因子", "过去{w}日收益率的相反数"),
    "Volatility": ("波动率因子", "{w}日收益率标准差"),
    "Volume_Price_Corr": ("价量因子", "{w}日收盘价与成交量的相关系数"),
    "ELG_Share_In_Main": ("资金结构稳定性因子", "{w}日特大单净流入占主力净流入比例滚动和"),
    "Turnover_Skew": ("换手率因子", "{w}日换手率偏度"),
    "Amount_Ratio": ("成交额因子", "当日成交额与{w}日均值之比"),
    "High_Low_Range": ("振幅因子", "{w}日平均振幅"),
    "Close_Position": ("位置因子", "收盘价在{w}日高低区间中的位置"),
    "MF_Net_Inflow_Ratio": ("资金流因子", "{w}日主力净流入占成交额比例"),
    "PE_Relative": ("估值因子", "市盈率相对{w}日均值的偏离"),
    "PB_Zscore": ("估值因子", "市净率的{w}日标准分"),
}


def dump_json(obj: object) -> str:
    """RD-Agent's JSON style: UTF-8 text, indent 2, `default=str`, NaN tokens allowed."""
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str)


def has_nan_token(text: str) -> bool:
    return "NaN" in text or "Infinity" in text


def _window(name: str) -> int:
    match = re.search(r"(\d+)D", name)
    return int(match.group(1)) if match else 10


def _prefix(name: str) -> str:
    return re.sub(r"_\d+D(_v\d+)?$", "", name)


def factor_description(name: str) -> str:
    category, text = _CATEGORY_CN.get(_prefix(name), ("自定义因子", "{w}日滚动统计量"))
    return f"[{category}] {text.format(w=_window(name))}"


def factor_formula(name: str) -> str:
    escaped = name.replace("_", "\\_")
    return f"\\text{{{escaped}}} = \\frac{{1}}{{{_window(name)}}} \\sum_{{s=t-{_window(name) - 1}}}^{{t}} x_s"


def factor_variables(name: str) -> dict[str, str]:
    return {"close": "收盘价", "volume": "成交量", "window": f"滚动窗口长度，{_window(name)}日"}


def input_schema(name: str) -> JsonObject:
    """The backfill's name heuristic (§5.1), reproduced so readers see the same three kinds."""
    lowered = name.lower()
    lookback = _window(name)
    if any(token in lowered for token in ("pe", "pb", "ps", "pcf", "market_cap", "turnover")):
        required = ["close", "pe", "pb", "ps", "total_mv"]
    elif any(token in lowered for token in ("moneyflow", "net_inflow", "net_outflow")):
        required = ["close", "mf_net_amt", "mf_elg_net_amt"]
    else:
        required = ["open", "high", "low", "close", "volume"]
    return {
        "required_fields": required,
        "optional_fields": ["amount", "pct_chg", "turnover_rate"],
        "lookback_days": lookback,
        "index_type": "MultiIndex(datetime, instrument)",
        "description": f"因子计算所需的输入数据结构定义 (lookback: {lookback}天)",
    }


def _variant_a_entry(
    name: str, *, source: str, expression: str, tags: list[str], loop: LoopPlan, at: str
) -> JsonObject:
    entry = {
        "name": name,
        "source": source,
        "region": "cn",
        "description_cn": "" if source == "qlib_alpha158" else factor_description(name),
        "formula_hint": expression,
        "expression": expression,
        "created_at_utc": at,
        "experiment_id": f"{loop.task_run_id}/{loop.loop_id}",
        "tags": tags,
        "variables": {} if source == "qlib_alpha158" else factor_variables(name),
        "freq": "1d",
        "align": "close",
        "nan_policy": "dataservice_default",
        "input_schema": input_schema(name),
    }
    entry.update(
        {
            "impl_module": "rd_factors_lib.generated",
            "impl_func": name,
            "impl_version": at[:10].replace("-", ""),
            "interface_info": {"type": "function"},
        }
    )
    return entry


def _variant_d_entry(name: str) -> JsonObject:
    return {
        "name": name,
        "source": "rdagent_generated",
        "description_cn": factor_description(name),
        "formula_hint": factor_formula(name),
        "tags": ["rdagent"],
        "variables": factor_variables(name),
        "freq": "1d",
        "align": "close",
        "nan_policy": "dataservice_default",
    }


def factor_meta_head(loop: LoopPlan, *, at: str) -> tuple[JsonObject, str]:
    """Variant A (HEAD backfill), plus D entries appended by the log-driven enrichment.

    Factor workspaces: the Alpha158 subset of the YAML, then the loop's generated factors (D).
    Model workspaces: their YAMLs are Jinja, so names fall back to the parquet's tuple strings.
    """
    if loop.action == "factor":
        factors = [
            _variant_a_entry(
                name, source="qlib_alpha158", expression=expr, tags=["alpha158"], loop=loop, at=at
            )
            for name, expr in ALPHA158_SUBSET
        ]
        factors += [_variant_d_entry(name) for name in loop.new_factors]
        variant = "A+D" if loop.new_factors else "A"
    else:
        factors = [
            _variant_a_entry(
                f"('feature', '{name}')",
                source="rdagent_generated",
                expression="",
                tags=["rdagent"],
                loop=loop,
                at=at,
            )
            for name in loop.factor_set
        ]
        variant = "A"
    meta = {
        "version": "v1",
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "created_at_utc": at,
        "factors": factors,
    }
    return meta, variant


def factor_meta_gap(loop: LoopPlan, *, at: str) -> JsonObject:
    """Variant B (gap era, written online): short generated entries, short Alpha158 entries."""
    generated = [
        {
            "name": name,
            "source": "rdagent_generated",
            "description_cn": factor_description(name),
            "formula_hint": factor_formula(name),
            "created_at_utc": at,
            "experiment_id": f"{loop.task_run_id}/{loop.loop_id}",
            "tags": ["rdagent"],
            "variables": factor_variables(name),
        }
        for name in (loop.new_factors or loop.factor_set)
    ]
    alpha = [
        {"name": name, "expression": expr, "source": "qlib_alpha158", "region": "cn", "tags": ["alpha158"]}
        for name, expr in ALPHA158_SUBSET[:5]
    ]
    return {
        "version": "v1",
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "created_at_utc": at,
        "factors": generated + alpha,
    }


def factor_meta_scan(loop: LoopPlan, *, workspace_path: str) -> JsonObject:
    """Variant C (`tools/scan_workspace_factors.py`): parquet column labels as names."""
    return {
        "version": "v1",
        "source": "backfill_scan",
        "workspace_path": workspace_path,
        "factors": [
            {"name": f"('feature', '{name}')", "source": "rdagent_generated"} for name in loop.factor_set
        ],
    }


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _window_values(metrics: dict[str, float]) -> tuple[float | None, float | None, float | None]:
    """Without-cost values, falling back to with-cost when missing or exactly 0 (§5.2)."""

    def pick(key: str) -> float | None:
        value = metrics.get(f"1day.excess_return_without_cost.{key}")
        if value is None or value == 0:
            value = metrics.get(f"1day.excess_return_with_cost.{key}")
        return value

    return pick("annualized_return"), pick("max_drawdown"), pick("information_ratio")


def factor_perf_head(
    loop: LoopPlan, metrics: dict[str, float], first_row: str, *, at: str, names: list[str]
) -> JsonObject:
    """HEAD backfill shape with the bogus `""`/`"0"` keys from the header-based CSV reader."""
    annual, mdd, sharpe = _window_values(metrics)
    window_metrics: dict[str, object] = {"": first_row, "0": metrics[first_row]}
    window_metrics.update(metrics)
    window_metrics.update(
        {
            "annualized_return": annual,
            "max_drawdown": mdd,
            "sharpe": sharpe,
            "ic": metrics.get("IC"),
            "ic_ir": metrics.get("ICIR"),
        }
    )
    window = {
        "name": "main_window",
        "annual_return": annual,
        "max_drawdown": mdd,
        "sharpe": sharpe,
        "metrics": window_metrics,
    }
    return {
        "version": "v1",
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "generated_at_utc": at,
        "factors": [],
        "combinations": [{"name": "main", "factor_names": names, "windows": [window]}],
    }


def factor_perf_gap(loop: LoopPlan, metrics: dict[str, float], first_row: str, *, at: str) -> JsonObject:
    """Gap-era shape: the metrics hold only the pandas header quirk keys."""
    window = {
        "name": "main_window",
        "annual_return": None,
        "max_drawdown": None,
        "sharpe": None,
        "metrics": {"Unnamed: 0": first_row, "0": metrics[first_row]},
    }
    return {
        "version": "v1",
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "generated_at_utc": at,
        "factors": [],
        "combinations": [
            {"name": "main", "factor_names": list(loop.new_factors or loop.factor_set), "windows": [window]}
        ],
    }


def feedback(loop: LoopPlan, *, at: str, log_driven: bool) -> JsonObject:
    """feedback.json: log-driven backfill writes the decision and texts, plain backfill nulls."""
    if log_driven:
        decision: bool | None = bool(loop.decision)
        hypothesis = loop.hypothesis
        summary: dict[str, str | list[str]] = {
            "execution": f"Loop {loop.loop_id} ran the {loop.action} experiment without errors.",
            "value_feedback": "IC improved over SOTA" if loop.decision else "IC below SOTA",
            "shape_feedback": "accepted as new SOTA" if loop.decision else "rejected",
        }
    else:
        decision, hypothesis = None, ""
        summary = {"execution": "", "value_feedback": "", "shape_feedback": ""}
    summary.update({"code_critic": [], "limitations": []})
    return {
        "version": "v1",
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "generated_at_utc": at,
        "decision": decision,
        "hypothesis": hypothesis,
        "summary": summary,
    }


def _required_files(action: str, *, head: bool) -> list[str]:
    if action == "model":
        return ["qlib_res.csv", "ret.pkl", "model.pkl"] if head else ["qlib_res.csv", "ret.pkl"]
    return ["combined_factors_df.parquet", "factor.py"] if head else ["combined_factors_df.parquet"]


POINTERS = {
    "meta_path": "workspace_meta.json",
    "summary_path": "experiment_summary.json",
    "manifest_path": "manifest.json",
}
RESULT_FILES = (
    "qlib_res.csv",
    "ret.pkl",
    "ret_schema.parquet",
    "ret_schema.json",
    "signals.parquet",
    "signals.json",
    "combined_factors_df.parquet",
    "mlruns",
)


def workspace_meta_head(loop: LoopPlan, *, workspace_id: str, workspace_path: str, at: str) -> JsonObject:
    """HEAD backfill `workspace_meta.json` (no version field)."""
    return {
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "action": loop.action,
        "workspace_id": workspace_id,
        "workspace_role": "experiment_workspace",
        "experiment_type": loop.action,
        "workspace_path": workspace_path,
        "status": loop.status,
        "has_result": True,
        "generated_at_utc": at,
        "result_criteria": {"required_files": _required_files(loop.action, head=True), "has_result": True},
        "task_run": {"task_run_id": loop.task_run_id},
        "loop": {"task_run_id": loop.task_run_id, "loop_id": loop.loop_id, "action": loop.action},
        "pointers": dict(POINTERS),
    }


def files_map(present: set[str]) -> dict[str, str | None]:
    return {name: (name if name in present else None) for name in RESULT_FILES}


def experiment_summary_head(meta: JsonObject, present: set[str]) -> JsonObject:
    return {**meta, "files": files_map(present), "artifacts": []}


def manifest_head(meta: JsonObject) -> JsonObject:
    return {**meta, "artifacts": []}


def key_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """V1 `key_metrics`: only `ic_mean`/`rank_ic_mean` exist; the other four keys are never found."""
    out = {}
    if "IC" in metrics:
        out["ic_mean"] = metrics["IC"]
    if "Rank IC" in metrics:
        out["rank_ic_mean"] = metrics["Rank IC"]
    return out


def workspace_meta_v1(
    run: RunPlan,
    loop: LoopPlan,
    *,
    workspace_id: str,
    workspace_path: str,
    log_trace_path: str,
    db_path: str,
    at: str,
    metrics: dict[str, float],
) -> JsonObject:
    """Dec-24 loop shape: more keys (registry, workspace_row, key_metrics), no version."""
    row = {
        "workspace_id": workspace_id,
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "workspace_role": "experiment_workspace",
        "experiment_type": loop.action,
        "step_name": "feedback",
        "status": loop.status,
        "workspace_path": workspace_path,
        **POINTERS,
    }
    return {
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "action": loop.action,
        "workspace_id": workspace_id,
        "workspace_role": "experiment_workspace",
        "experiment_type": loop.action,
        "workspace_path": workspace_path,
        "status": loop.status,
        "has_result": True,
        "generated_at_utc": at,
        "step_name": "feedback",
        "best_workspace_id": workspace_id,
        "registry": {"db_path": db_path},
        "result_criteria": {"required_files": _required_files(loop.action, head=False), "has_result": True},
        "task_run": {
            "task_run_id": run.task_run_id,
            "scenario": "QuantRDLoop",
            "log_trace_path": log_trace_path,
        },
        "loop": {
            "task_run_id": loop.task_run_id,
            "loop_id": loop.loop_id,
            "action": loop.action,
            "status": loop.status,
            "has_result": True,
            "best_workspace_id": workspace_id,
            "key_metrics": key_metrics(metrics),
        },
        "workspace_row": row,
        "pointers": dict(POINTERS),
    }


def experiment_summary_v1(
    meta: JsonObject, present: set[str], artifacts: list[JsonObject], metrics: dict[str, float]
) -> JsonObject:
    return {
        **meta,
        "files": files_map(present),
        "artifacts": artifacts,
        "metrics": metrics,
        "key_metrics": key_metrics(metrics),
    }


def manifest_v1(meta: JsonObject, artifacts: list[JsonObject], metrics: dict[str, float]) -> JsonObject:
    return {**meta, "artifacts": artifacts, "key_metrics": key_metrics(metrics)}


PREPROCESS_DEFAULT = {
    "normalize": "zscore",
    "fillna": "forward_fill",
    "clip": None,
    "standardize_features": True,
}


def model_meta(loop: LoopPlan, *, workspace_id: str) -> JsonObject:
    """HEAD `model_meta.json`: configs are null because the model YAMLs are unrendered Jinja."""
    return {
        "model_type": "Net",
        "model_conf": None,
        "dataset_conf": None,
        "feature_schema": None,
        "preprocess_config": dict(PREPROCESS_DEFAULT),
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "workspace_id": workspace_id,
    }


def strategy_meta(*, workspace_id: str, has_strategy_yaml: bool) -> JsonObject:
    """HEAD `strategy_meta.json`: the invented default portfolio config."""
    func = f"get_strategy_{workspace_id}_config" if has_strategy_yaml else PLACEHOLDER_STRATEGY_FUNC
    return {
        "strategy_name": f"strategy_{workspace_id}",
        "impl_module": "rd_strategies_lib.generated",
        "impl_func": func,
        "python_implementation": {"module": "rd_strategies_lib.generated", "func": func},
        "portfolio_config": {
            "signal_config": {"top_k": 50, "min_score": 0.5, "max_positions": 50, "score_field": "score"},
            "weight_config": {"method": "equal_weight", "max_single_weight": 0.05},
            "rebalance_config": {"freq": "1d", "rebalance_threshold": 0.1},
            "risk_config": {"max_drawdown": 0.2, "max_single_loss": 0.05},
        },
    }


def bundle_manifest(
    *, bundle_id: str, loop: LoopPlan, workspace_id: str, workspace_path: str, at: datetime
) -> JsonObject:
    """Bundle `manifest.json` variant A (solidification)."""
    prefix = f"workspaces/{workspace_id}"
    return {
        "schema_version": 1,
        "asset_bundle_id": bundle_id,
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "generated_at_utc": at.isoformat(),
        "primary_workspace_id": workspace_id,
        "source_workspace_path": workspace_path,
        "log_dir": "",
        "log_uri": "",
        "primary_assets": {
            "factor_entry_relpath": f"{prefix}/factor_entry.py",
            "model_weight_relpath": f"{prefix}/model.pkl",
            "config_relpath": f"{prefix}/conf_baseline.yaml",
        },
    }


def factor_catalog(generated: list[tuple[str, float | None, float | None]], *, at: str) -> JsonObject:
    """Minimal `RDagentDB/aistock/factor_catalog.json`."""
    factors: list[JsonObject] = [
        {
            "name": name,
            "expression": expr,
            "source": "qlib_alpha158",
            "region": "cn",
            "tags": ["alpha158"],
            "best_performance": "无回测记录",
        }
        for name, expr in ALPHA158_SUBSET
    ]
    for name, sharpe, annual in generated:
        entry = _variant_d_entry(name)
        sharpe, annual = _finite_or_none(sharpe), _finite_or_none(annual)
        entry["best_performance"] = (
            f"Sharpe: {sharpe:.2f}, Ann.Ret: {annual * 100:.2f}%"
            if sharpe is not None and annual is not None
            else "无回测记录"
        )
        factors.append(entry)
    return {"version": "v1", "generated_at_utc": at, "source": "rdagent_tools", "factors": factors}
