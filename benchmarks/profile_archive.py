"""Where the CPU of a full archive goes, stage by stage, in ms per archived loop.

    .venv/bin/python benchmarks/profile_archive.py [--sample benchmarks/_work/rd_40x50_250d_top5] [--loops N]

Runs one full archive of a generated installation (see `bench_archive.py`) in process with one
worker, so that cProfile sees every stage: the main thread (selection, extraction, storing) and
the commit thread (catalog writes, manifests, records) are profiled separately and summed.
The timer is each thread's own CPU time, so other load on the machine does not count (time
spent waiting for the disk does not either).
The stages are the cumulative times of the functions that do each piece of work; the table
goes into BENCHMARKS.md ("Archiving", "Where the CPU goes").
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.archive import runner
from workbench.archive.pipeline import archive

#: stage → (module path suffix, function name) pairs whose cumulative time is the stage's
STAGES: dict[str, list[tuple[str, str]]] = {
    "select: registry read, candidates, fingerprint walk": [("archive/selection.py", "select_loops")],
    "  of which fingerprint (workspace walk + hash of the listing)": [("archive/scan.py", "fingerprint")],
    "catalog state before the run (load_state)": [("archive/selection.py", "load_state")],
    "extract: parse the loop's files (total)": [("archive/extract.py", "extract_loop")],
    "  safe unpickle of ret.pkl": [("files/safe_pickle.py", "load_dataframe_pickle")],
    "  return-series conversion": [("files/returns.py", "returns_frame_from_pandas")],
    "  metric recomputation": [("workbench/metrics.py", "compute_return_metrics")],
    "  qlib_res.csv": [("archive/extract.py", "_read_qlib")],
    "  JSON files (feedback, factor meta/perf, metadata)": [("archive/extract.py", "_read_optional")],
    "  second workspace walk (_collect_files)": [("archive/extract.py", "_collect_files")],
    "store: read, hash, compress, write the kept files (total)": [("archive/persist.py", "store_files")],
    "  zstd compression (+ verify decode)": [("archive/store.py", "_encode")],
    "  series Parquet": [("archive/persist.py", "series_parquet")],
    "  pack write": [("archive/store.py", "flush_pack")],
    "commit: catalog rows, manifests, record, sync (total)": [("archive/runner.py", "_commit")],
    "  rows (INSERT ... SELECT from Arrow)": [("archive/persist.py", "_write_rows")],
    "  manifests + record (Recorder.finish)": [("archive/journal.py", "finish")],
    "finish: consolidate factors, cursor, library cache": [
        ("archive/persist.py", "consolidate_factors"),
        ("archive/library_cache.py", "refresh_library_cache"),
    ],
}


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per stage (a function counted once even when it recurses)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for stage, functions in STAGES.items():
        total = 0.0
        for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in table.items():
            if any(path.endswith(suffix) and name == fn for suffix, fn in functions):
                total += cumulative
        out[stage] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", type=Path, default=Path("benchmarks/_work/rd_40x50_250d_top5"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work/profile_archive"))
    parser.add_argument("--out", type=Path, default=None, help="also dump the raw profiles here")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    commit_profile = cProfile.Profile(time.thread_time)
    original: Callable[..., None] = runner._commit

    def profiled_commit(*a: Any, **k: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            original(*a, **k)  # the main thread's own profile sees it
        else:
            commit_profile.runcall(original, *a, **k)

    runner._commit = profiled_commit  # type: ignore[assignment]
    main_profile = cProfile.Profile(time.thread_time)
    started = time.perf_counter()
    summary = main_profile.runcall(
        archive, args.sample, archive=args.work, mode="full", progress=False, workers=1
    )
    wall = time.perf_counter() - started
    runner._commit = original  # type: ignore[assignment]
    stats = pstats.Stats(main_profile)
    stats.add(commit_profile)
    if args.out:
        main_profile.dump_stats(str(args.out) + ".main")
        commit_profile.dump_stats(str(args.out) + ".commit")
    loops = summary.level1 + summary.level2
    cpu = pstats.Stats(main_profile).total_tt + pstats.Stats(commit_profile).total_tt  # type: ignore[attr-defined]
    print(f"{loops} loops archived (level 2: {summary.level2}) in {wall:.1f} s wall under cProfile, 1 worker")
    print("| stage | ms per loop |")
    print("|---|---:|")
    for stage, seconds in stage_times(stats).items():
        print(f"| {stage} | {seconds * 1000 / max(loops, 1):.2f} |")
    print(f"| whole run (CPU of both threads, profiled) | {cpu * 1000 / max(loops, 1):.2f} |")
    print(f"| whole run (wall, profiled) | {wall * 1000 / max(loops, 1):.2f} |")


if __name__ == "__main__":
    main()
