"""Experiment request models: both shapes, every rule, errors that name file and field."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from workbench.errors import ConfigError, InputFileError
from workbench.rdagent.request import (
    ExperimentRequest,
    StrategyConfig,
    StrategyEntry,
    load_request,
    load_strategy_config,
    parse_request,
    request_to_rdagent_json,
)

EXAMPLE = {
    "name": "topk_ab",
    "kind": "ab_test",
    "factor_set": {"factors": [{"name": "RESI5", "source": "qlib_alpha158"}]},
    "train_test": {
        "train_start": "2018-01-01",
        "train_end": "2020-12-31",
        "test_start": "2021-01-01",
        "test_end": "2025-12-31",
    },
    "strategies": [
        {
            "name": "sota_topk50",
            "role": "control",
            "loop_id": 0,
            "strategy_type": "topk",
            "trading_rule": {"topk": 50, "n_drop": 5},
            "risk_model": {},
            "benchmark": "SH000300",
        },
        {
            "name": "topk30",
            "role": "treatment",
            "loop_id": 1,
            "strategy_type": "topk",
            "trading_rule": {"topk": 30, "n_drop": 3},
        },
    ],
}

EXAMPLE_YAML = """\
name: topk_ab
kind: ab_test
factor_set:
  factors:
    - {name: RESI5, source: qlib_alpha158}
train_test:
  train_start: 2018-01-01   # unquoted: YAML gives a date object
  train_end: 2020-12-31
  test_start: 2021-01-01
  test_end: 2025-12-31
strategies:
  - name: sota_topk50
    role: control
    loop_id: 0
    strategy_type: topk
    trading_rule: {topk: 50, n_drop: 5}
    risk_model: {}
    benchmark: SH000300
  - name: topk30
    role: treatment
    loop_id: 1
    strategy_type: topk
    trading_rule: {topk: 30, n_drop: 3}
