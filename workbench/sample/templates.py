"""Template file texts of the sample installation (spec §3.2–§3.4).

RD-Agent copies the same template folder into every experiment workspace, so these files are
byte-identical across workspaces of one era; the archive's de-duplication depends on that.
Generated code (`factor.py`, `model.py`) varies per loop.
"""

from __future__ import annotations

from typing import Literal

Era = Literal["v1", "gap", "head"]

ALPHA158_SUBSET: tuple[tuple[str, str], ...] = (
    ("RESI5", "Resi($close, 5)/$close"),
    (
        "WVMA5",
        "Std(Abs($close/Ref($close, 1)-1)*$volume, 5)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, 5)+1e-12)",
    ),
    ("RSQR5", "Rsquare($close, 5)"),
    ("KLEN", "($high-$low)/$open"),
    ("RSQR10", "Rsquare($close, 10)"),
    ("CORR5", "Corr($close, Log($volume+1), 5)"),
    ("CORD5", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 5)"),
    ("CORR10", "Corr($close, Log($volume+1), 10)"),
    ("ROC60", "Ref($close, 60)/$close"),
    ("RESI10", "Resi($close, 10)/$close"),
    ("VSTD5", "Std($volume, 5)/($volume+1e-12)"),
    ("RSQR60", "Rsquare($close, 60)"),
    ("CORR60", "Corr($close, Log($volume+1), 60)"),
    (
        "WVMA60",
        "Std(Abs($close/Ref($close, 1)-1)*$volume, 60)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, 60)+1e-12)",
    ),
    ("STD5", "Std($close, 5)/$close"),
    ("RSQR20", "Rsquare($close, 20)"),
    ("CORD60", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 60)"),
    ("CORD10", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 10)"),
    ("CORR20", "Corr($close, Log($volume+1), 20)"),
    ("KLOW", "(Less($open, $close)-$low)/$open"),
)

_README = """# Qlib experiment workspace

This folder is created by RD-Agent from the Qlib scenario template.
`qrun` runs the YAML configuration; `read_exp_res.py` collects the results into
`qlib_res.csv`, `ret.pkl`, `ret_schema.*` and `signals.*`.
"""

_READ_EXP_RES = """import pickle
from pathlib import Path

import pandas as pd
import qlib
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

qlib.init()
from qlib.workflow import R

experiments = R.list_experiments()
latest_recorder = None
for experiment in experiments:
    for recorder_id in R.list_recorders(experiment_name=experiment):
        recorder = R.get_recorder(recorder_id=recorder_id, experiment_name=experiment)
        if latest_recorder is None or recorder.info["end_time"] > latest_recorder.info["end_time"]:
            latest_recorder = recorder

metrics = pd.Series(latest_recorder.list_metrics())
metrics.to_csv("qlib_res.csv")
ret_data_frame = latest_recorder.load_object("portfolio_analysis/report_normal_1day.pkl")
ret_data_frame.to_pickle("ret.pkl")
"""

_CUSTOM_STRATEGY = '''from qlib.contrib.strategy import TopkDropoutStrategy


class EnhancedTopkDropoutStrategy(TopkDropoutStrategy):
    """Top-k dropout with a cap on single-name weight."""

    def __init__(self, *, max_single_weight: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.max_single_weight = max_single_weight
'''

_CUSTOM_STRATEGY_BACKUP = _CUSTOM_STRATEGY.replace("Top-k dropout", "Top-k dropout (backup 2026-01-13)")


def _alpha158_feature_block(indent: str) -> str:
    exprs = ", ".join(f'"{expr}"' for _, expr in ALPHA158_SUBSET)
    names = ", ".join(f'"{name}"' for name, _ in ALPHA158_SUBSET)
    return f"{indent}feature:\n{indent}    - [{exprs}]\n{indent}    - [{names}]\n"


