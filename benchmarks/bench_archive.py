"""Archive throughput against the machine's own limit, measured in one run.

    .venv/bin/python benchmarks/bench_archive.py [--task-runs 40 --loops-per-run 50 --trading-days 250]
                                                 [--signals-topk 50]

Run it twice: `--signals-topk 50` (the default: RD-Agent's top-50 signals, ~4 MB of key files per
loop) and `--signals-topk 5` (small signals files, five names per day, ~0.9 MB per loop), where
the fixed work per loop weighs most.

Steps, all on the same generated installation (≥ 2,000 loops):
1. limit: read, SHA-256 and write every key file of every experiment workspace once into a fresh
   folder, one `os.sync()` at the end — the work a level-2 archive cannot avoid;
2. the same with each file zstd-compressed (level 1, as the archive) before it is written;
3. full archive into a fresh archive (`workbench.archive.pipeline.archive`, in process);
4. no-op incremental run (nothing new), timed in process, best of 3;
5. stored bytes over key-file bytes: the objects the catalog lists (`wb_objects.stored_bytes`),
   and on disk (allocated blocks): objects + packs, + manifests + records, the catalog, its
   snapshots, the whole folder; the two limits' folders the same way.
Prints a Markdown table (paste into BENCHMARKS.md) and writes `results_*.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import pyarrow as pa

from workbench.archive.catalog import open_catalog
from workbench.archive.files import walk_workspace
from workbench.archive.pipeline import archive
from workbench.sample.generate import auto_workers, generate_sample


def key_files(root: Path) -> tuple[list[Path], int]:
    """Key files of every expected experiment workspace, and the bytes of those workspaces."""
    manifest = json.loads((root / "sample_manifest.json").read_text(encoding="utf-8"))
    files: list[Path] = []
    workspace_bytes = 0
    seen: set[str] = set()
    for exp in manifest["experiments_expected"]:
        rel = exp.get("workspace_dir")
        if not rel or rel in seen or exp.get("duplicate_of"):
            continue
        seen.add(rel)
        for info in walk_workspace(root / rel):
            workspace_bytes += info.size_bytes
            if info.file_class == "key":
                files.append(root / rel / info.rel_path)
    return files, workspace_bytes


def read_hash_write(files: list[Path], target: Path, *, compress: bool = False) -> tuple[float, int]:
    """The limit: each file read once, hashed, (zstd-compressed,) written once; one sync at the end."""
    target.mkdir(parents=True)
    codec = pa.Codec("zstd", compression_level=1)
    total = 0
    start = time.perf_counter()
    for index, path in enumerate(files):
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        (target / f"{index:07d}").write_bytes(codec.compress(data, asbytes=True) if compress else data)
        total += len(data)
    os.sync()
    return time.perf_counter() - start, total


def disk_bytes(*paths: Path) -> int:
    """Bytes the files and folders take on disk (allocated blocks, as `du`)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.lstat().st_blocks * 512
        for parent, _dirs, names in os.walk(path):
            total += sum(os.lstat(os.path.join(parent, name)).st_blocks * 512 for name in names)
    return total


