"""How each command's time and peak memory grow with the number of loops, measured in one run.

    .venv/bin/python benchmarks/bench_scaling.py [--loops 2000 10000 20000] [--loops-per-run 50]

For each size: a sample installation of that many regular loops (small per-loop files:
`--trading-days`, `--heavy-bytes`), then, each step in its own process (wall time and that
process's peak RSS from `os.wait4`):
full archive; no-op incremental (timed in process, after a warm-up run); `status`; a
factor-library query (`factors --limit 20`, the first query of a fresh process); `compare` of
the first comparable task run; cleanup plan (`--dry-run --stage full`) and confirm
(`--confirm --yes --stage full`) of every eligible workspace; `undo` of that plan; the same
confirm again, then `purge --older-than 0s` of everything it quarantined.
Prints a Markdown table (paste into BENCHMARKS.md) and writes `results_scaling.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

NOOP = """
import sys, time
from workbench.archive.pipeline import archive
root, ar = sys.argv[1], sys.argv[2]
archive(root, archive=ar, mode="incremental", progress=False)  # warm-up: imports, first catalog open
best = min(
    (lambda t: (archive(root, archive=ar, mode="incremental", progress=False), time.perf_counter() - t)[1])(
        time.perf_counter()
    )
    for _ in range(3)
)
print(f"{best:.4f}")
"""

FIRST_RUN = """
import sys
from workbench.analysis.compare import comparable_task_runs
runs = comparable_task_runs(sys.argv[1])
print(runs.row(0, named=True)["task_run_id"] if runs.height else "")
"""


def run(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one child process.

    A child's peak RSS counts its parent's at the fork (the kernel keeps the high-water mark
    across exec), so this script stays small: it imports nothing of workbench and generates the
    samples in child processes too.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", *args]


def measure(loops: int, args: argparse.Namespace) -> dict[str, object]:
    task_runs = max(1, loops // args.loops_per_run)
    root = args.work / f"rd_{task_runs}x{args.loops_per_run}"
    archive_dir = args.work / f"archive_{task_runs}x{args.loops_per_run}"
    if not (root / "sample_manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        made = run(
            [
                sys.executable,
                "-m",
                "workbench.sample",
                "--out",
                str(root),
                "--seed",
                "1",
                "--task-runs",
                str(task_runs),
                "--loops-per-run",
                str(args.loops_per_run),
                "--trading-days",
                str(args.trading_days),
                "--heavy-bytes",
                str(args.heavy_bytes),
                "--signals-topk",
                "3",
            ]
        )
        if not (root / "sample_manifest.json").exists():
            raise SystemExit(f"generating {root} failed: {made[2][-2000:]}")
        print(f"{loops} loops: generated in {time.perf_counter() - started:.0f} s", flush=True)
    shutil.rmtree(archive_dir, ignore_errors=True)
    shutil.rmtree(root / ".workbench_quarantine", ignore_errors=True)
    ar, rd = str(archive_dir), str(root)
    steps: dict[str, dict[str, float]] = {}

    def step(name: str, argv: list[str]) -> str:
        seconds, rss, out = run(argv)
        steps[name] = {"s": seconds, "rss_mb": rss}
        print(f"{loops} loops: {name} {seconds:.2f} s, {rss:.0f} MB", flush=True)
        return out

    step("full archive", cli("archive", "--rdagent-root", rd, "--archive", ar, "--mode", "full"))
    noop = step("no-op incremental", [sys.executable, "-c", NOOP, rd, ar])
    steps["no-op incremental"]["in_process_s"] = float(noop.strip().splitlines()[-1])
    step("status", cli("status", "--archive", ar))
    step("factor query", cli("factors", "--archive", ar, "--limit", "20"))
    first = run([sys.executable, "-c", FIRST_RUN, ar])[2].strip()
    if first:
        step("compare", cli("compare", first, "--archive", ar))
    plan = step(
        "cleanup plan",
        cli("cleanup", "--rdagent-root", rd, "--archive", ar, "--dry-run", "--stage", "full", "--json"),
    )
    items = len(json.loads(plan)["plan"]["items"]) if plan.strip().startswith("{") else 0
    confirmed = step(
        "cleanup confirm",
        cli(
            "cleanup",
            "--rdagent-root",
            rd,
            "--archive",
            ar,
            "--confirm",
            "--yes",
            "--stage",
            "full",
            "--json",
        ),
    )
    plan_id = json.loads(confirmed)["plan"]["plan_id"] if confirmed.strip().startswith("{") else ""
    if plan_id:
        step("cleanup undo", cli("cleanup", "undo", plan_id, "--archive", ar))
        again = cli("cleanup", "--rdagent-root", rd, "--archive", ar, "--confirm", "--yes", "--stage", "full")
        step("cleanup confirm again", again)
        step("cleanup purge", cli("cleanup", "purge", "--older-than", "0s", "--archive", ar))
    return {"loops": loops, "task_runs": task_runs, "cleanup_items": items, "steps": steps}


def table(results: list[dict[str, object]]) -> str:
    """One row per step, one column per size, and how the figure grew from the first to the last size."""
    names = list(results[0]["steps"])  # type: ignore[call-overload]
    head = "| step | " + " | ".join(f"{r['loops']:,} loops" for r in results) + " | growth (time, memory) |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    for name in names:
        cells = []
        for r in results:
            s = r["steps"].get(name)  # type: ignore[attr-defined]
            if s is None:
                cells.append("–")
                continue
            extra = f" (in process {s['in_process_s']:.3f} s)" if "in_process_s" in s else ""
            cells.append(f"{s['s']:.2f} s{extra}, {s['rss_mb']:.0f} MB")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_growth(results, name)} |")
    lines.append("| cleanup items | " + " | ".join(f"{r['cleanup_items']:,}" for r in results) + " | |")
    return "\n".join(lines)


def _growth(results: list[dict[str, object]], name: str) -> str:
    """Last size over first size, for the time (in process when measured so) and the peak RSS."""
    first, last = (r["steps"].get(name) for r in (results[0], results[-1]))  # type: ignore[attr-defined]
    if len(results) < 2 or first is None or last is None:
        return "–"
    key = "in_process_s" if "in_process_s" in first else "s"
    loops = int(results[-1]["loops"]) / int(results[0]["loops"])  # type: ignore[call-overload]
    return f"×{last[key] / first[key]:.1f}, ×{last['rss_mb'] / first['rss_mb']:.1f} (loops ×{loops:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work"))
    parser.add_argument("--loops", type=int, nargs="+", default=[2000, 10000, 20000])
    parser.add_argument("--loops-per-run", type=int, default=50)
    parser.add_argument("--trading-days", type=int, default=40)
    parser.add_argument("--heavy-bytes", type=int, default=2048)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = [measure(loops, args) for loops in args.loops]
    (args.work / "results_scaling.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
