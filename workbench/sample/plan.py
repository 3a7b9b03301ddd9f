"""The plan of a sample installation: runs, loops, workspaces, times — pure data, no I/O.

Everything random comes from one `random.Random(seed)` consumed in a fixed order, so the plan
(and therefore every file written from it) is a function of the seed and the knobs only.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from workbench.sample.request import multi_strategy_request

Generation = Literal["v1", "gap", "head"]
Flavor = Literal["v1", "gap", "head_live", "head_backfilled"]
Role = Literal["regular", "killed", "running", "multi_strategy"]
PathStyle = Literal["wsl", "win", "win_lower", "win_fwd"]
WorkspaceKind = Literal["factor_exp", "model_exp", "factor_sub", "model_sub"]
Results = Literal["full", "partial", "none"]
#: A JSON object as RD-Agent writes it (metadata files, registry JSON columns, the manifest).
JsonObject = dict[str, Any]

ERA_STARTS: dict[Generation, datetime] = {
    "v1": datetime(2025, 12, 24, 1, 0, tzinfo=UTC),
    "gap": datetime(2025, 12, 25, 2, 0, tzinfo=UTC),
    "head": datetime(2026, 1, 14, 1, 0, tzinfo=UTC),
}
ERA_SPANS: dict[Generation, timedelta] = {
    "v1": timedelta(hours=20),
    "gap": timedelta(days=19),
    "head": timedelta(days=26),
}
SPECIAL_STARTS: dict[Role, datetime] = {
    "multi_strategy": datetime(2026, 2, 9, 3, 0, tzinfo=UTC),
    "killed": datetime(2026, 2, 10, 2, 0, tzinfo=UTC),
    "running": datetime(2026, 2, 11, 1, 0, tzinfo=UTC),
}
STEPS = ("direct_exp_gen", "coding", "running", "feedback")
FACTOR_PREFIXES = (
    "Momentum",
    "Reversal",
    "Volatility",
    "Volume_Price_Corr",
    "ELG_Share_In_Main",
    "Turnover_Skew",
    "Amount_Ratio",
    "High_Low_Range",
    "Close_Position",
    "MF_Net_Inflow_Ratio",
    "PE_Relative",
    "PB_Zscore",
)
FACTOR_WINDOWS = (5, 10, 20, 60)
HYPOTHESES = (
    "短期反转效应在高换手股票中更显著 (short-term reversal is stronger for high-turnover names)",
    "资金流入持续性可以预测未来收益 (persistent money inflow predicts returns)",
    "Volatility-scaled momentum improves the IC of plain momentum",
    "A deeper MLP captures non-linear interactions between volume and price factors",
    "Adding dropout reduces over-fitting of the model on the validation segment",
    "价量相关性的变化反映主力资金行为 (changes in price-volume correlation reflect main-force trading)",
)


@dataclass
class WorkspacePlan:
    """One workspace directory (registered or not)."""

    dir_id: str
    kind: WorkspaceKind
    ordinal: int
    exists: bool = True
    results: Results = "none"
    factor_name: str | None = None
    factor_window: int = 5


@dataclass
class LoopPlan:
    """One loop of one run, with its workspaces and what its files should say."""

    task_run_id: str
    loop_id: int
    action: Literal["factor", "model"]
    status: Literal["success", "failed", "running"]
    generation: Generation
    started: datetime
    ended: datetime
    step_times: list[tuple[str, datetime, datetime]]
    error_type: str | None = None
    error_message: str | None = None
    decision: bool | None = None
    hypothesis: str = ""
    experiment: WorkspacePlan | None = None
    subs: list[WorkspacePlan] = field(default_factory=list)
    new_factors: list[str] = field(default_factory=list)
    factor_set: tuple[str, ...] = ()
    sota_model: bool = False
    alpha: float = 0.0005
    nan_metric: str | None = None
    strategy: JsonObject | None = None
    tags: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)
    delete_after_register: list[str] = field(default_factory=list)
    bundle_id: str | None = None
    model_shape: tuple[int, int, float] = (64, 2, 0.1)
    multiple_mlruns: bool = False

    @property
    def key(self) -> str:
        return f"{self.task_run_id}/{self.loop_id}"


@dataclass
class RunPlan:
    """One RD-Agent run (one log directory)."""

    task_run_id: str
    generation: Generation
    flavor: Flavor
    role: Role
    status: str | None
    log_name: str
    started: datetime
    ended: datetime
    path_style: PathStyle
    pid: int
    loops: list[LoopPlan] = field(default_factory=list)
    params: JsonObject | None = None
    abort: JsonObject | None = None
    backfill_time: datetime | None = None


@dataclass
class SamplePlan:
    """The whole installation."""

    seed: int
    runs: list[RunPlan]
    duplicate_of: RunPlan | None
    orphan_loop: LoopPlan | None
    bundle_loop: LoopPlan | None
    orphan_bundle_id: str | None


@dataclass(frozen=True)
class Knobs:
    """Size and content options of `generate_sample` (see its docstring)."""

    task_runs: int
    loops_per_run: int
    trading_days: int
    heavy_bytes: int
    instruments: int
    multi_strategy: bool
    quirks: bool
    signals_topk: int
    registry_generation: str


class _Ids:
    """Seeded uuid4 / ordinal source; the single owner of the plan's randomness."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ordinal = 0

    def hex(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4).hex)

    def dashed(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_ordinal(self) -> int:
        self.ordinal += 1
        return self.ordinal

    def jitter(self, *, minutes: int) -> timedelta:
        return timedelta(
            minutes=self.rng.randrange(minutes),
            seconds=self.rng.randrange(60),
            microseconds=self.rng.randrange(1, 10**6),
        )


def log_dir_name(started: datetime) -> str:
    """`log/<YYYY-MM-DD_HH-MM-SS-ffffff>` name of a run started at `started` (UTC)."""
    return started.strftime("%Y-%m-%d_%H-%M-%S-%f")


def split_generations(task_runs: int) -> list[Generation]:
    """About 20 % V1, 20 % gap era, the rest HEAD; at least one HEAD run."""
    n_v1 = max(1, round(task_runs * 0.2)) if task_runs >= 2 else 0
    n_gap = max(1, round(task_runs * 0.2)) if task_runs >= 3 else 0
    n_head = task_runs - n_v1 - n_gap
    counts: tuple[tuple[Generation, int], ...] = (("v1", n_v1), ("gap", n_gap), ("head", n_head))
    return [generation for generation, count in counts for _ in range(count)]


def _flavor(generation: Generation, head_index: int) -> Flavor:
    if generation != "head":
        return generation
    return "head_backfilled" if head_index % 2 == 0 else "head_live"


def _path_style(generation: Generation, head_index: int) -> PathStyle:
    if generation == "gap":
        return "win"
    if generation == "head" and head_index % 5 == 4:
        return "win"
    return "wsl"


def _new_factor_names(ids: _Ids, used: set[str], count: int) -> list[tuple[str, int]]:
    names = []
    for _ in range(count):
        prefix = ids.rng.choice(FACTOR_PREFIXES)
        window = ids.rng.choice(FACTOR_WINDOWS)
        name = f"{prefix}_{window}D"
        suffix = 2
        while name in used:
            name = f"{prefix}_{window}D_v{suffix}"
            suffix += 1
        used.add(name)
        names.append((name, window))
    return names


def _step_times(ids: _Ids, start: datetime, steps: int) -> list[tuple[str, datetime, datetime]]:
    times = []
    cursor = start
    for step in STEPS[:steps]:
        duration = timedelta(minutes=ids.rng.uniform(1.0, 12.0))
        times.append((step, cursor, cursor + duration))
        cursor = cursor + duration + timedelta(seconds=ids.rng.uniform(0.5, 3.0))
    return times


class _RunBuilder:
    """Builds the loops of one run, carrying the run's SOTA factor set and model state."""

    def __init__(self, ids: _Ids, run: RunPlan, *, force_failed_loop: bool) -> None:
        self.ids = ids
        self.run = run
        self.force_failed_loop = force_failed_loop
        self.sota_factors: list[str] = []
        self.sota_model = False
        self.used_names: set[str] = set()
        self.cursor = run.started + timedelta(seconds=ids.rng.uniform(20, 90))

    def add_loop(
        self,
        *,
        action: Literal["factor", "model"],
        status: Literal["success", "failed", "running"],
        running_results: Results = "none",
    ) -> LoopPlan:
        loop_id = len(self.run.loops)
        steps = 4 if status == "success" else (2 if status == "failed" else 3)
        step_times = _step_times(self.ids, self.cursor, steps)
        loop = LoopPlan(
            task_run_id=self.run.task_run_id,
            loop_id=loop_id,
            action=action,
            status=status,
            generation=self.run.generation,
            started=step_times[0][2],
            ended=step_times[-1][2],
            step_times=step_times,
            hypothesis=self.ids.rng.choice(HYPOTHESES),
            alpha=self.ids.rng.uniform(0.0002, 0.0012),
        )
        self.cursor = step_times[-1][2] + timedelta(seconds=self.ids.rng.uniform(2, 30))
        if action == "factor":
            self._plan_factor_loop(loop, running_results)
        else:
            self._plan_model_loop(loop, running_results)
        if status == "failed":
            loop.error_type = "FactorEmptyError" if action == "factor" else "ModelEmptyError"
            loop.error_message = (
                "No factor is successfully implemented in this loop."
                if action == "factor"
                else "No model is successfully implemented in this loop."
            )
        self.run.loops.append(loop)
        return loop

    def _experiment(self, kind: WorkspaceKind, loop: LoopPlan, running_results: Results) -> None:
        if loop.status == "failed":
            return
        results: Results = "full" if loop.status == "success" else running_results
        loop.experiment = WorkspacePlan(self.ids.hex(), kind, self.ids.next_ordinal(), results=results)

    def _plan_factor_loop(self, loop: LoopPlan, running_results: Results) -> None:
        new = _new_factor_names(self.ids, self.used_names, self.ids.rng.randint(1, 3))
        loop.new_factors = [name for name, _ in new]
        loop.sota_model = self.sota_model
        for name, window in new:
            sub = WorkspacePlan(self.ids.hex(), "factor_sub", self.ids.next_ordinal(), factor_name=name)
            sub.factor_window = window
            sub.results = "none" if loop.status == "failed" else "full"
            loop.subs.append(sub)
        self._experiment("factor_exp", loop, running_results)
        loop.factor_set = tuple(sorted(set(self.sota_factors) | set(loop.new_factors)))
        if loop.status == "success":
            loop.decision = loop.loop_id == 0 or self.ids.rng.random() < 0.5
            if loop.decision:
                self.sota_factors = sorted(set(self.sota_factors) | set(loop.new_factors))

    def _plan_model_loop(self, loop: LoopPlan, running_results: Results) -> None:
        loop.model_shape = (
            self.ids.rng.choice((32, 64, 128, 256)),
            self.ids.rng.randint(1, 4),
            self.ids.rng.choice((0.0, 0.1, 0.2, 0.3)),
        )
        loop.subs.append(WorkspacePlan(self.ids.hex(), "model_sub", self.ids.next_ordinal()))
        self._experiment("model_exp", loop, running_results)
        loop.factor_set = tuple(self.sota_factors)
        if loop.status == "success":
            loop.decision = self.ids.rng.random() < 0.5
            if loop.decision:
                self.sota_model = True

    def next_status(self, loop_id: int) -> Literal["success", "failed"]:
        if loop_id == 0:
            return "success"
        if self.force_failed_loop and loop_id == 2:
            return "failed"
        return "failed" if self.ids.rng.random() < 0.2 else "success"


def _new_run(
    ids: _Ids,
    *,
    generation: Generation,
    flavor: Flavor,
    role: Role,
    started: datetime,
    path_style: PathStyle,
) -> RunPlan:
    return RunPlan(
        task_run_id=ids.hex(),
        generation=generation,
        flavor=flavor,
        role=role,
        status="success",
        log_name=log_dir_name(started),
        started=started,
        ended=started,
        path_style=path_style,
        pid=ids.rng.randrange(2000, 60000),
    )


def _finish_run(run: RunPlan, builder: _RunBuilder) -> None:
    run.ended = builder.cursor + timedelta(seconds=5)
    if run.flavor in ("head_backfilled", "gap") or run.role == "multi_strategy":
        run.backfill_time = run.ended + timedelta(hours=2, minutes=17, microseconds=424242)


def _regular_runs(ids: _Ids, knobs: Knobs) -> list[RunPlan]:
    generations = split_generations(knobs.task_runs)
    counts = {gen: generations.count(gen) for gen in ("v1", "gap", "head")}
    seen = {"v1": 0, "gap": 0, "head": 0}
    runs = []
    for position, generation in enumerate(generations):
        index = seen[generation]
        seen[generation] += 1
        offset = ERA_SPANS[generation] * index / max(1, counts[generation])
        started = ERA_STARTS[generation] + offset + ids.jitter(minutes=50)
        run = _new_run(
            ids,
            generation=generation,
            flavor=_flavor(generation, index),
            role="regular",
            started=started,
            path_style=_path_style(generation, index),
        )
        if generation != "head":
            run.params = {
                "step_semaphore": 1,
                "workspace_path": "/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace",
                "max_parallel": 1,
                "force_subproc": False,
            }
        builder = _RunBuilder(ids, run, force_failed_loop=position == 0)
        for loop_id in range(knobs.loops_per_run):
            builder.add_loop(
                action="factor" if loop_id % 2 == 0 else "model", status=builder.next_status(loop_id)
            )
        _finish_run(run, builder)
        runs.append(run)
    return runs


def _mark_aborted(run: RunPlan, *, quirks: bool) -> None:
    """Timer stop: the loop in progress stays `running` forever (quirks) or the cut is between loops."""
    run.status = "aborted"
    last = run.loops[-1]
    if quirks and len(run.loops) >= 2 and last.status == "success":
        last.status = "running"
        last.step_times = last.step_times[:2]
        last.ended = last.step_times[-1][2]
        last.decision = None
        if last.experiment is not None:
            last.experiment.results = "none"
        last.tags.append("aborted_in_progress")
    loop_idx = last.loop_id if last.status == "running" else last.loop_id + 1
    step_idx = {str(loop_idx): 2 if last.status == "running" else 0}
    run.abort = {
        "time_utc": run.ended.isoformat(),
        "reason": "Timer timeout",
        "exception_type": "LoopTerminationError",
        "loop_idx": loop_idx,
        "step_idx": step_idx,
        "max_parallel": 1,
        "traceback": 'Traceback (most recent call last):\n  File "rdagent/utils/workflow/loop.py", line 312, '
        'in run\n    raise LoopTerminationError("Timer timeout")\nLoopTerminationError: Timer timeout\n',
    }


def _killed_run(ids: _Ids) -> RunPlan:
    """A run killed by OOM: loop rows exist, the task_runs row was never written."""
    run = _new_run(
        ids,
        generation="head",
        flavor="head_live",
        role="killed",
        started=SPECIAL_STARTS["killed"] + ids.jitter(minutes=30),
        path_style="win_fwd",
    )
    run.status = None
    builder = _RunBuilder(ids, run, force_failed_loop=False)
    builder.add_loop(action="factor", status="success")
    loop = builder.add_loop(action="model", status="running")
    loop.tags.append("killed_in_progress")
    _finish_run(run, builder)
    return run


def _running_run(ids: _Ids) -> RunPlan:
    """The newest run, still going: its last loop has written qlib_res.csv but not ret.pkl yet."""
    run = _new_run(
        ids,
        generation="head",
        flavor="head_live",
        role="running",
        started=SPECIAL_STARTS["running"] + ids.jitter(minutes=30),
        path_style="wsl",
    )
    run.status = "running"
    builder = _RunBuilder(ids, run, force_failed_loop=False)
    builder.add_loop(action="factor", status="success")
    builder.add_loop(action="model", status="success")
    loop = builder.add_loop(action="factor", status="running", running_results="partial")
    loop.tags.append("partial_results")
    _finish_run(run, builder)
    return run


STRATEGY_ALPHAS = (0.0002, 0.0006, 0.0004, 0.0008)


def _multi_strategy_run(ids: _Ids) -> RunPlan:
    """One task run, one model loop per strategy version (control first), all with results."""
    run = _new_run(
        ids,
        generation="head",
        flavor="head_backfilled",
        role="multi_strategy",
        started=SPECIAL_STARTS["multi_strategy"] + ids.jitter(minutes=30),
        path_style="wsl",
    )
    request = multi_strategy_request()
    run.params = {"experiment_request": request}
    builder = _RunBuilder(ids, run, force_failed_loop=False)
    for strategy in request["strategies"]:
        builder.sota_factors = [
            f["name"] for f in strategy["factor_set"]["factors"] if f["source"] != "qlib_alpha158"
        ]
        loop = builder.add_loop(action="model", status="success")
        loop.strategy = strategy
        loop.alpha = STRATEGY_ALPHAS[strategy["loop_id"] % len(STRATEGY_ALPHAS)]
        loop.decision = strategy["role"] == "treatment" and strategy["name"] == "alt_factors"
        loop.tags.append(f"strategy:{strategy['role']}")
    _finish_run(run, builder)
    return run


def _orphan_loop(ids: _Ids, like: RunPlan) -> LoopPlan:
    """A finished factor experiment whose run never reached the registry (registry disabled)."""
    run = _new_run(
        ids,
        generation="head",
        flavor="head_live",
        role="regular",
        started=like.started + timedelta(hours=3),
        path_style="wsl",
    )
    run.status = None
    builder = _RunBuilder(ids, run, force_failed_loop=False)
    loop = builder.add_loop(action="factor", status="success")
    loop.tags.append("unregistered_workspace")
    return loop


def _successful_with_results(
    runs: list[RunPlan], flavor: Flavor, action: str | None = None
) -> list[LoopPlan]:
    return [
        loop
        for run in runs
        if run.flavor == flavor and run.role == "regular"
        for loop in run.loops
        if loop.experiment is not None
        and loop.experiment.results == "full"
        and (action is None or loop.action == action)
    ]


def _assign_file_quirks(runs: list[RunPlan], *, quirks: bool, keep_clean: LoopPlan | None) -> None:
    """NaN metrics always (they are normal); broken files and deletions only with quirks."""
    for flavor in ("v1", "head_backfilled", "gap"):
        loops = _successful_with_results(runs, flavor)
        if loops:
            loops[0].nan_metric = "ICIR"
    if not quirks:
        return
    v1 = _successful_with_results(runs, "v1")
    if len(v1) >= 2:
        gone = v1[-1]
        assert gone.experiment is not None  # `_successful_with_results` only returns loops with one
        gone.experiment.exists = False
        gone.tags.append("workspace_dir_deleted")
    head = [loop for loop in _successful_with_results(runs, "head_backfilled") if loop is not keep_clean]
    gap = _successful_with_results(runs, "gap")
    candidates = head + gap
    targets = (
        ("feedback.json", "truncated_json"),
        ("factor_meta.json", "non_utf8"),
        ("ret.pkl", "truncated_pickle"),
        ("signals.json", "deleted_after_register"),
    )
    for offset, (name, kind) in enumerate(targets):
        if kind == "deleted_after_register":
            pool = head
        elif name == "factor_meta.json":
            pool = [loop for loop in candidates if loop.action == "factor"]
        else:
            pool = candidates
        if not pool:
            continue
        loop = pool[(1 + offset) % len(pool)]
        if kind == "deleted_after_register":
            loop.delete_after_register.append(name)
            loop.tags.append("artifact_file_deleted")
            continue
        if name in loop.broken:
            continue
        loop.broken[name] = kind
        loop.tags.append(f"broken:{name}")


def _assign_misc(ids: _Ids, runs: list[RunPlan]) -> None:
    """Occasional NaN metrics and multi-run `mlruns/` (GPU→CPU re-run)."""
    for run in runs:
        for loop in run.loops:
            if loop.experiment is None:
                continue
            if loop.nan_metric is None and ids.rng.random() < 0.03:
                loop.nan_metric = "Rank ICIR"
            if loop.action == "model" and ids.rng.random() < 0.15:
                loop.multiple_mlruns = True
    model_loops = [
        loop
        for run in runs
        if run.role == "regular"
        for loop in run.loops
        if loop.action == "model"
        and loop.experiment is not None
        and loop.experiment.exists
        and loop.experiment.results == "full"
    ]
    if model_loops:
        model_loops[0].multiple_mlruns = True  # at least one, so the case is always there


def build_plan(seed: int, knobs: Knobs) -> SamplePlan:
    """The complete, deterministic plan for one seed and set of knobs."""
    ids = _Ids(seed)
    runs = _regular_runs(ids, knobs)
    head_regular = [run for run in runs if run.generation == "head"]
    _mark_aborted(head_regular[-1], quirks=knobs.quirks)
    if knobs.multi_strategy:
        runs.append(_multi_strategy_run(ids))
    duplicate_of = None
    orphan_loop = None
    orphan_bundle_id = None
    if knobs.quirks:
        runs.append(_killed_run(ids))
        runs.append(_running_run(ids))
        live = [run for run in head_regular if run.flavor == "head_live"]
        duplicate_of = (live or head_regular)[0]
        orphan_loop = _orphan_loop(ids, duplicate_of)
        orphan_bundle_id = ids.dashed()
    bundle_candidates = _successful_with_results(runs, "head_backfilled", "factor")
    bundle_loop = bundle_candidates[0] if bundle_candidates else None
    if bundle_loop is not None:
        bundle_loop.bundle_id = ids.dashed()
    _assign_file_quirks(runs, quirks=knobs.quirks, keep_clean=bundle_loop)
    _assign_misc(ids, runs)
    return SamplePlan(
        seed=seed,
        runs=runs,
        duplicate_of=duplicate_of,
        orphan_loop=orphan_loop,
        bundle_loop=bundle_loop,
        orphan_bundle_id=orphan_bundle_id,
    )
