"""Readers of the workspace files: every variant and quirk of spec §5–§7, on small hand-made inputs."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from workbench.errors import InputFileError
from workbench.rdagent.files.factor_meta import FACTOR_META_SCHEMA, normalise_factor_name, read_factor_meta
from workbench.rdagent.files.factor_perf import (
    COMBINATION_SCHEMA,
    FACTOR_SCHEMA,
    clean_metrics,
    read_factor_perf,
)
from workbench.rdagent.files.feedback import read_feedback
from workbench.rdagent.files.jsonfile import expect_object, read_json_file
from workbench.rdagent.files.model_meta import read_model_meta, read_strategy_meta
from workbench.rdagent.files.qlib_res import qlib_metrics_by_name, read_qlib_res
from workbench.rdagent.files.ret_schema import read_ret_schema
from workbench.rdagent.files.returns import RETURNS_SCHEMA
from workbench.rdagent.files.signals import SIGNALS_SCHEMA, read_signals
from workbench.rdagent.files.workspace_meta import (
    read_experiment_summary,
    read_workspace_manifest,
    read_workspace_meta,
)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- read_json_file


def test_json_nan_and_infinity_tokens_are_floats(tmp_path: Path):
    path = write_text(tmp_path / "a.json", '{"a": NaN, "b": Infinity, "c": -Infinity, "d": "中文"}')
    data = read_json_file(path)
    assert math.isnan(data["a"]) and data["b"] == math.inf and data["c"] == -math.inf
    assert data["d"] == "中文"


def test_invalid_json_names_line_and_column(tmp_path: Path):
    path = write_text(tmp_path / "a.json", '{\n  "a": 1,\n  "b": tru\n}')
    with pytest.raises(InputFileError, match="invalid JSON at line 3 column 8") as info:
        read_json_file(path)
    assert info.value.path == str(path)


def test_truncated_json_says_truncated(tmp_path: Path):
    path = write_text(tmp_path / "a.json", '{"factors": [{"name": "A"}, {"name": ')
    with pytest.raises(InputFileError, match="truncated JSON"):
        read_json_file(path)
    extra = _error(lambda: read_json_file(write_text(tmp_path / "b.json", '{"a": 1}}')))
    assert extra.reason == "invalid JSON at line 1 column 9: Extra data"


def test_non_utf8_bytes_name_the_offset(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"a": "ok\xff"}')
    with pytest.raises(InputFileError, match="not UTF-8 text at byte 9"):
        read_json_file(path)


def test_bom_is_accepted_and_empty_or_missing_files_are_errors(tmp_path: Path):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json_file(bom) == {"a": 1}
    with pytest.raises(InputFileError, match="empty file"):
        read_json_file(write_text(tmp_path / "e.json", "  \n"))
    with pytest.raises(InputFileError, match="does not exist"):
        read_json_file(tmp_path / "missing.json")
    with pytest.raises(InputFileError, match="not a regular file"):
        read_json_file(tmp_path)
    with pytest.raises(InputFileError, match="more than the limit of 4"):
        read_json_file(bom, max_bytes=4)


def test_expect_object_names_the_type_found(tmp_path: Path):
    with pytest.raises(InputFileError, match="top level must be a JSON object, found array"):
        expect_object([1, 2], tmp_path / "x.json")
    assert expect_object({"a": 1}, tmp_path / "x.json") == {"a": 1}


def _error(call) -> InputFileError:
    try:
        call()
    except InputFileError as exc:
        return exc
    raise AssertionError("no InputFileError raised")


# --------------------------------------------------------------------------- factor_meta


ENTRY_A = {
    "name": "ELG_Share_In_Main_5D",
    "source": "rdagent_generated",
    "region": "cn",
    "description_cn": "资金结构稳定性因子",
    "formula_hint": "x_5d",
    "expression": "x_5d",
    "created_at_utc": "2026-01-05T08:00:00.000001+00:00",
    "experiment_id": "run1/1",
    "tags": ["rdagent"],
    "variables": {"window": "滚动窗口长度，5日"},
    "freq": "1d",
    "align": "close",
    "nan_policy": "dataservice_default",
    "input_schema": {"required_fields": ["close"], "lookback_days": 5},
    "impl_module": "rd_factors_lib.generated",
    "impl_func": "ELG_Share_In_Main_5D",
    "impl_version": "20260105",
    "interface_info": {"type": "function"},
}
ENTRY_D = {
    "name": "Mom_10D",
    "source": "rdagent_generated",
    "description_cn": "动量",
    "formula_hint": "m",
    "tags": "rdagent",
    "variables": {"w": "10"},
    "freq": "1d",
    "align": "close",
    "nan_policy": "dataservice_default",
}


def test_factor_meta_variant_a_and_d_in_one_file(tmp_path: Path):
    path = write_json(
        tmp_path / "factor_meta.json",
        {
            "version": "v1",
            "task_run_id": "run1",
            "loop_id": 1,
            "created_at_utc": "2026-01-05T08:00:00+00:00",
            "factors": [ENTRY_A, ENTRY_D],
        },
    )
    frame = read_factor_meta(path)
    assert frame.schema == pl.Schema(FACTOR_META_SCHEMA)
    a, d = frame.to_dicts()
    assert a["variant"] == "A" and d["variant"] == "D"
    assert a["name"] == a["raw_name"] == "ELG_Share_In_Main_5D"
    assert a["tags"] == ["rdagent"] and d["tags"] == ["rdagent"]  # a string tag becomes a list
    assert json.loads(a["variables_json"]) == {"window": "滚动窗口长度，5日"}
    assert json.loads(a["input_schema_json"])["lookback_days"] == 5
    assert json.loads(a["interface_info_json"]) == {"type": "function"}
    assert a["impl_version"] == "20260105" and a["experiment_id"] == "run1/1"
    assert d["expression"] is None and d["created_at_utc"] is None and d["input_schema_json"] is None


def test_factor_meta_variant_b_gap_era(tmp_path: Path):
    generated = {
        k: ENTRY_A[k]
        for k in (
            "name",
            "source",
            "description_cn",
            "formula_hint",
            "created_at_utc",
            "experiment_id",
            "tags",
            "variables",
        )
    }
    alpha = {
        "name": "RESI5",
        "expression": "Resi($close, 5)/$close",
        "source": "qlib_alpha158",
        "region": "cn",
        "tags": ["alpha158"],
    }
    frame = read_factor_meta(
        write_json(tmp_path / "f.json", {"version": "v1", "factors": [generated, alpha]})
    )
    assert frame["variant"].to_list() == ["B", "B"]
    assert frame["expression"].to_list() == [None, "Resi($close, 5)/$close"]
    assert frame["freq"].to_list() == [None, None]


def test_factor_meta_variant_c_tuple_names(tmp_path: Path):
    path = write_json(
        tmp_path / "f.json",
        {
            "version": "v1",
            "source": "backfill_scan",
            "workspace_path": "/mnt/f/x",
            "factors": [
                {"name": "('feature', 'RESI5')", "source": "rdagent_generated"},
                {"name": "('feature', \"WVMA5\")", "source": "rdagent_generated"},
                {"name": "PlainName", "source": "rdagent_generated"},
            ],
        },
    )
    frame = read_factor_meta(path)
    assert frame["variant"].to_list() == ["C", "C", "C"]
    assert frame["name"].to_list() == ["RESI5", "WVMA5", "PlainName"]
    assert frame["raw_name"].to_list() == ["('feature', 'RESI5')", "('feature', \"WVMA5\")", "PlainName"]
    assert frame["tags"].to_list() == [[], [], []]


def test_normalise_factor_name_leaves_other_parentheses_alone():
    assert normalise_factor_name("('feature', 'KLOW')") == "KLOW"
    assert normalise_factor_name("(a+b)") == "(a+b)"
    assert normalise_factor_name("(__import__('os'))") == "(__import__('os'))"  # literal_eval refuses calls


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"factors": {"name": "x"}}, "factors must be an array, found object"),
        ({"version": "v1"}, "no 'factors' list"),
        ({"factors": ["RESI5"]}, r"factors\[0\] must be an object, found string"),
        ({"factors": [{"name": "A", "tags": ["ok", 3]}]}, r"factors\[0\].tags\[1\] must be a string"),
        ({"factors": [{"source": "x"}]}, r"factors\[0\].name is missing"),
        (
            {"factors": [{"name": "A", "input_schema": "lots"}]},
            r"factors\[0\].input_schema must be an object",
        ),
        ([1, 2], "top level must be a JSON object"),
    ],
)
def test_factor_meta_wrong_types(tmp_path: Path, data, message):
    with pytest.raises(InputFileError, match=message):
        read_factor_meta(write_json(tmp_path / "f.json", data))


def test_factor_meta_empty_list_gives_empty_typed_frame(tmp_path: Path):
    frame = read_factor_meta(write_json(tmp_path / "f.json", {"factors": []}))
    assert frame.height == 0 and frame.schema == pl.Schema(FACTOR_META_SCHEMA)


# --------------------------------------------------------------------------- factor_perf


def test_factor_perf_head_bogus_keys_dropped_nan_kept(tmp_path: Path):
    text = """{"version": "v1", "task_run_id": "run1", "loop_id": 1, "generated_at_utc": "2026-01-05T08:00:00+00:00",
      "factors": [],
      "combinations": [{"name": "main", "factor_names": ["RESI5", "('feature', 'WVMA5')"],
        "windows": [{"name": "main_window", "annual_return": 0.922, "max_drawdown": -0.354, "sharpe": 1.87,
          "metrics": {"": "1day.excess_return_without_cost.annualized_return", "0": 0.922,
                      "1day.excess_return_without_cost.annualized_return": 0.922,
                      "IC": 0.047, "ICIR": NaN, "annualized_return": 0.922, "ic": 0.047, "ic_ir": NaN}}]}]}"""
    perf = read_factor_perf(write_text(tmp_path / "factor_perf.json", text))
    assert (perf.version, perf.task_run_id, perf.loop_id) == ("v1", "run1", 1)
    assert perf.factors.height == 0 and perf.factors.schema == pl.Schema(FACTOR_SCHEMA)
    assert perf.combinations.schema == pl.Schema(COMBINATION_SCHEMA)
    row = perf.combinations.row(0, named=True)
    assert row["combination_name"] == "main" and row["window_name"] == "main_window"
    assert row["factor_names"] == ["RESI5", "WVMA5"]
    assert (row["annual_return"], row["max_drawdown"], row["sharpe"], row["ic"]) == (
        0.922,
        -0.354,
        1.87,
        0.047,
    )
    assert math.isnan(row["ic_ir"])
    metrics = json.loads(row["metrics_json"])
    assert "" not in metrics and "0" not in metrics
    assert metrics["1day.excess_return_without_cost.annualized_return"] == 0.922
    assert math.isnan(metrics["ICIR"])


def test_factor_perf_gap_era_unnamed_pair_is_recovered(tmp_path: Path):
    data = {
        "version": "v1",
        "combinations": [
            {
                "name": "main",
                "factor_names": ["RESI5"],
                "windows": [
                    {
                        "name": "main_window",
                        "annual_return": None,
                        "max_drawdown": None,
                        "sharpe": None,
                        "metrics": {
                            "Unnamed: 0": "1day.excess_return_without_cost.annualized_return",
                            "0": 0.5,
                        },
                    }
                ],
            }
        ],
    }
    row = read_factor_perf(write_json(tmp_path / "p.json", data)).combinations.row(0, named=True)
    assert json.loads(row["metrics_json"]) == {"1day.excess_return_without_cost.annualized_return": 0.5}
    # the one metric the file holds is a figure, with its cost basis and Qlib's annualisation
    assert (row["annual_return"], row["annual_return_cost"], row["periods_per_year"]) == (
        0.5,
        "without_cost",
        238,
    )
    assert row["sharpe"] is None and row["sharpe_cost"] is None and row["rank_ic"] is None


def test_clean_metrics_pair_with_text_value():
    assert clean_metrics({"": "IC", "0": "0.25"}) == {"IC": 0.25}
    assert clean_metrics({"": "IC", "0": 0.1, "IC": 0.2}) == {"IC": 0.2}  # the real value wins
    assert clean_metrics({"Unnamed: 0": "x"}) == {}


def test_factor_perf_per_factor_windows(tmp_path: Path):
    data = {
        "factors": [
            {
                "name": "RESI5",
                "metrics": {"ic_mean": 0.03, "ic_ir": 0.4, "coverage": 0.98},
                "windows": [
                    {
                        "name": "test_2021_2025",
                        "start": "2021-01-01",
                        "end": "2025-12-31",
                        "annual_return": 0.1,
                        "max_drawdown": -0.2,
                        "sharpe": 1.1,
                    },
                    {"name": "valid", "annual_return": 0.2},
                ],
            },
            {"name": "KLOW"},
        ]
    }
    factors = read_factor_perf(write_json(tmp_path / "p.json", data)).factors
    assert factors["name"].to_list() == ["RESI5", "RESI5", "KLOW"]
    assert factors["window_name"].to_list() == ["test_2021_2025", "valid", None]
    assert factors["ic_mean"].to_list() == [0.03, 0.03, None]
    assert factors["start"].to_list() == ["2021-01-01", None, None]
    assert factors["annual_return"].to_list() == [0.1, 0.2, None]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"factors": [], "combinations": {"name": "main"}}, "combinations must be an array"),
        (
            {"combinations": [{"name": "main", "factor_names": "RESI5,KLOW", "windows": [{"metrics": []}]}]},
            r"windows\[0\].metrics must be an object",
        ),
        ({"combinations": [{"windows": [{"sharpe": "high"}]}]}, r"windows\[0\].sharpe must be a number"),
        ({"combinations": [{"windows": [{"sharpe": True}]}]}, r"windows\[0\].sharpe must be a number"),
    ],
)
def test_factor_perf_wrong_types(tmp_path: Path, data, message):
    with pytest.raises(InputFileError, match=message):
        read_factor_perf(write_json(tmp_path / "p.json", data))


# --------------------------------------------------------------------------- feedback


@pytest.mark.parametrize(
    ("raw", "decision"),
    [(True, True), (False, False), (None, None), ("true", True), ("False", False), (1, True)],
)
def test_feedback_decision_spellings(tmp_path: Path, raw, decision):
    data = {
        "version": "v1",
        "task_run_id": "run1",
        "loop_id": 2,
        "decision": raw,
        "hypothesis": "h",
        "summary": {
            "execution": "ran",
            "value_feedback": "good",
            "shape_feedback": "why",
            "code_critic": [],
            "limitations": ["small sample"],
        },
    }
    fb = read_feedback(write_json(tmp_path / "feedback.json", data))
    assert fb["decision"] is decision
    assert (fb["hypothesis"], fb["execution"], fb["value_feedback"], fb["shape_feedback"]) == (
        "h",
        "ran",
        "good",
        "why",
    )
    assert fb["code_critic"] == [] and fb["limitations"] == ["small sample"] and fb["loop_id"] == 2


def test_feedback_without_summary_and_bad_decision(tmp_path: Path):
    fb = read_feedback(write_json(tmp_path / "a.json", {"version": "v1"}))
    assert fb["decision"] is None and fb["execution"] is None and fb["limitations"] == []
    with pytest.raises(InputFileError, match="decision must be true/false/null"):
        read_feedback(write_json(tmp_path / "b.json", {"decision": "maybe"}))
    with pytest.raises(InputFileError, match="summary must be an object"):
        read_feedback(write_json(tmp_path / "c.json", {"summary": "text"}))


# --------------------------------------------------------------------------- workspace_meta / summary / manifest

HEAD_META = {
    "task_run_id": "run1",
    "loop_id": 0,
    "action": "factor",
    "workspace_id": "a" * 32,
    "workspace_role": "experiment_workspace",
    "experiment_type": "factor",
    "workspace_path": "/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/" + "a" * 32,
    "status": "success",
    "has_result": True,
    "generated_at_utc": "2026-01-05T08:00:00+00:00",
    "result_criteria": {"required_files": ["combined_factors_df.parquet", "factor.py"], "has_result": True},
    "task_run": {"task_run_id": "run1"},
    "loop": {"task_run_id": "run1", "loop_id": 0, "action": "factor"},
    "pointers": {"meta_path": "workspace_meta.json"},
}


def test_workspace_meta_head_shape(tmp_path: Path):
    meta = read_workspace_meta(write_json(tmp_path / "workspace_meta.json", HEAD_META))
    assert (meta.kind, meta.shape) == ("workspace_meta", "head")
    assert meta.workspace_id == "a" * 32 and meta.loop_id == 0 and meta.has_result is True
    assert meta.required_files == ["combined_factors_df.parquet", "factor.py"]
    assert meta.step_name is None and meta.key_metrics is None and meta.artifacts.height == 0


def test_workspace_meta_v1_shape(tmp_path: Path):
    data = {
        **HEAD_META,
        "step_name": "feedback",
        "best_workspace_id": "a" * 32,
        "registry": {"db_path": "/mnt/f/Dev/RD-Agent-main/RDagentDB/registry.sqlite"},
        "task_run": {"task_run_id": "run1", "scenario": "QuantRDLoop", "log_trace_path": "/mnt/f/log/x"},
        "loop": {
            "task_run_id": "run1",
            "loop_id": 0,
            "action": "factor",
            "status": "success",
            "has_result": 1,
            "key_metrics": {"ic_mean": 0.04, "rank_ic_mean": 0.05},
        },
    }
    del data["has_result"]
    meta = read_workspace_meta(write_json(tmp_path / "workspace_meta.json", data))
    assert meta.shape == "v1" and meta.step_name == "feedback" and meta.scenario == "QuantRDLoop"
    assert meta.registry_db_path.endswith("registry.sqlite") and meta.log_trace_path == "/mnt/f/log/x"
    assert meta.key_metrics == {"ic_mean": 0.04, "rank_ic_mean": 0.05}
    assert meta.has_result is True  # from result_criteria


def test_experiment_summary_v1_with_artifacts_and_files(tmp_path: Path):
    data = {
        **HEAD_META,
        "step_name": "feedback",
        "metrics": {"IC": 0.04},
        "files": {"qlib_res.csv": "qlib_res.csv", "ret.pkl": None},
        "artifacts": [
            {
                "artifact_id": "x1",
                "artifact_type": "report",
                "name": "qlib_report",
                "status": "present",
                "entry_path": "qlib_res.csv",
                "files": ["qlib_res.csv", None],
            }
        ],
    }
    summary = read_experiment_summary(write_json(tmp_path / "experiment_summary.json", data))
    assert summary.kind == "experiment_summary" and summary.shape == "v1"
    assert summary.files == {"qlib_res.csv": "qlib_res.csv", "ret.pkl": None}
    assert summary.metrics == {"IC": 0.04}
    assert summary.artifacts.row(0, named=True) == {
        "artifact_id": "x1",
        "artifact_type": "report",
        "name": "qlib_report",
        "status": "present",
        "entry_path": "qlib_res.csv",
        "files": ["qlib_res.csv", None],
    }


def test_sidecar_shape_is_told_apart_by_version_and_keys(tmp_path: Path):
    meta = read_workspace_meta(
        write_json(
            tmp_path / "workspace_meta.json",
            {
                "version": "1.0",
                "timestamp": "2026-01-06T09:00:00",
                "experiment_id": "2026-01-06_06-00-53-321254",
                "scenario": "qlib_quant",
                "total_loops": 7,
                "sota_factor_count": 3,
                "sota_model_count": 1,
                "best_metrics": {"IC": 0.05},
            },
        )
    )
    assert meta.shape == "sidecar" and meta.total_loops == 7 and meta.workspace_id is None
    assert meta.best_metrics == {"IC": 0.05} and meta.scenario == "qlib_quant"
    summary = read_experiment_summary(
        write_json(
            tmp_path / "experiment_summary.json",
            {
                "experiments": [
                    {
                        "loop_id": 0,
                        "action": "factor",
                        "hypothesis": "h",
                        "decision": True,
                        "reason": "r",
                        "result": {"IC": 0.05},
                    }
                ],
                "total_loops": 1,
            },
        )
    )
    assert summary.shape == "sidecar"
    assert summary.experiments.row(0, named=True) == {
        "loop_id": 0,
        "action": "factor",
        "hypothesis": "h",
        "decision": True,
        "reason": "r",
        "result_json": '{"IC":0.05}',
    }


def test_manifest_head_and_unknown_shape(tmp_path: Path):
    manifest = read_workspace_manifest(write_json(tmp_path / "manifest.json", {**HEAD_META, "artifacts": []}))
    assert manifest.kind == "manifest" and manifest.shape == "head"
    with pytest.raises(InputFileError, match="not a manifest.json"):
        read_workspace_manifest(write_json(tmp_path / "m.json", {"scenario": "x", "files": []}))
    with pytest.raises(InputFileError, match="has_result must be true/false/null"):
        read_workspace_meta(write_json(tmp_path / "w.json", {**HEAD_META, "has_result": "yes"}))


# --------------------------------------------------------------------------- model_meta / strategy_meta


def test_model_meta_and_strategy_meta(tmp_path: Path):
    model = read_model_meta(
        write_json(
            tmp_path / "model_meta.json",
            {
                "model_type": "Net",
                "model_conf": None,
                "dataset_conf": {"class": "DatasetH"},
                "feature_schema": None,
                "preprocess_config": {"normalize": "zscore"},
                "task_run_id": "run1",
                "loop_id": 5,
                "workspace_id": "w",
            },
        )
    )
    assert (model.model_type, model.model_conf, model.dataset_conf, model.loop_id) == (
        "Net",
        None,
        {"class": "DatasetH"},
        5,
    )
    strategy = read_strategy_meta(
        write_json(
            tmp_path / "strategy_meta.json",
            {
                "strategy_name": "strategy_w",
                "impl_module": "rd_strategies_lib.generated",
                "impl_func": "get_placeholder_config",
                "python_implementation": {
                    "module": "rd_strategies_lib.generated",
                    "func": "get_placeholder_config",
                },
                "portfolio_config": {"signal_config": {"top_k": 50}},
            },
        )
    )
    assert strategy.is_placeholder and strategy.python_func == "get_placeholder_config"
    assert strategy.portfolio_config == {"signal_config": {"top_k": 50}}
    with pytest.raises(InputFileError, match="model_conf must be an object"):
        read_model_meta(write_json(tmp_path / "bad.json", {"model_type": "Net", "model_conf": "yaml text"}))
    with pytest.raises(InputFileError, match="not a model_meta.json"):
        read_model_meta(write_json(tmp_path / "other.json", {"version": "v1"}))


# --------------------------------------------------------------------------- qlib_res.csv

QLIB_RES = """,0
1day.excess_return_without_cost.annualized_return,0.9220809085731948
1day.excess_return_with_cost.max_drawdown,-0.354
IC,0.047
ICIR,nan
Rank IC,0.0501
 l2.train ,0.25
