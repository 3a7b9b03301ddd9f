"""Where the CPU of a full archive goes, stage by stage, in ms of CPU per archived loop.

    .venv/bin/python benchmarks/profile_archive.py [--sample benchmarks/_work/rd_40x50_250d_top5]

Runs one full archive of a generated installation (see `bench_archive.py`) in process with one
worker, so that every stage runs in this process: the main thread (selection, extraction,
storing) and the commit thread (catalog rows, manifests, records). Each stage's functions are
wrapped with a timer of the calling thread's own CPU time (`time.thread_time`), so other load on
the machine does not count, nor does waiting for the disk; nested stages are part of their
parent's figure. `--cprofile FILE` also dumps a cProfile of the main thread for drilling down.
The table goes into BENCHMARKS.md ("Archiving", "Where the CPU goes").
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.archive.pipeline import archive

#: stage → (module, attribute path) of the functions whose CPU time is the stage's
STAGES: dict[str, tuple[str, str]] = {
    "select: registry read, candidates, fingerprints": ("workbench.archive.pipeline", "select_loops"),
    "  fingerprint (workspace walk + hash of the listing)": (
        "workbench.archive.scan",
        "LoopCandidate.fingerprint",
    ),
    "extract: parse the loop's files (total)": ("workbench.archive.runner", "extract_loop"),
    "  safe unpickle of ret.pkl": ("workbench.rdagent.files.returns", "load_dataframe_pickle"),
    "  return-series conversion": ("workbench.rdagent.files.returns", "returns_frame_from_pandas"),
    "  metric recomputation": ("workbench.archive.extract", "compute_return_metrics"),
    "  qlib_res.csv": ("workbench.archive.extract", "_read_qlib"),
    "  JSON files (feedback, factor meta/perf, metadata)": ("workbench.archive.extract", "_read_optional"),
    "  file list (_collect_files)": ("workbench.archive.extract", "_collect_files"),
    "store: read, hash, compress, write the kept files (total)": ("workbench.archive.runner", "store_files"),
    "  zstd compression of objects (+ verify decode)": ("workbench.archive.store", "ObjectStore._encode"),
    "  series Parquet": ("workbench.archive.persist", "series_parquet"),
    "  pack encode + write": ("workbench.archive.store", "ObjectStore.flush_pack"),
    "commit: catalog rows, manifests, record (total)": ("workbench.archive.runner", "commit_batch"),
    "  rows (INSERT ... SELECT from Arrow)": ("workbench.archive.persist", "_write_rows"),
    "  manifests + record (Recorder.finish)": ("workbench.archive.journal", "Recorder.finish"),
    "  open + close the catalog": ("workbench.archive.runner", "open_catalog"),
    "finish: consolidate factors, cursor": ("workbench.archive.pipeline", "consolidate_factors"),
}

_spent: dict[str, float] = defaultdict(float)
_local = threading.local()


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its calling thread's CPU time added to `stage` (outermost call only)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        active: set[str] = getattr(_local, "active", None) or set()
        _local.active = active
        if stage in active:  # recursion or re-entry: counted by the outer call
            return fn(*args, **kwargs)
        active.add(stage)
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[stage] += time.thread_time() - start
            active.discard(stage)

    return wrapper


def _context_timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A context-manager factory whose enter and exit (open, close) count for `stage`."""

    class Timed:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.inner = fn(*args, **kwargs)

        def __enter__(self) -> Any:
            start = time.thread_time()
            try:
                return self.inner.__enter__()
            finally:
                _spent[stage] += time.thread_time() - start

        def __exit__(self, *exc: Any) -> Any:
            start = time.thread_time()
            try:
                return self.inner.__exit__(*exc)
            finally:
                _spent[stage] += time.thread_time() - start

    return Timed


def install_timers() -> None:
    for stage, (module_name, attr) in STAGES.items():
        module = importlib.import_module(module_name)
        owner: Any = module
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, name)
        wrap = _context_timed if name == "open_catalog" else _timed
        setattr(owner, name, wrap(stage, fn))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", type=Path, default=Path("benchmarks/_work/rd_40x50_250d_top5"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work/profile_archive"))
    parser.add_argument("--cprofile", type=Path, default=None, help="dump a cProfile of the main thread here")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    install_timers()
    profile = cProfile.Profile() if args.cprofile else None
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    summary = archive(args.sample, archive=args.work, mode="full", progress=False, workers=1)
    if profile is not None:
        profile.disable()
        profile.dump_stats(str(args.cprofile))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    loops = max(summary.level1 + summary.level2, 1)
    print(f"{loops} loops archived (level 2: {summary.level2}), 1 worker in process")
    print("| stage | ms CPU per loop |")
    print("|---|---:|")
    for stage in STAGES:
        print(f"| {stage} | {_spent[stage] * 1000 / loops:.2f} |")
    print(f"| whole run: CPU of the process | {cpu * 1000 / loops:.2f} |")
    print(f"| whole run: wall | {wall * 1000 / loops:.2f} |")


if __name__ == "__main__":
    main()
