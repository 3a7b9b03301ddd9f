"""The A/B ExperimentRequest of the sample's multi-strategy task run (spec §5.9, §10.1).

No control/treatment field exists in RD-Agent's code; the design maps "one task run, one loop
per strategy version". The request is stored in `task_runs.params_json` as
`{"experiment_request": REQUEST}` and each strategy names its `loop_id`.
"""

from __future__ import annotations

from typing import Any


def multi_strategy_request() -> dict[str, Any]:
    """The A/B ExperimentRequest stored in `task_runs.params_json` of the multi-strategy run."""
    base_factors = [
        {"name": "RESI5", "source": "qlib_alpha158"},
        {"name": "WVMA5", "source": "qlib_alpha158"},
        {"name": "CORR20", "source": "qlib_alpha158"},
        {"name": "Momentum_20D", "source": "rdagent_generated"},
        {"name": "MF_Net_Inflow_Ratio_10D", "source": "rdagent_generated"},
    ]
    alt_factors = [
        {"name": "KLEN", "source": "qlib_alpha158"},
        {"name": "ROC60", "source": "qlib_alpha158"},
        {"name": "Volatility_60D", "source": "rdagent_generated"},
        {"name": "PB_Zscore_20D", "source": "external_manual"},
    ]

    def strategy(
        name: str,
        role: str,
        loop_id: int,
        rule: dict[str, Any],
        risk: dict[str, Any],
        factors: list[dict[str, str]],
    ) -> dict[str, Any]:
        return {
            "name": name,
            "role": role,
            "loop_id": loop_id,
            "strategy_type": "topk",
            "trading_rule": rule,
            "risk_model": risk,
            "benchmark": "SH000300",
            "factor_set": {"factors": factors},
        }

    return {
        "name": "topk_ab_2026q1",
        "kind": "ab_test",
        "description": "SOTA top-50 control against three treatments: smaller book, risk cap, other factors",
        "factor_set": {"factors": base_factors},
        "train_test": {
            "train_start": "2018-01-01",
            "train_end": "2021-12-31",
            "valid_start": "2022-01-01",
            "valid_end": "2024-06-30",
            "test_start": "2024-07-01",
            "test_end": "2025-12-31",
        },
        "objective": {"primary_metric": "information_ratio", "direction": "maximize"},
        "strategies": [
            strategy(
                "sota_topk50",
                "control",
                0,
                {"topk": 50, "n_drop": 5},
                {"max_single_weight": 0.05},
                base_factors,
            ),
            strategy(
                "topk30", "treatment", 1, {"topk": 30, "n_drop": 3}, {"max_single_weight": 0.05}, base_factors
            ),
            strategy(
                "topk50_riskcap",
                "treatment",
                2,
                {"topk": 50, "n_drop": 5},
                {"max_single_weight": 0.03, "max_industry_weight": 0.2},
                base_factors,
            ),
            strategy(
                "alt_factors",
                "treatment",
                3,
                {"topk": 50, "n_drop": 5},
                {"max_single_weight": 0.05},
                alt_factors,
            ),
        ],
    }
