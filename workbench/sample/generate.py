"""Sample RD-Agent installation generator, for tests, demos and benchmarks.

`generate_sample(out, seed=...)` writes a tree that follows the input contract
(the RD-Agent formats spec, `rdagent_formats.md`, quirks included): a WAL-mode `registry.sqlite` with
V1, gap-era and HEAD rows, experiment and factor workspaces, log trace directories, a
solidified bundle, a factor catalog, and `sample_manifest.json` with the expected sets.

The output is a pure function of the seed and the knobs: two calls give byte-identical files
(file mtimes are set from the plan too; folders and the registry file keep the time they were
written). Nothing reads the clock or the network.

Command line: `python -m workbench.sample --out DIR --seed N [knobs]` (or `workbench sample`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from workbench.errors import ConfigError
from workbench.rdagent.installation import REGISTRY_RELPATH
from workbench.sample.builder import BuildState, Bundle, InstallationBuilder, LogDir
from workbench.sample.manifest import ManifestBuilder
from workbench.sample.plan import JsonObject, Knobs, SamplePlan, build_plan
from workbench.sample.registry import write_registry

MANIFEST_NAME = "sample_manifest.json"
REGISTRY_REL = REGISTRY_RELPATH.as_posix()
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SampleInfo:
    """What was generated: knobs and the expected sets (same content as `sample_manifest.json`).

    `loops`: one entry per registry loop row (`task_run_id`, `loop_id`, `action`, `status`,
    `generation`, `workspace_id` (registry id of its experiment workspace or None),
    `workspace_dir` (relative to the root, None if absent), `has_results_on_disk`, `quirks`).
    `experiments_expected`: loops whose experiment directory holds `qlib_res.csv` and `ret.pkl`
    (bootstrap-duplicate loops point at the same directory and carry `duplicate_of`; a loop whose
    file is deliberately broken lists it in `broken_files`).
    `quirks`: quirk name -> loop keys (`"<task_run_id>/<loop_id>"`), workspace ids or dicts;
    computed from the registry rows and the final tree, so every entry holds.
    `counts`: table sizes and `extra_loops` (loops beyond `task_runs * loops_per_run`).
    """

    manifest_version: int
    seed: int
    knobs: JsonObject
    registry_path: str
    registry_generation: str
    counts: JsonObject
    loops: list[JsonObject]
    experiments_expected: list[JsonObject]
    quirks: JsonObject
    multi_strategy_task_runs: dict[str, JsonObject]
    multi_strategy_loops: dict[str, list[JsonObject]]
    log_dirs: list[LogDir]
    bundles: list[Bundle]

    def to_dict(self) -> JsonObject:
        return asdict(self)

    def loop_keys(self) -> list[str]:
        """`"<task_run_id>/<loop_id>"` of every registry loop row."""
        return [f"{entry['task_run_id']}/{entry['loop_id']}" for entry in self.loops]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"{out}: exists and is not a directory; choose an empty or new directory for the sample"
        )
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"{out}: directory is not empty; the sample generator only writes into a new or empty directory"
        )


def _check_knobs(knobs: Knobs) -> None:
    minimums = {
        "task_runs": (knobs.task_runs, 1),
        "loops_per_run": (knobs.loops_per_run, 1),
        "trading_days": (knobs.trading_days, 2),
        "heavy_bytes": (knobs.heavy_bytes, 64),
        "instruments": (knobs.instruments, 1),
        "signals_topk": (knobs.signals_topk, 1),
    }
    for name, (value, minimum) in minimums.items():
        if value < minimum:
            raise ConfigError(f"{name}={value}: must be at least {minimum}")
    if knobs.registry_generation not in ("head", "v1_migrated"):
        raise ConfigError(
            f"registry_generation={knobs.registry_generation!r}: expected 'head' or 'v1_migrated'"
        )


def generate_sample(
    out: Path,
    *,
    seed: int = 0,
    task_runs: int = 3,
    loops_per_run: int = 4,
    trading_days: int = 60,
    heavy_bytes: int = 32_768,
    instruments: int = 30,
    multi_strategy: bool = True,
    quirks: bool = True,
    signals_topk: int = 3,
    registry_generation: Literal["head", "v1_migrated"] = "head",
    workers: int = 1,
) -> SampleInfo:
    """Write a sample RD-Agent installation under `out` (the RD-Agent repo root).

    Regular runs: `task_runs` runs of `loops_per_run` loops (about 20 % V1, 20 % gap era, the
    rest HEAD; HEAD runs alternate backfilled / live; the last HEAD run is aborted). Extra
    registry loops (listed in `counts.extra_loops`): 4 for the multi-strategy run, and with
    `quirks` 2 (killed run without task_runs row) + 3 (running run) + `loops_per_run` (the
    bootstrap duplicate of one HEAD run). `heavy_bytes` sizes the heavy stand-ins (result.h5,
    daily_pv.h5, pred.pkl, code_diff.txt, combined_factors_df.parquet); `signals_topk` rows per
    trade date go into `signals.*` (RD-Agent uses 50; kept small so big samples stay small).
    `workers`: processes writing runs in parallel (see `auto_workers`); the output is identical
    whatever the count. Workers are spawned, so a calling script needs an
    `if __name__ == "__main__":` guard when `workers > 1`.
    """
    out = Path(out)
    knobs = Knobs(
        task_runs=task_runs,
        loops_per_run=loops_per_run,
        trading_days=trading_days,
        heavy_bytes=heavy_bytes,
        instruments=instruments,
        multi_strategy=multi_strategy,
        quirks=quirks,
        signals_topk=signals_topk,
        registry_generation=registry_generation,
    )
    _check_knobs(knobs)
    if workers < 1:
        raise ConfigError(f"workers={workers}: must be at least 1")
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(seed, knobs)
    builder = InstallationBuilder.create(out, plan, knobs)
    state = builder.build(knobs=knobs, workers=workers)
    write_registry(out / REGISTRY_REL, state.rows, generation=registry_generation)
    builder.apply_deletions()
    info = _sample_info(out, plan, state, knobs, seed)
    text = json.dumps(info.to_dict(), ensure_ascii=False, indent=2, sort_keys=False)
    (out / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    return info


PARALLEL_FROM_LOOPS = 300


def auto_workers(*, task_runs: int, loops_per_run: int) -> int:
    """A sensible `workers` value: parallel only for big samples (spawning costs ~1 s each)."""
    if task_runs * loops_per_run < PARALLEL_FROM_LOOPS:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _sample_info(out: Path, plan: SamplePlan, state: BuildState, knobs: Knobs, seed: int) -> SampleInfo:
    manifest = ManifestBuilder(out, plan, state)
    loops = manifest.loops()
    requests, strategy_loops = manifest.multi_strategy()
    knob_values = asdict(knobs)
    return SampleInfo(
        manifest_version=MANIFEST_VERSION,
        seed=seed,
        knobs=knob_values,
        registry_path=REGISTRY_REL,
        registry_generation=knobs.registry_generation,
        counts=manifest.counts(task_runs=knobs.task_runs, loops_per_run=knobs.loops_per_run),
        loops=loops,
        experiments_expected=manifest.experiments_expected(loops),
        quirks=manifest.quirks(loops),
        multi_strategy_task_runs=requests,
        multi_strategy_loops=strategy_loops,
        log_dirs=state.log_dirs,
        bundles=state.bundles,
    )


def read_manifest(out: Path) -> JsonObject:
    """The manifest a previous `generate_sample` wrote under `out`."""
    manifest: JsonObject = json.loads((Path(out) / MANIFEST_NAME).read_text(encoding="utf-8"))
    return manifest


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workbench.sample", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="new or empty directory (the RD-Agent repo root)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-runs", type=int, default=3)
    parser.add_argument("--loops-per-run", type=int, default=4)
    parser.add_argument("--trading-days", type=int, default=60)
    parser.add_argument("--heavy-bytes", type=int, default=32_768)
    parser.add_argument("--instruments", type=int, default=30)
    parser.add_argument("--signals-topk", type=int, default=3)
    parser.add_argument("--registry-generation", choices=("head", "v1_migrated"), default="head")
    parser.add_argument("--no-multi-strategy", action="store_true")
    parser.add_argument("--no-quirks", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel writer processes (default: auto_workers)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints a one-line summary with the elapsed time."""
    args = _parse_args(argv)
    started = time.perf_counter()
    try:
        info = generate_sample(
            args.out,
            seed=args.seed,
            task_runs=args.task_runs,
            loops_per_run=args.loops_per_run,
            trading_days=args.trading_days,
            heavy_bytes=args.heavy_bytes,
            instruments=args.instruments,
            multi_strategy=not args.no_multi_strategy,
            quirks=not args.no_quirks,
            signals_topk=args.signals_topk,
            registry_generation=args.registry_generation,
            workers=args.workers or auto_workers(task_runs=args.task_runs, loops_per_run=args.loops_per_run),
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    elapsed = time.perf_counter() - started
    print(
        f"sample written to {args.out}: {info.counts['registry_loops']} loops, "
        f"{len(info.experiments_expected)} experiments with results, {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
