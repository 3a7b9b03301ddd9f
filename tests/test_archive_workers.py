"""A large run archives in worker processes (started while the loops are selected, fed one batch
ahead): what it stores and commits is exactly what one process archives."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from workbench.archive.pipeline import archive
from workbench.archive.runner import PARALLEL_MIN_LOOPS
from workbench.archive.verify import verify_archive
from workbench.sample.generate import generate_sample

pytestmark = pytest.mark.slow


def _rows(archive_dir: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_worker_processes_archive_exactly_what_one_process_archives(tmp_path: Path) -> None:
    root = tmp_path / "rd"
    generate_sample(root, seed=5, task_runs=6, loops_per_run=45)
    one, two = tmp_path / "one", tmp_path / "two"
    single = archive(root, archive=one, mode="full", progress=False, workers=1)
    # small batches: several batches queued ahead and committed while the workers go on
    parallel = archive(root, archive=two, mode="full", progress=False, workers=2, batch_size=40)
    assert single.level1 + single.level2 >= PARALLEL_MIN_LOOPS, "the sample must be large enough for workers"
    assert (parallel.level1, parallel.level2, len(parallel.errors)) == (
        single.level1,
        single.level2,
        len(single.errors),
    )
    for sql in (
        "SELECT id, archiving_level, source_fingerprint, metrics_json, recomputed_metrics_json "
        "FROM aistock_experiments ORDER BY id",
        "SELECT task_run_id, loop_id, state, archiving_level FROM wb_loop_state ORDER BY 1, 2",
        "SELECT experiment_id, rel_path, sha256 FROM wb_stored_files ORDER BY 1, 2",
        "SELECT sha256, size_bytes FROM wb_objects ORDER BY 1",
        "SELECT experiment_id, count(*), sum(account) FROM aistock_return_series GROUP BY 1 ORDER BY 1",
        "SELECT id FROM aistock_factors ORDER BY id",
    ):
        assert _rows(two, sql) == _rows(one, sql), sql
    report = verify_archive(two, read_data=True)
    assert report.checked > 0 and not report.damaged and not report.missing
    assert not (two / "tmp").exists() or not any((two / "tmp").iterdir())  # no settings file left
    again = archive(root, archive=two, mode="full", progress=False, workers=2)
    assert again.unchanged >= single.level2 and again.level2 == 0  # only the failed loops are retried
