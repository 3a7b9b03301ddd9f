"""What durability costs: a full archive with and without manifests, records, packs and snapshots.

    .venv/bin/python benchmarks/bench_durability.py [--task-runs 40 --loops-per-run 50 --trading-days 250]
                                                    [--baseline-commit REV] [--rounds 2]

Both sides run in one session on the same generated installation (the archive benchmark's, by
default), alternating (A B A B ...) so that a noisy neighbour hurts both alike:

* **durable**: this checkout;
* **before**: the code of `--baseline-commit` (default: the last commit before the durable
  archive), checked out into a temporary git worktree and imported from there.

Each side archives in full into a fresh folder in a subprocess. Reported: wall time, the ratio
durable / before, and the bytes of each part of the archive. Then, on the durable archive: a
`repair` that rebuilds the catalog from every record (snapshots removed) and one that starts from
the newest snapshot, each against the full archive's time. Prints Markdown; writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workbench.sample.generate import auto_workers, generate_sample

BEFORE_DURABLE = "8f9f315"
HERE = Path(__file__).resolve().parent.parent

ARCHIVE = """
import sys, time
from workbench.archive.pipeline import archive
start = time.perf_counter()
summary = archive(sys.argv[1], archive=sys.argv[2], mode="full", progress=False)
print("RESULT", time.perf_counter() - start, summary.level2)
"""

REPAIR = """
import sys, time
from workbench.archive.repair import repair
start = time.perf_counter()
report = repair(sys.argv[1])
print("RESULT", time.perf_counter() - start, report.records_replayed, report.ok)
"""


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run(code: str, *args: object, tree: Path) -> list[str]:
    """Run `code` importing workbench from `tree` (run from there, so nothing else shadows it)."""
    env = dict(os.environ, PYTHONPATH=str(tree), DUCKDB_NO_PROGRESS="1")
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tree,
    )
    lines = [
        part.split()[:3] for part in done.stdout.split("RESULT ")[1:]
    ]  # DuckDB's progress bar shares lines
    if not lines:
        raise RuntimeError(
            f"no result from the benchmark step:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return lines[-1]


def parts(archive: Path) -> dict[str, int]:
    names = ("catalog.duckdb", "objects", "packs", "manifests", "records", "snapshots")
    return {name: folder_bytes(archive / name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work"))
    parser.add_argument("--task-runs", type=int, default=40)
    parser.add_argument("--loops-per-run", type=int, default=50)
    parser.add_argument("--trading-days", type=int, default=250)
    parser.add_argument("--signals-topk", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-commit", default=BEFORE_DURABLE)
    args = parser.parse_args()

    tag = f"rd_{args.task_runs}x{args.loops_per_run}_{args.trading_days}d_top{args.signals_topk}"
    root = args.work / tag
    if not (root / "sample_manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate_sample(
            root,
            seed=args.seed,
            task_runs=args.task_runs,
            loops_per_run=args.loops_per_run,
            trading_days=args.trading_days,
            signals_topk=args.signals_topk,
            workers=auto_workers(task_runs=args.task_runs, loops_per_run=args.loops_per_run),
        )
    scratch = Path(tempfile.mkdtemp(prefix="bench_durability_"))
    tree = scratch / "before"
    subprocess.run(
        ["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), args.baseline_commit],
        check=True,
        capture_output=True,
    )
    times: dict[str, list[float]] = {"durable": [], "before": []}
    sizes: dict[str, dict[str, int]] = {}
    try:
        for _ in range(args.rounds):
            for side in ("before", "durable"):
                target = args.work / f"archive_{side}"
                shutil.rmtree(target, ignore_errors=True)
                seconds, _level2 = run(
                    ARCHIVE, root.absolute(), target.absolute(), tree=tree if side == "before" else HERE
                )
                times[side].append(float(seconds))
                sizes[side] = parts(target)
        durable = args.work / "archive_durable"
        shutil.rmtree(durable / "snapshots")
        (durable / "catalog.duckdb").unlink()
        rebuild_records = run(REPAIR, durable.absolute(), tree=HERE)
        (durable / "catalog.duckdb").unlink()
        rebuild_snapshot = run(REPAIR, durable.absolute(), tree=HERE)
    finally:
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], capture_output=True
        )
        shutil.rmtree(scratch, ignore_errors=True)
    best = {side: min(values) for side, values in times.items()}
    results = {
        "knobs": vars(args) | {"work": str(args.work)},
        "times_s": times,
        "best_s": best,
        "durable_over_before": best["durable"] / best["before"],
        "bytes": sizes,
        "repair_from_records_s": float(rebuild_records[0]),
        "records_replayed": int(rebuild_records[1]),
        "repair_from_snapshot_s": float(rebuild_snapshot[0]),
    }
    (args.work / f"results_durability_{tag}.json").write_text(json.dumps(results, indent=2))
    before_total = sum(sizes["before"].values())
    durable_total = sum(sizes["durable"].values())
    print("| | before (schema 5) | durable (schema 6) |\n|---|---|---|")
    print(
        f"| full archive, best of {args.rounds} | {best['before']:.1f} s | {best['durable']:.1f} s "
        f"({best['durable'] / best['before']:.2f}×) |"
    )
    for name in sizes["durable"]:
        print(
            f"| {name} | {sizes['before'].get(name, 0) / 1e6:,.1f} MB | {sizes['durable'][name] / 1e6:,.1f} MB |"
        )
    print(
        f"| archive folder | {before_total / 1e6:,.1f} MB | {durable_total / 1e6:,.1f} MB "
        f"({durable_total / before_total:.2f}×) |"
    )
    print(
        f"| repair: rebuild from {results['records_replayed']} records | | {results['repair_from_records_s']:.1f} s "
        f"({results['repair_from_records_s'] / best['durable']:.2f}× the full archive) |"
    )
    print(
        f"| repair: newest snapshot + later records | | {results['repair_from_snapshot_s']:.1f} s "
        f"({results['repair_from_snapshot_s'] / best['durable']:.2f}× the full archive) |"
    )


if __name__ == "__main__":
    main()
