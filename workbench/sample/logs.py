"""Log trace directories of the sample installation (spec §4).

Real log pickles hold RD-Agent objects; here they hold plain dicts, lists and strings only, so
that nothing in the sample needs RD-Agent classes to be read. Session snapshots are opaque bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from workbench.rdagent.files.returns import RETURN_COLUMNS
from workbench.rdagent.installation import LOG_RELPATH
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


@dataclass(frozen=True)
class StepContext:
    """One step of one loop: what every step writer needs, passed as one value."""

    run: RunPlan
    loop: LoopPlan
    step_dir: str  # `log/<run>/Loop_<n>/<step>`, relative to `out`
    pid: str
    start: datetime
    end: datetime
    metrics: dict[str, float] | None  # the loop's qlib metrics; None without results

    def tag_dir(self, tag: str, *, pid: str | None = None) -> str:
        """`<step_dir>/<tag>/<pid>`: RD-Agent's tag folder, one per writing process."""
        return f"{self.step_dir}/{tag}/{self.pid if pid is None else pid}"

    def sub_paths(self) -> list[str]:
        """Registry spellings of the loop's sub-workspaces, as the coder and runner log them."""
        return [workspace_registry_path(self.run.path_style, sub.dir_id) for sub in self.loop.subs]


class LogWriter:
    """Writes `log/<run>/` for one run: tag pickles, session snapshots, abort reason."""

    def __init__(self, disk: Disk, *, seed: int) -> None:
        self.disk = disk
        self.seed = seed
        self._steps: dict[str, Callable[[StepContext], None]] = {
            "direct_exp_gen": self._step_direct_exp_gen,
            "coding": self._step_coding,
            "running": self._step_running,
            "feedback": self._step_feedback,
        }

    def write_run(self, run: RunPlan, results: dict[int, dict[str, float] | None]) -> str:
        """Write the whole trace directory; return its path relative to `out`."""
        rel = (LOG_RELPATH / run.log_name).as_posix()
        rng = np.random.default_rng([self.seed, 8_000_000 + int(run.task_run_id[:6], 16)])
        self._pickle(
            f"{rel}/scenario/{run.pid}",
            run.started,
            {"scenario": "QuantRDLoop", "RDLOOP_SETTINGS": {"step_n": None, "loop_n": len(run.loops)}},
        )
        for loop in run.loops:
            self._write_loop(run, loop, rel, rng, results.get(loop.loop_id))
        if run.abort is not None:
            text = json.dumps(run.abort, ensure_ascii=False, indent=2)
            self.disk.put(f"{rel}/abort_reason.json", text.encode(), run.ended)
        return rel

    def _pickle(self, tag_dir: str, at: datetime, obj: object) -> None:
        self.disk.put(f"{tag_dir}/{log_stamp(at)}.pkl", small_pickle(obj), at)

    def _write_loop(
        self,
        run: RunPlan,
        loop: LoopPlan,
        rel: str,
        rng: np.random.Generator,
        metrics: dict[str, float] | None,
    ) -> None:
        pid = str(run.pid)
        for index, (step, start, end) in enumerate(loop.step_times):
            context = StepContext(run, loop, f"{rel}/Loop_{loop.loop_id}/{step}", pid, start, end, metrics)
            self._steps[step](context)
            if loop.loop_id == 0:
                # Every step of every loop has time_info in reality; loop 0 is enough to show it.
                self._pickle(
                    context.tag_dir("time_info"),
                    end,
                    {"start_time": start.isoformat(), "end_time": end.isoformat()},
                )
            session = opaque_bytes(rng, 512 + int(rng.integers(0, 512)))
            self.disk.put(
                f"{rel}/__session__/{loop.loop_id}/{index}_{STEPS[index]}",
                session,
                end + timedelta(milliseconds=5),
            )

    def _step_direct_exp_gen(self, step: StepContext) -> None:
        loop = step.loop
        self._pickle(
            step.tag_dir("hypothesis generation"),
            step.start + timedelta(seconds=20),
            {
                "hypothesis": loop.hypothesis,
                "reason": "derived from the previous feedback",
                "action": loop.action,
            },
        )
        tasks = _factor_tasks(loop) if loop.action == "factor" else _model_tasks(loop)
        self._pickle(step.tag_dir("experiment generation"), step.end - timedelta(seconds=3), tasks)
        if loop.loop_id == 0:
            self._pickle(
                step.tag_dir("debug_llm"),
                step.start + timedelta(seconds=10),
                {
                    "system": _PROMPT * 4,
                    "user": loop.hypothesis,
                    "resp": json.dumps(tasks, ensure_ascii=False),
                },
            )

    def _step_coding(self, step: StepContext) -> None:
        loop = step.loop
        if loop.loop_id == 0:
            self._pickle(
                step.tag_dir("evo_loop_0"),
                step.start + timedelta(seconds=30),
                {"evolving_round": 0, "feedback": "code executed"},
            )
        self._pickle(
            step.tag_dir("coder result"),
            step.end,
            {
                "sub_workspace_list": step.sub_paths(),
                "failed": loop.status == "failed",
                "error": loop.error_message,
            },
        )

    def _step_running(self, step: StepContext) -> None:
        loop, metrics, style = step.loop, step.metrics, step.run.path_style
        experiment = loop.experiment
        ws_path = workspace_registry_path(style, experiment.dir_id) if experiment is not None else None
        child = f"{step.pid}-{int(step.pid) + 17}"  # Qlib runs in a child process
        self._pickle(
            step.tag_dir("runner result", pid=child),
            step.end,
            {
                "experiment_workspace": ws_path,
                "sub_workspace_list": step.sub_paths(),
                "result": None if metrics is None else {k: float(v) for k, v in metrics.items()},
            },
        )
        if loop.loop_id == 0:
            self._pickle(
                step.tag_dir("Qlib_execute_log", pid=child),
                step.end - timedelta(seconds=1),
                f"qrun conf.yaml\n[{step.pid}] workflow finished, recorder saved\n",
            )
        if metrics is not None and loop.loop_id == 0:
            self._pickle(
                step.tag_dir("Quantitative Backtesting Chart"),
                step.end,
                {
                    "columns": list(RETURN_COLUMNS),
                    "annualized_return": metrics.get("1day.excess_return_with_cost.annualized_return"),
                },
            )

    def _step_feedback(self, step: StepContext) -> None:
        loop = step.loop
        self._pickle(
            step.tag_dir("feedback"),
            step.end,
            {
                "decision": loop.decision,
                "reason": "compared with SOTA on IC and annualized return",
                "observations": f"loop {loop.loop_id} finished",
                "hypothesis_evaluation": "supported" if loop.decision else "not supported",
                "new_hypothesis": loop.hypothesis,
            },
        )


def _factor_tasks(loop: LoopPlan) -> list[dict[str, object]]:
    """The factor tasks the proposal step hands to the coder, one per new factor."""
    return [
        {
            "factor_name": name,
            "factor_description": factor_description(name),
            "factor_formulation": factor_formula(name),
            "variables": factor_variables(name),
        }
        for name in loop.new_factors
    ]


def _model_tasks(loop: LoopPlan) -> list[dict[str, object]]:
    """The single model task of a model loop, described from its planned shape."""
    hidden, layers, dropout = loop.model_shape
    return [
        {
            "name": "Net",
            "model_type": "TimeSeries" if layers > 2 else "Tabular",
            "description": f"MLP, {layers} layers of {hidden}, dropout {dropout}",
        }
    ]