def _factor_conf(*, loader: str, dynamic: bool, sota_model: bool) -> str:
    dynamic_line = "                dynamic_path: combined_factors_df.parquet\n" if dynamic else ""
    model = (
        "        class: GeneralPTNN\n        module_path: qlib.contrib.model.pytorch_general_nn\n"
        if sota_model
        else "        class: LGBModel\n        module_path: qlib.contrib.model.gbdt\n"
    )
    return (
        "qlib_init:\n"
        '    provider_uri: "~/.qlib/qlib_data/cn_data"\n'
        "    region: cn\n"
        "market: &market csi300\n"
        "benchmark: &benchmark SH000300\n"
        "data_handler_config: &data_handler_config\n"
        "    start_time: 2018-01-01\n"
        "    end_time: 2025-12-31\n"
        "    fit_start_time: 2018-01-01\n"
        "    fit_end_time: 2021-12-31\n"
        "    instruments: *market\n"
        "    data_loader:\n"
        f"        class: {loader}\n"
        "        kwargs:\n"
        f"{dynamic_line}"
        "            alpha158_config:\n"
        f"{_alpha158_feature_block('                ')}"
        "port_analysis_config: &port_analysis_config\n"
        "    strategy:\n"
        "        class: EnhancedTopkDropoutStrategy\n"
        "        module_path: custom_strategy\n"
        "        kwargs:\n"
        "            signal: <PRED>\n"
        "            topk: 50\n"
        "            n_drop: 5\n"
        "    backtest:\n"
        "        start_time: 2024-07-01\n"
        "        end_time: 2025-12-31\n"
        "        account: 100000000\n"
        "        benchmark: *benchmark\n"
        "        exchange_kwargs:\n"
        "            limit_threshold: 0.095\n"
        "            deal_price: close\n"
        "            open_cost: 0.0005\n"
        "            close_cost: 0.0015\n"
        "            min_cost: 5\n"
        "task:\n"
        "    model:\n"
        f"{model}"
        "    dataset:\n"
        "        class: DatasetH\n"
        "        module_path: qlib.data.dataset\n"
        "        kwargs:\n"
        "            handler:\n"
        "                class: DataHandlerLP\n"
        "                module_path: qlib.data.dataset.handler\n"
        "                kwargs: *data_handler_config\n"
        "            segments:\n"
        "                train: [2018-01-01, 2021-12-31]\n"
        "                valid: [2022-01-01, 2024-06-30]\n"
        "                test: [2024-07-01, 2025-12-31]\n"
        "    record:\n"
        "        - class: SignalRecord\n"
        "          module_path: qlib.workflow.record_temp\n"
        "        - class: SigAnaRecord\n"
        "          module_path: qlib.workflow.record_temp\n"
        "          kwargs:\n"
        "            ana_long_short: False\n"
        "        - class: PortAnaRecord\n"
        "          module_path: qlib.workflow.record_temp\n"
        "          kwargs:\n"
        "            config: *port_analysis_config\n"
    )


def _model_conf(*, factors: Literal["baseline", "sota"], standalone: bool, backup: str = "") -> str:
    loader = "CombinedAlpha158DynamicFactorsLoader" if factors == "sota" else "QlibDataLoader"
    note = f"# backup {backup}\n" if backup else ""
    standalone_line = "    standalone: true\n" if standalone else ""
    return (
        f"{note}"
        "qlib_init:\n"
        '    provider_uri: "~/.qlib/qlib_data/cn_data"\n'
        "    region: cn\n"
        "market: &market csi300\n"
        "benchmark: &benchmark SH000300\n"
        f"{standalone_line}"
        "data_handler_config: &data_handler_config\n"
        "    start_time: 2018-01-01\n"
        "    end_time: 2025-12-31\n"
        "    instruments: *market\n"
        "    data_loader:\n"
        f"        class: {loader}\n"
        "task:\n"
        "    model:\n"
        "        class: GeneralPTNN\n"
        "        module_path: qlib.contrib.model.pytorch_general_nn\n"
        "        kwargs:\n"
        "            n_epochs: {{ n_epochs }}\n"
        "            lr: {{ lr }}\n"
        "            early_stop: {{ early_stop }}\n"
        "            batch_size: {{ batch_size }}\n"
        "            weight_decay: {{ weight_decay }}\n"
        "            pt_model_uri: model.model_cls\n"
        "{% if num_timesteps %}\n"
        "            step_len: {{ num_timesteps }}\n"
        "{% endif %}\n"
        "    dataset:\n"
        "        class: {{ dataset_cls | default('DatasetH') }}\n"
        "        module_path: qlib.data.dataset\n"
        "        kwargs:\n"
        "            segments:\n"
        "                train: [2018-01-01, 2021-12-31]\n"
        "                valid: [2022-01-01, 2024-06-30]\n"
        "                test: [2024-07-01, 2025-12-31]\n"
    )


def factor_template_files(era: Era) -> dict[str, bytes]:
    """Files copied into every factor-loop experiment workspace of one era."""
    files = {
        "README.md": _README,
        "__init__.py": "",
        "conf_baseline.yaml": _factor_conf(loader="QlibDataLoader", dynamic=False, sota_model=False),
        "conf_combined_factors.yaml": _factor_conf(
            loader="CombinedAlpha158DynamicFactorsLoader", dynamic=True, sota_model=False
        ),
        "conf_combined_factors_dynamic.yaml": _factor_conf(
            loader="CombinedAlpha158DynamicFactorsLoader", dynamic=True, sota_model=False
        ).replace("csi300", "csi300  # dynamic"),
        "conf_combined_factors_sota_model.yaml": _factor_conf(
            loader="CombinedAlpha158DynamicFactorsLoader", dynamic=True, sota_model=True
        ),
        "conf_baseline_20251209_backup.yaml": "# backup 2025-12-09\n"
        + _factor_conf(loader="QlibDataLoader", dynamic=False, sota_model=False),
        "custom_strategy.py": _CUSTOM_STRATEGY,
        "read_exp_res.py": _READ_EXP_RES,
    }
    if era == "head":
        files["custom_strategy_backup_20260113.py"] = _CUSTOM_STRATEGY_BACKUP
    return {name: text.encode() for name, text in files.items()}