"""

# Field names of RD-Agent's dataclasses (rdagent/core/experiment_request_schema.py, spec §5.9).
RDAGENT_REQUEST_FIELDS = [
    "kind",
    "strategy",
    "factor_set",
    "train_test",
    "objective",
    "model",
    "dataset",
    "name",
    "description",
    "user_tags",
    "extra",
]
RDAGENT_STRATEGY_FIELDS = {
    "strategy_type",
    "name",
    "description",
    "risk_model",
    "trading_rule",
    "benchmark",
    "prompt_template_id",
    "extra",
}


def write(tmp_path: Path, name: str, data: dict | str) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def example(**changes) -> dict:
    data = copy.deepcopy(EXAMPLE)
    data.update(changes)
    return data


def assert_multi_strategy_example(request: ExperimentRequest) -> None:
    assert request.kind == "ab_test"
    assert [e.name for e in request.strategy_entries()] == ["sota_topk50", "topk30"]
    assert [e.role for e in request.strategies] == ["control", "treatment"]
    assert request.control_entry().trading_rule == {"topk": 50, "n_drop": 5}
    assert request.train_test.train_start == dt.date(2018, 1, 1)
    assert request.train_test.test_end == dt.date(2025, 12, 31)
    # the RD-Agent view is derived from the control
    assert request.strategy == StrategyConfig(
        strategy_type="topk", name="sota_topk50", trading_rule={"topk": 50, "n_drop": 5}, benchmark="SH000300"
    )
    # entries without their own factor set use the request-wide one
    assert request.factor_set_for(request.strategies[1]).factors[0].name == "RESI5"


def test_multi_strategy_request_from_json_file(tmp_path):
    assert_multi_strategy_example(load_request(write(tmp_path, "req.json", EXAMPLE)))


def test_multi_strategy_request_from_yaml_file(tmp_path):
    for suffix in ("yaml", "yml"):
        request = load_request(write(tmp_path, f"req.{suffix}", EXAMPLE_YAML))
        assert_multi_strategy_example(request)
        assert request == parse_request(EXAMPLE)


def test_single_strategy_rdagent_shape_is_one_control_entry():
    # the normalized JSON RD-Agent writes: every field present, nulls included
    data = {
        "kind": "research",
        "strategy": {
            "strategy_type": "topk",
            "name": None,
            "description": None,
            "risk_model": {},
            "trading_rule": {"topk": 50, "n_drop": 10},
            "benchmark": "SH000300",
            "prompt_template_id": None,
            "extra": {},
        },
        "factor_set": None,
        "train_test": {
            "train_start": "2018-01-01",
            "train_end": "2020-12-31",
            "valid_start": None,
            "valid_end": None,
            "test_start": "2021-01-01",
            "test_end": None,
            "dataset_extra": {"market": "csi300"},
        },
        "objective": {"primary_metric": "ic", "direction": "maximize", "constraints": {}},
        "model": None,
        "dataset": None,
        "name": "demo",
        "description": None,
        "user_tags": [],
        "extra": {},
    }
    request = parse_request(data, source="normalized.json")
    [entry] = request.strategy_entries()
    assert (entry.name, entry.role, entry.source, entry.strategy_type) == (
        "topk",
        "control",
        "rdagent",
        "topk",
    )
    assert entry.trading_rule == {"topk": 50, "n_drop": 10}
    assert request.strategies == []
    assert request_to_rdagent_json(request) == data


def test_per_strategy_factor_set_and_external_source():
    data = example()
    data["strategies"][1].update(
        source="external",
        external_id="conf_external_strategy_001.yaml",
        factor_set={"factors": [{"name": "ROC60", "source": "qlib_alpha158", "version": 2}]},
    )
    request = parse_request(data)
    treatment = request.strategies[1]
    assert request.factor_set_for(treatment).factors[0].name == "ROC60"
    assert request.factor_set_for(treatment).factors[0].version == "2"
    assert (treatment.source, treatment.external_id) == ("external", "conf_external_strategy_001.yaml")


def _with(path: str, value) -> dict:
    """EXAMPLE with one field set (value None deletes it); path like 'strategies.1.role'."""
    data = example()
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "field_path", "problem"),
    [
        (_with("strategies.1.role", "control"), "strategies[1].role", "second control"),
        (_with("strategies.1.name", "sota_topk50"), "strategies[1].name", "duplicate name"),
        (_with("strategies.1.loop_id", 0), "strategies[1].loop_id", "duplicate loop_id"),
        (_with("strategies.1.strategy_type", None), "strategies[1].strategy_type", "required"),
        (_with("strategies.1.role", "baseline"), "strategies[1].role", "'control' or 'treatment'"),
        (_with("strategies.0.role", "treatment"), "strategies", "exactly one role: control"),
        (_with("train_test.test_start", "2020-06-30"), "train_test.test_start", "before train_end"),
        (_with("train_test.train_start", "2018/01/01"), "train_test.train_start", "ISO date"),
        (_with("strategies.1.trading_rule", [30, 3]), "strategies[1].trading_rule", "valid dictionary"),
        (_with("strategies.1.loop_id", "one"), "strategies[1].loop_id", "valid integer"),
        (_with("strategies.1.trading_rules", {"topk": 30}), "strategies[1].trading_rules", "unknown field"),
        (_with("kind", "abtest"), "kind", "'research', 'benchmark' or 'ab_test'"),
        (_with("strategy", {"strategy_type": "long_short"}), "strategy", "disagrees with strategies[0]"),
    ],
    ids=[
        "two_controls",
        "duplicate_names",
        "duplicate_loop_ids",
        "missing_strategy_type",
        "bad_role",
        "ab_test_without_control",
        "bad_date_order",
        "bad_date_format",
        "wrong_type_dict",
        "wrong_type_int",
        "unknown_key",
        "bad_kind",
        "strategy_disagrees",
    ],
)
def test_invalid_request_names_file_field_and_problem(tmp_path, data, field_path, problem):
    path = write(tmp_path, "bad_request.json", data)
    with pytest.raises(ConfigError) as caught:
        load_request(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert f"{field_path}: " in message
    assert problem in message


def test_several_problems_are_reported_together():
    data = _with("strategies.1.role", "baseline")
    del data["strategies"][0]["strategy_type"]
    with pytest.raises(ConfigError) as caught:
        parse_request(data, source="inline")
    message = str(caught.value)
    assert message.startswith("inline: 2 problems:")
    assert "strategies[0].strategy_type: required field is missing" in message
    assert "strategies[1].role: " in message


def test_ab_test_may_have_a_single_treatment_and_research_needs_no_control():
    one = example(strategies=[EXAMPLE["strategies"][1]])
    assert parse_request(one).strategy.name == "topk30"
    research = _with("kind", "research")
    research["strategies"][0]["role"] = "treatment"
    # no control: the RD-Agent view is the first entry
    assert parse_request(research).strategy.name == "sota_topk50"
    assert parse_request(research).control_entry() is None


def test_round_trip_through_rdagent_json():
    request = parse_request(EXAMPLE)
    rdagent = request_to_rdagent_json(request)
    assert list(rdagent) == RDAGENT_REQUEST_FIELDS
    assert set(rdagent["strategy"]) == RDAGENT_STRATEGY_FIELDS
    assert rdagent["strategy"]["name"] == "sota_topk50"
    assert [s["name"] for s in rdagent["extra"]["strategies"]] == ["sota_topk50", "topk30"]
    assert rdagent["train_test"]["train_start"] == "2018-01-01"
    text = json.dumps(rdagent)  # JSON-ready, no date objects
    assert parse_request(json.loads(text)) == request


def test_reserved_extra_strategies_cannot_be_combined_with_strategies():
    data = example(extra={"strategies": []})
    with pytest.raises(ConfigError, match=r"extra\.strategies: reserved"):
        parse_request(data)


def test_load_strategy_config_from_yaml(tmp_path):
    path = write(
        tmp_path,
        "conf_external_strategy_001.yaml",
        "strategy_type: topk\nname: ext_topk20\ntrading_rule:\n  topk: 20\n  n_drop: 2\nbenchmark: SH000905\n",
    )
    config = load_strategy_config(path)
    assert (config.strategy_type, config.trading_rule, config.benchmark) == (
        "topk",
        {"topk": 20, "n_drop": 2},
        "SH000905",
    )
    entry = StrategyEntry.from_config(config, role="treatment", source="external", external_id=path.name)
    assert (entry.name, entry.source, entry.to_strategy_config()) == ("ext_topk20", "external", config)


def test_load_strategy_config_rejects_role_and_unknown_keys(tmp_path):
    path = write(tmp_path, "s.json", {"strategy_type": "topk", "topk": 20})
    with pytest.raises(ConfigError, match=r"s\.json: topk: unknown field"):
        load_strategy_config(path)
    # role belongs to a request's strategies entry, not to a plain StrategyConfig file
    path = write(tmp_path, "r.json", {"strategy_type": "topk", "role": "control"})
    with pytest.raises(ConfigError, match=r"r\.json: role: unknown field"):
        load_strategy_config(path)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("req.toml", "name = 'x'", "unsupported file type"),
        ("req.json", '{"name": ', "invalid JSON at line 1"),
        ("req.yaml", "name: [unclosed", "invalid YAML"),
        ("req.json", "[1, 2]", "top level must be a mapping"),
    ],
)
def test_unreadable_files_raise_config_error_naming_the_file(tmp_path, name, content, problem):
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError) as caught:
        load_request(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_a_missing_or_unreadable_file_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="absent.json: file not found"):
        load_request(tmp_path / "absent.json")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(InputFileError, match="is a folder"):
        load_strategy_config(tmp_path / "folder.yaml")
    (tmp_path / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(InputFileError, match="not UTF-8 text"):
        load_request(tmp_path / "latin1.json")