1day.excess_return_with_cost.annualized_return ,0.886
1day.ffr,1.0
"""


def test_qlib_res_any_order_nan_and_stripped_names(tmp_path: Path):
    lines = QLIB_RES.splitlines()
    shuffled = "\n".join([lines[0], *reversed(lines[1:])]) + "\n"
    a = read_qlib_res(write_text(tmp_path / "a.csv", QLIB_RES))
    b = read_qlib_res(write_text(tmp_path / "b.csv", shuffled))
    assert a.schema == pl.Schema({"metric": pl.String, "value": pl.Float64})
    assert a["metric"].to_list() == sorted(a["metric"].to_list())
    assert a.filter(pl.col("metric") != "ICIR").equals(b.filter(pl.col("metric") != "ICIR"))
    values = dict(zip(a["metric"].to_list(), a["value"].to_list(), strict=True))
    assert math.isnan(values["ICIR"]) and values["l2.train"] == 0.25
    assert values["1day.excess_return_with_cost.annualized_return"] == 0.886  # trailing space stripped


def test_qlib_metrics_by_name(tmp_path: Path):
    named = qlib_metrics_by_name(read_qlib_res(write_text(tmp_path / "a.csv", QLIB_RES)))
    assert named["ic"] == 0.047 and named["rank_ic"] == 0.0501 and math.isnan(named["icir"])
    assert named["excess_return_without_cost_annualized_return"] == 0.9220809085731948
    assert named["excess_return_with_cost_max_drawdown"] == -0.354
    assert named["excess_return_with_cost_annualized_return"] == 0.886
    assert named["ffr"] == 1.0 and named["pa"] is None and named["rank_icir"] is None
    assert named["extra"] == {"l2.train": 0.25}


def test_qlib_res_empty_cell_is_nan_and_duplicates(tmp_path: Path):
    frame = read_qlib_res(write_text(tmp_path / "a.csv", ",0\nIC,\nIC,0.5\r\nRank IC,0.1\n"))
    assert frame.to_dicts() == [
        {"metric": "IC", "value": 0.5},
        {"metric": "Rank IC", "value": 0.1},
    ]  # last wins
    with pytest.raises(InputFileError, match="metric 'IC' appears twice"):
        read_qlib_res(tmp_path / "a.csv", on_duplicate="error")
    nan_frame = read_qlib_res(write_text(tmp_path / "b.csv", ",0\nIC,\n"))
    assert math.isnan(nan_frame["value"][0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (",0\nIC,high\n", "metric 'IC' on line 2 has non-numeric value 'high'"),
        (",0\nIC,0.1,0.2\n", "line 2 has 3 cells"),
        (",0\n", "no metric rows"),
        (",0\n,0.5\n", "line 2 has no metric name"),
        (",0\nIC,1_000\n", "metric 'IC' on line 2 has non-numeric value '1_000'"),
        ("metric_name,0\n", "no metric rows"),  # a labelled header is a header, not a metric
    ],
)
def test_qlib_res_malformed(tmp_path: Path, text: str, message: str):
    with pytest.raises(InputFileError, match=message):
        read_qlib_res(write_text(tmp_path / "q.csv", text))


# --------------------------------------------------------------------------- ret_schema / signals


def _ret_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "datetime": pd.to_datetime(["2024-07-02", "2024-07-01"]).tz_localize("UTC"),
            "account": [101.0, 100.0],
            "return": [0.01, 0.0],
            "bench": [0.002, float("nan")],
        }
    )


def test_ret_schema_parquet_and_json_give_the_returns_frame(tmp_path: Path):
    df = _ret_frame()
    df.to_parquet(tmp_path / "ret_schema.parquet", index=False)
    df.to_json(tmp_path / "ret_schema.json", orient="table", date_format="iso")
    from_parquet = read_ret_schema(tmp_path / "ret_schema.parquet")
    from_json = read_ret_schema(tmp_path / "ret_schema.json")
    for frame in (from_parquet, from_json):
        assert frame.schema == pl.Schema(RETURNS_SCHEMA)
        assert frame["datetime"].to_list() == [date(2024, 7, 1), date(2024, 7, 2)]
        assert frame["account"].to_list() == [100.0, 101.0]
        assert frame["cash"].to_list() == [None, None]
    # pandas writes NaN as null both to parquet (pyarrow) and to JSON
    assert from_parquet["bench"].to_list() == from_json["bench"].to_list() == [None, 0.002]


def test_ret_schema_errors(tmp_path: Path):
    with pytest.raises(InputFileError, match="unknown ret_schema file type"):
        read_ret_schema(write_text(tmp_path / "ret_schema.csv", "x"))
    with pytest.raises(InputFileError, match="not a readable parquet"):
        read_ret_schema(write_text(tmp_path / "ret_schema.parquet", "not parquet"))
    with pytest.raises(InputFileError, match="no 'data' list"):
        read_ret_schema(write_json(tmp_path / "ret_schema.json", {"schema": {}}))
    bad = {"data": [{"datetime": "2024-07-01T10:00:00.000Z", "account": 1.0}]}
    with pytest.raises(InputFileError, match="time of day"):
        read_ret_schema(write_json(tmp_path / "ret_schema.json", bad))


def _signals_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trade_date": ["2024-07-01", "2024-07-01"],
            "instrument": ["SH600000", "SZ000001"],
            "signal": [0.9, 0.8],
            "target_weight": [0.5, 0.5],
            "target_position": [None, None],
            "price_ref": [None, None],
            "universe_flag": [1, 1],
            "score": [0.9, 0.8],
            "rank": pd.array([1, 2], dtype="Int64"),
            "pred_return": [0.9, 0.8],
            "generated_at_utc": ["2026-01-05T08:00:00+00:00"] * 2,
            "task_run_id": [None, None],
            "weight_method": ["topk_equal_weight"] * 2,
            "topk": [2, 2],
            "n_drop": [0, 0],
            "rebalance_freq": ["1d"] * 2,
        }
    )


def test_signals_parquet_and_json(tmp_path: Path):
    df = _signals_frame()
    df.to_parquet(tmp_path / "signals.parquet", index=False)
    df.to_json(tmp_path / "signals.json", orient="table", date_format="iso")
    for name in ("signals.parquet", "signals.json"):
        frame = read_signals(tmp_path / name)
        assert frame.schema == pl.Schema(SIGNALS_SCHEMA), name
        assert frame["trade_date"].to_list() == [date(2024, 7, 1)] * 2
        assert frame["rank"].to_list() == [1, 2]
        assert frame["instrument"].to_list() == ["SH600000", "SZ000001"]
        assert frame["sector"].to_list() == [None, None]  # absent column → null
        assert frame["topk"].to_list() == [2, 2] and frame["weight_method"][0] == "topk_equal_weight"


def test_signals_wrong_types(tmp_path: Path):
    bad = {"data": [{"trade_date": "2024-07-01", "instrument": "SH600000", "rank": 1.5}]}
    with pytest.raises(InputFileError, match=r"data\[0\].rank must be an integer"):
        read_signals(write_json(tmp_path / "signals.json", bad))
    with pytest.raises(InputFileError, match="not a signals file"):
        read_signals(write_json(tmp_path / "s.json", {"data": [{"datetime": "2024-07-01"}]}))
    pd.DataFrame({"trade_date": ["2024-07-01"], "score": ["high"]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputFileError, match="column 'score'"):
        read_signals(tmp_path / "s.parquet")


# --------------------------------------------------------------------------- damaged numbers and strings


def test_oversized_integer_literal_is_a_file_error_not_a_crash(tmp_path: Path):
    huge = "9" * 5000  # beyond Python's 4,300-digit int parsing limit
    with pytest.raises(InputFileError, match=r"integer 9{20}\.\.\. \(5000 digits\) is too large"):
        read_feedback(write_text(tmp_path / "feedback.json", f'{{"loop_id": {huge}}}'))
    perf = write_text(
        tmp_path / "factor_perf.json", '{"factors": [{"name": "A", "sharpe": ' + "9" * 400 + "}]}"
    )
    with pytest.raises(InputFileError, match="too large"):
        read_factor_perf(perf)
    # the largest integers RD-Agent writes (epoch milliseconds, ids) still parse
    assert read_json_file(
        write_text(tmp_path / "ok.json", '{"t": 1719792000000, "n": -123456789012345678}')
    ) == {"t": 1719792000000, "n": -123456789012345678}


def test_epoch_dates_and_integers_out_of_range_are_file_errors(tmp_path: Path):
    far = {"data": [{"datetime": 1e20, "account": 1.0}]}
    with pytest.raises(
        InputFileError, match=r"data\[0\]\.datetime = 1e\+20 is not a date in epoch milliseconds"
    ):
        read_ret_schema(write_json(tmp_path / "ret_schema.json", far))
    rank = {"data": [{"trade_date": "2024-07-01", "instrument": "SH600000", "rank": 1e30}]}
    with pytest.raises(InputFileError, match=r"data\[0\]\.rank = 1e\+30 is out of the 64-bit integer range"):
        read_signals(write_json(tmp_path / "signals.json", rank))


def test_unpaired_surrogate_escape_is_refused_paired_one_kept(tmp_path: Path):
    with pytest.raises(InputFileError, match="unpaired UTF-16 surrogate"):
        read_factor_meta(write_text(tmp_path / "factor_meta.json", '{"factors": [{"name": "\\ud800"}]}'))
    assert read_json_file(write_text(tmp_path / "ok.json", '{"k": "\\ud83d\\ude00"}')) == {"k": "😀"}


def test_json_cut_inside_a_string_is_reported_as_truncated(tmp_path: Path):
    with pytest.raises(InputFileError, match="truncated JSON"):
        read_json_file(write_text(tmp_path / "a.json", '{\n  "decision": true,\n  "reason": "the factor was'))


def test_ret_schema_parquet_refuses_text_boolean_and_struct_columns(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for value, kind in (([{"x": 1}], "Struct"), (["1.5"], "String"), ([True], "Boolean")):
        pq.write_table(
            pa.table({"datetime": ["2024-01-02"], "account": value}), tmp_path / "ret_schema.parquet"
        )
        with pytest.raises(InputFileError, match=f"column 'account' is not numeric .*{kind}"):
            read_ret_schema(tmp_path / "ret_schema.parquet")


def test_signals_parquet_time_of_day_is_refused_like_json(tmp_path: Path):
    frame = _signals_frame()
    frame["trade_date"] = pd.to_datetime(["2024-07-01 15:30", "2024-07-01 00:00"])
    frame.to_parquet(tmp_path / "signals.parquet", index=False)
    with pytest.raises(InputFileError, match="trade_date has a time of day"):
        read_signals(tmp_path / "signals.parquet")


def test_feedback_of_another_kind_of_file_is_refused(tmp_path: Path):
    with pytest.raises(InputFileError, match="not a feedback file: none of decision, hypothesis, summary"):
        read_feedback(write_json(tmp_path / "feedback.json", {"version": "v1", "factors": []}))
    with pytest.raises(InputFileError, match="found no keys"):
        read_feedback(write_json(tmp_path / "f1.json", {}))
    assert read_feedback(write_json(tmp_path / "f2.json", {"decision": None}))["decision"] is None