def hash_only(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        hashlib.sha256(path.read_bytes()).hexdigest()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work"))
    parser.add_argument("--task-runs", type=int, default=40)
    parser.add_argument("--loops-per-run", type=int, default=50)
    parser.add_argument("--trading-days", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--signals-topk",
        type=int,
        default=50,
        help="rows per day in signals.* (RD-Agent's default top-k is 50)",
    )
    args = parser.parse_args()

    tag = f"rd_{args.task_runs}x{args.loops_per_run}_{args.trading_days}d_top{args.signals_topk}"
    root, limit_dir, archive_dir = args.work / tag, args.work / "limit", args.work / "archive"
    for folder in (limit_dir, archive_dir):
        shutil.rmtree(folder, ignore_errors=True)
    if not (root / "sample_manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        generate_sample(
            root,
            seed=args.seed,
            task_runs=args.task_runs,
            loops_per_run=args.loops_per_run,
            trading_days=args.trading_days,
            signals_topk=args.signals_topk,
            workers=auto_workers(task_runs=args.task_runs, loops_per_run=args.loops_per_run),
        )
        print(f"generated sample in {time.perf_counter() - started:.1f} s")
    files, workspace_bytes = key_files(root)
    hash_s = hash_only(files)
    limit_s, key_bytes = read_hash_write(files, limit_dir)
    limit_disk = disk_bytes(limit_dir)
    shutil.rmtree(limit_dir)
    os.sync()
    limit_zstd_s, _ = read_hash_write(files, limit_dir, compress=True)
    limit_zstd_disk = disk_bytes(limit_dir)
    shutil.rmtree(limit_dir)
    os.sync()

    started = time.perf_counter()
    full = archive(root, archive=archive_dir, mode="full", progress=False)
    full_s = time.perf_counter() - started

    noop_times = []
    for _ in range(3):
        started = time.perf_counter()
        noop = archive(root, archive=archive_dir, mode="incremental", progress=False)
        noop_times.append(time.perf_counter() - started)
    with open_catalog(archive_dir, read_only=True) as con:
        stored_bytes = con.execute("SELECT sum(stored_bytes) FROM wb_objects").fetchall()[0][0]
        catalog_bytes = (archive_dir / "catalog.duckdb").stat().st_size
    on_disk = {
        "objects_packs": disk_bytes(archive_dir / "objects", archive_dir / "packs"),
        "manifests_records": disk_bytes(archive_dir / "manifests", archive_dir / "records"),
        "catalog": disk_bytes(archive_dir / "catalog.duckdb"),
        "snapshots": disk_bytes(archive_dir / "snapshots"),
        "folder": disk_bytes(archive_dir),
    }
    loops = full.candidates
    mb = key_bytes / 1e6
    results = {
        "loops": loops,
        "experiments_level2": full.level2,
        "key_files": len(files),
        "key_file_bytes": key_bytes,
        "workspace_bytes": workspace_bytes,
        "hash_only_s": hash_s,
        "limit_read_hash_write_s": limit_s,
        "full_archive_s": full_s,
        "full_loops_per_s": loops / full_s,
        "full_mb_per_s": mb / full_s,
        "limit_mb_per_s": mb / limit_s,
        "full_over_limit": limit_s / full_s,
        "limit_zstd_s": limit_zstd_s,
        "full_over_limit_zstd": limit_zstd_s / full_s,
        "limit_disk_bytes": limit_disk,
        "limit_zstd_disk_bytes": limit_zstd_disk,
        "archive_disk_bytes": on_disk,
        "noop_incremental_s_best": min(noop_times),
        "noop_incremental_s_median": statistics.median(noop_times),
        "noop_candidates_retried": noop.candidates,
        "stored_bytes": stored_bytes,
        "catalog_bytes": catalog_bytes,
        "stored_over_key_bytes": stored_bytes / key_bytes,
        "stored_over_workspace_bytes": stored_bytes / workspace_bytes,
    }
    results["knobs"] = {
        "task_runs": args.task_runs,
        "loops_per_run": args.loops_per_run,
        "trading_days": args.trading_days,
        "signals_topk": args.signals_topk,
        "seed": args.seed,
    }
    (args.work / f"results_{tag}.json").write_text(json.dumps(results, indent=2))
    print(f"knobs: {results['knobs']}")
    print(f"| loops | {loops} (level 2: {full.level2}) |")
    print(f"| key files | {len(files)} files, {mb:,.0f} MB (workspaces {workspace_bytes / 1e6:,.0f} MB) |")
    print(f"| hash only | {mb / hash_s:,.0f} MB/s |")
    print(
        f"| limit: read + SHA-256 + write, one sync | {limit_s:.1f} s, {mb / limit_s:,.0f} MB/s, "
        f"on disk {limit_disk / key_bytes:.0%} of the key files |"
    )
    print(
        f"| limit with each file zstd-compressed | {limit_zstd_s:.1f} s, {mb / limit_zstd_s:,.0f} MB/s, "
        f"on disk {limit_zstd_disk / key_bytes:.0%} |"
    )
    print(
        f"| full archive | {full_s:.1f} s, {loops / full_s:,.0f} loops/s, {mb / full_s:,.0f} MB/s of key files |"
    )
    print(f"| full archive / limit | {limit_s / full_s:.0%} (target ≥ 80%, at least 50%) |")
    print(f"| full archive / zstd limit | {limit_zstd_s / full_s:.0%} |")
    print(
        f"| no-op incremental | best {min(noop_times):.3f} s, median {statistics.median(noop_times):.3f} s "
        f"({noop.candidates} loops looked at, {noop.level1 + noop.level2} archived; target < 0.2 s) |"
    )
    print(
        f"| stored / key-file bytes (wb_objects.stored_bytes) | {stored_bytes / key_bytes:.1%} (target ≤ 20%) |"
    )
    print(f"| stored / workspace bytes | {stored_bytes / workspace_bytes:.1%} |")
    content = on_disk["objects_packs"] + on_disk["manifests_records"]
    print(
        f"| on disk / key-file bytes: objects + packs | {on_disk['objects_packs'] / key_bytes:.1%} |\n"
        f"| + manifests + records | {content / key_bytes:.1%} |\n"
        f"| + catalog | {(content + on_disk['catalog']) / key_bytes:.1%} |\n"
        f"| whole folder (with 3 catalog snapshots) | {on_disk['folder'] / key_bytes:.1%} |"
    )


if __name__ == "__main__":
    main()