def model_template_files(era: Era) -> dict[str, bytes]:
    """Files copied into every model-loop experiment workspace of one era (YAMLs stay Jinja)."""
    files = {
        "README.md": _README,
        "read_exp_res.py": _READ_EXP_RES,
        "conf_baseline_factors_model.yaml": _model_conf(factors="baseline", standalone=False),
        "conf_sota_factors_model.yaml": _model_conf(factors="sota", standalone=False),
        "conf_baseline_factors_model_standalone.yaml": _model_conf(factors="baseline", standalone=True),
        "conf_baseline_factors_model.backup_20251205.yaml": _model_conf(
            factors="baseline", standalone=False, backup="2025-12-05"
        ),
    }
    if era != "v1":
        files["conf_baseline_factors_model_20251209_backup.yaml"] = _model_conf(
            factors="baseline", standalone=False, backup="2025-12-09"
        )
    return {name: text.encode() for name, text in files.items()}


def pycache_bytes(name: str) -> bytes:
    """A stand-in `.pyc` (magic number of CPython 3.11 + padding); never imported."""
    return b"\xa7\r\r\n" + b"\x00" * 12 + f"compiled:{name}".encode() + b"\x00" * 48


def factor_code(name: str, *, window: int, variant: int) -> bytes:
    """Generated `factor.py`: a no-argument `calculate_<name>()` per the prompt contract (§3.4)."""
    ops = ("mean", "std", "max", "min")
    op = ops[variant % len(ops)]
    return (
        "import numpy as np\n"
        "import pandas as pd\n\n\n"
        f"def calculate_{name}():\n"
        f'    """{name}: rolling {op} over {window} trading days."""\n'
        '    df = pd.read_hdf("daily_pv.h5", key="data")\n'
        '    close = df["$close"].unstack("instrument")\n'
        f"    value = close.pct_change().rolling({window}).{op}()\n"
        f'    result = value.stack().to_frame("{name}")\n'
        '    result.index.names = ["datetime", "instrument"]\n'
        '    result.to_hdf("result.h5", key="data")\n\n\n'
        'if __name__ == "__main__":\n'
        f"    calculate_{name}()\n"
    ).encode()


def model_code(*, hidden: int, layers: int, dropout: float) -> bytes:
    """Generated `model.py` for the Qlib `GeneralPTNN` runner (`model_cls`)."""
    return (
        "import torch\n"
        "from torch import nn\n\n\n"
        "class Net(nn.Module):\n"
        f'    """MLP with {layers} hidden layers of width {hidden}."""\n\n'
        "    def __init__(self, num_features, num_timesteps=None):\n"
        "        super().__init__()\n"
        "        blocks = []\n"
        "        width = num_features\n"
        f"        for _ in range({layers}):\n"
        f"            blocks += [nn.Linear(width, {hidden}), nn.ReLU(), nn.Dropout({dropout})]\n"
        f"            width = {hidden}\n"
        "        blocks.append(nn.Linear(width, 1))\n"
        "        self.net = nn.Sequential(*blocks)\n\n"
        "    def forward(self, x):\n"
        "        return self.net(x).squeeze(-1)\n\n\n"
        "model_cls = Net\n"
    ).encode()


SOURCE_DATA_README = (
    b"# factor_implementation_source_data\n\n"
    b"daily_pv.h5: daily price/volume panel (key `data`, index (datetime, instrument)).\n"
)

SELF_CHECK_PY = b'''"""Validates the bundle manifest; exit 0 OK, 2..9 failures."""
import json
import sys
from pathlib import Path

root = Path(__file__).parent
manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
for key in ("factor_entry_relpath", "model_weight_relpath", "config_relpath"):
    rel = manifest["primary_assets"].get(key)
    if rel and not (root / rel).exists():
        sys.exit(3)
sys.exit(0)
'''

FACTOR_ENTRY_ALPHA158 = b'''"""Generated loader: hard-coded pandas implementation of the 20 Alpha158 columns."""
import pandas as pd

COLUMNS = ["RESI5", "WVMA5", "RSQR5", "KLEN", "RSQR10", "CORR5", "CORD5", "CORR10", "ROC60", "RESI10",
           "VSTD5", "RSQR60", "CORR60", "WVMA60", "STD5", "RSQR20", "CORD60", "CORD10", "CORR20", "KLOW"]


def compute(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    out["KLEN"] = (df["$high"] - df["$low"]) / df["$open"]
    return out
'''
