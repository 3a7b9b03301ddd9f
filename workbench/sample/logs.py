"""Log trace directories of the sample installation (spec §4).

Real log pickles hold RD-Agent objects; here they hold plain dicts, lists and strings only, so
that nothing in the sample needs RD-Agent classes to be read. Session snapshots are opaque bytes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np

from workbench.sample.metadata import factor_description, factor_formula, factor_variables
from workbench.sample.plan import STEPS, LoopPlan, RunPlan
from workbench.sample.results import opaque_bytes, small_pickle
from workbench.sample.workspaces import Disk, workspace_registry_path

_PROMPT = (
    "You are a quantitative researcher. Propose the next hypothesis for the Qlib scenario, "
    "given the SOTA factors, the last feedback and the following experiment history.\n"
)


def log_stamp(moment: datetime) -> str:
    """File-name timestamp `YYYY-MM-DD_HH-MM-SS-ffffff` of log pickles."""
    return moment.strftime("%Y-%m-%d_%H-%M-%S-%f")


class LogWriter:
    """Writes `log/<run>/` for one run: tag pickles, session snapshots, abort reason."""

    def __init__(self, disk: Disk, *, seed: int) -> None:
        self.disk = disk
        self.seed = seed

    def write_run(self, run: RunPlan, results: dict[int, dict[str, float] | None]) -> str:
        """Write the whole trace directory; return its path relative to `out`."""
        rel = f"log/{run.log_name}"
        rng = np.random.default_rng([self.seed, 8_000_000 + int(run.task_run_id[:6], 16)])
        self._pickle(
            rel,
            f"scenario/{run.pid}",
            run.started,
            {"scenario": "QuantRDLoop", "RDLOOP_SETTINGS": {"step_n": None, "loop_n": len(run.loops)}},
        )
        for loop in run.loops:
            self._write_loop(run, loop, rel, rng, results.get(loop.loop_id))
        if run.abort is not None:
            text = json.dumps(run.abort, ensure_ascii=False, indent=2)
            self.disk.put(f"{rel}/abort_reason.json", text.encode(), run.ended)
        return rel

    def _pickle(self, rel: str, tag_dir: str, at: datetime, obj: object) -> None:
        self.disk.put(f"{rel}/{tag_dir}/{log_stamp(at)}.pkl", small_pickle(obj), at)

    def _write_loop(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        rng: np.random.Generator,
        metrics: dict[str, float] | None,
    ) -> None:
        base = f"Loop_{loop.loop_id}"
        pid = str(run.pid)
        for index, (step, start, end) in enumerate(loop.step_times):
            writer = getattr(self, f"_step_{step}")
            writer(run, loop, rel, f"{base}/{step}", pid, start, end, metrics)
            if loop.loop_id == 0:
                # Every step of every loop has time_info in reality; loop 0 is enough to show it.
                self._pickle(
                    rel,
                    f"{base}/{step}/time_info/{pid}",
                    end,
                    {"start_time": start.isoformat(), "end_time": end.isoformat()},
                )
            session = opaque_bytes(rng, 512 + int(rng.integers(0, 512)))
            self.disk.put(
                f"{rel}/__session__/{loop.loop_id}/{index}_{STEPS[index]}",
                session,
                end + timedelta(milliseconds=5),
            )

    def _step_direct_exp_gen(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        base: str,
        pid: str,
        start: datetime,
        end: datetime,
        metrics: dict[str, float] | None,
    ) -> None:
        self._pickle(
            rel,
            f"{base}/hypothesis generation/{pid}",
            start + timedelta(seconds=20),
            {
                "hypothesis": loop.hypothesis,
                "reason": "derived from the previous feedback",
                "action": loop.action,
            },
        )
        if loop.action == "factor":
            tasks = [
                {
                    "factor_name": name,
                    "factor_description": factor_description(name),
                    "factor_formulation": factor_formula(name),
                    "variables": factor_variables(name),
                }
                for name in loop.new_factors
            ]
        else:
            hidden, layers, dropout = loop.model_shape
            tasks = [
                {
                    "name": "Net",
                    "model_type": "TimeSeries" if layers > 2 else "Tabular",
                    "description": f"MLP, {layers} layers of {hidden}, dropout {dropout}",
                }
            ]
        self._pickle(rel, f"{base}/experiment generation/{pid}", end - timedelta(seconds=3), tasks)
        if loop.loop_id == 0:
            self._pickle(
                rel,
                f"{base}/debug_llm/{pid}",
                start + timedelta(seconds=10),
                {
                    "system": _PROMPT * 4,
                    "user": loop.hypothesis,
                    "resp": json.dumps(tasks, ensure_ascii=False),
                },
            )

    def _sub_paths(self, run: RunPlan, loop: LoopPlan) -> list[str]:
        return [workspace_registry_path(run.path_style, sub.dir_id) for sub in loop.subs]

    def _step_coding(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        base: str,
        pid: str,
        start: datetime,
        end: datetime,
        metrics: dict[str, float] | None,
    ) -> None:
        if loop.loop_id == 0:
            self._pickle(
                rel,
                f"{base}/evo_loop_0/{pid}",
                start + timedelta(seconds=30),
                {"evolving_round": 0, "feedback": "code executed"},
            )
        self._pickle(
            rel,
            f"{base}/coder result/{pid}",
            end,
            {
                "sub_workspace_list": self._sub_paths(run, loop),
                "failed": loop.status == "failed",
                "error": loop.error_message,
            },
        )

    def _step_running(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        base: str,
        pid: str,
        start: datetime,
        end: datetime,
        metrics: dict[str, float] | None,
    ) -> None:
        experiment = loop.experiment
        ws_path = (
            workspace_registry_path(run.path_style, experiment.dir_id) if experiment is not None else None
        )
        child = f"{pid}-{int(pid) + 17}"
        self._pickle(
            rel,
            f"{base}/runner result/{child}",
            end,
            {
                "experiment_workspace": ws_path,
                "sub_workspace_list": self._sub_paths(run, loop),
                "result": None if metrics is None else {k: float(v) for k, v in metrics.items()},
            },
        )
        if loop.loop_id == 0:
            self._pickle(
                rel,
                f"{base}/Qlib_execute_log/{child}",
                end - timedelta(seconds=1),
                f"qrun conf.yaml\n[{pid}] workflow finished, recorder saved\n",
            )
        if metrics is not None and loop.loop_id == 0:
            self._pickle(
                rel,
                f"{base}/Quantitative Backtesting Chart/{pid}",
                end,
                {
                    "columns": [
                        "account",
                        "return",
                        "total_turnover",
                        "turnover",
                        "total_cost",
                        "cost",
                        "value",
                        "cash",
                        "bench",
                    ],
                    "annualized_return": metrics.get("1day.excess_return_with_cost.annualized_return"),
                },
            )

    def _step_feedback(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        base: str,
        pid: str,
        start: datetime,
        end: datetime,
        metrics: dict[str, float] | None,
    ) -> None:
        self._pickle(
            rel,
            f"{base}/feedback/{pid}",
            end,
            {
                "decision": loop.decision,
                "reason": "compared with SOTA on IC and annualized return",
                "observations": f"loop {loop.loop_id} finished",
                "hypothesis_evaluation": "supported" if loop.decision else "not supported",
                "new_hypothesis": loop.hypothesis,
            },
        )
