"""A damaged catalog is one clear line (exit 5) naming the file and `workbench repair`, never a traceback.

Real archives of the sample installation, damaged on disk the way disks and copies damage files:
a header overwritten, 4 KiB spans of random bytes over blocks, the file cut in half, and a single
bit flipped inside a block of table data. The commands run in subprocesses, as a user runs them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.library_cache import clear_library_cache
from workbench.archive.pipeline import archive
from workbench.archive.verify import verify_archive
from workbench.errors import CatalogCorruptError
from workbench.library.factors import factor_library

HEADER_BYTES = 3 * 4096  # main header + two database headers (checked against the file below)
CHECKSUM_BYTES = 8  # every block starts with the checksum of the rest of the block


@pytest.fixture(scope="module")
def clean(sample_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real archive of the sample (and the installation it came from); copy it before damaging it."""
    base = tmp_path_factory.mktemp("damage")
    rd = base / "rd"
    shutil.copytree(sample_template, rd, symlinks=True)
    archive(rd, archive=base / "archive", progress=False)
    con = duckdb.connect(str(base / "archive" / "catalog.duckdb"))
    con.execute("CHECKPOINT")  # every table in blocks of the file, none left in a write-ahead log
    con.close()
    return rd, base / "archive"


def copy_archive(clean_archive: Path, target: Path) -> Path:
    shutil.copytree(clean_archive, target)
    return target


def layout(catalog: Path) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """(block size, {table: [(block_id, block_offset), ...]}) of a clean catalog, from DuckDB itself."""
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        block_size, total_blocks = con.execute(
            "SELECT block_size, total_blocks FROM pragma_database_size()"
        ).fetchone()
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        blocks = {
            t: [
                (int(b), int(o))
                for b, o in con.execute(
                    f"SELECT block_id, block_offset FROM pragma_storage_info('{t}') WHERE block_id >= 0"
                ).fetchall()
            ]
            for t in tables
        }
    finally:
        con.close()
    # the layout this test relies on: headers, then total_blocks blocks of block_size bytes
    assert catalog.stat().st_size == HEADER_BYTES + block_size * total_blocks
    return int(block_size), blocks


def damage_header(catalog: Path) -> None:
    with open(catalog, "r+b") as f:
        f.write(random.Random(1).randbytes(4096))


def damage_blocks(catalog: Path) -> None:
    """Random 4 KiB spans over blocks that hold table data (seeded).

    The block of `wb_meta` is always among them: every command reads the schema version first, so
    every command meets the damage; the other blocks are drawn at random.
    """
    rng = random.Random(7)
    block_size, blocks = layout(catalog)
    in_use = sorted({b for spans in blocks.values() for b, _ in spans})
    chosen = {blocks["wb_meta"][0][0], *rng.sample(in_use, 5)}
    with open(catalog, "r+b") as f:
        for block in sorted(chosen):
            start = HEADER_BYTES + block * block_size
            f.seek(start + rng.randrange(0, block_size - 4096))
            f.write(rng.randbytes(4096))


def damage_truncate(catalog: Path) -> None:
    with open(catalog, "r+b") as f:
        f.truncate(catalog.stat().st_size // 2)


def damage_one_bit(catalog: Path) -> int:
    """Flip one bit inside the return-series data; returns the file offset."""
    block_size, blocks = layout(catalog)
    block, offset = blocks["aistock_return_series"][0]
    at = HEADER_BYTES + block * block_size + CHECKSUM_BYTES + offset + 100
    with open(catalog, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x10]))
    return at


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def assert_one_line_damage(
    done: subprocess.CompletedProcess[str], catalog: Path, what: str | None = None
) -> None:
    context = f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}"
    assert done.returncode == 5, context
    assert "Traceback" not in done.stderr + done.stdout, context
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, context
    assert lines[0].startswith("error: "), context
    assert str(catalog) in lines[0] and "workbench repair --archive" in lines[0], context
    if what:
        assert what in lines[0], context


COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "status": lambda rd, ar: ["status", "--archive", str(ar)],
    "verify": lambda rd, ar: ["verify", "--archive", str(ar)],
    "factors": lambda rd, ar: ["factors", "--archive", str(ar)],
    "archive-incremental": lambda rd, ar: [
        "archive",
        "--rdagent-root",
        str(rd),
        "--archive",
        str(ar),
        "--mode",
        "incremental",
        "--no-progress",
    ],
    "archive-full": lambda rd, ar: [
        "archive",
        "--rdagent-root",
        str(rd),
        "--archive",
        str(ar),
        "--mode",
        "full",
        "--no-progress",
    ],
}


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (damage_header, "not a DuckDB database file"),
        (damage_blocks, "block checksum mismatch at byte"),
        (damage_truncate, "file truncated"),
    ],
    ids=["header", "blocks", "truncated"],
)
def test_every_command_says_the_catalog_is_damaged_in_one_line(
    clean: tuple[Path, Path], tmp_path: Path, damage: Callable[[Path], None], what: str
) -> None:
    rd, clean_archive = clean
    damaged = copy_archive(clean_archive, tmp_path / "damaged")
    damage(damaged / "catalog.duckdb")
    for name, args in COMMANDS.items():
        ar = copy_archive(damaged, tmp_path / name)  # a writer must not meet what another command left
        assert_one_line_damage(cli(*args(rd, ar)), ar / "catalog.duckdb", what)


def test_one_flipped_bit_in_table_data_fails_verify_and_every_reader_of_that_table(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    archive(rd_root, archive=archive_dir, progress=False)
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"))
    con.execute("CHECKPOINT")
    task_run = con.execute(
        "SELECT e.task_run_id FROM aistock_return_series r JOIN aistock_experiments e "
        "ON e.id = r.experiment_id LIMIT 1"
    ).fetchone()[0]
    con.close()
    assert cli("verify", "--archive", str(archive_dir)).returncode == 0
    catalog = archive_dir / "catalog.duckdb"
    damage_one_bit(catalog)

    # verify reads every row: the catalog part fails (exit 5), the objects part still ran and passed
    done = cli("verify", "--archive", str(archive_dir), "--json")
    assert_one_line_damage(done, catalog, "block checksum mismatch at byte")
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["failed"] == ["catalog"]
    assert report["catalog"]["ok"] is False and "checksum" in report["catalog"]["error"]
    assert report["objects"]["ok"] is True and report["objects"]["checked"] > 0
    assert report["objects"]["source"] == "catalog"

    # `compare` reads the return series
    ar = copy_archive(archive_dir, tmp_path / "compare")
    assert_one_line_damage(cli("compare", task_run, "--archive", str(ar)), ar / "catalog.duckdb", "checksum")

    # a full run retries the failed loops and writes their manifests, which looks up which
    # experiments have a return series: it reads the damaged block
    ar = copy_archive(archive_dir, tmp_path / "full-retry")
    full = [
        "archive",
        "--rdagent-root",
        str(rd_root),
        "--archive",
        str(ar),
        "--mode",
        "full",
        "--no-progress",
    ]
    assert_one_line_damage(cli(*full), ar / "catalog.duckdb", "checksum")

    # commands that never read that block still work (status, the factor library, and an
    # incremental run, which leaves the unchanged failed loops alone)
    for name in ("status", "factors", "archive-incremental"):
        ar = copy_archive(archive_dir, tmp_path / name)
        done = cli(*COMMANDS[name](rd_root, ar))
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr

    # a full run skips unchanged loops; once a loop changed it rewrites that loop's return series,
    # which reads the damaged block
    for ret in (rd_root / "git_ignore_folder").rglob("ret.pkl"):
        os.utime(ret, ns=(ret.stat().st_atime_ns, ret.stat().st_mtime_ns + 10**9))
    ar = copy_archive(archive_dir, tmp_path / "full-run")
    assert_one_line_damage(cli(*COMMANDS["archive-full"](rd_root, ar)), ar / "catalog.duckdb", "checksum")


def test_python_api_raises_catalog_corrupt_error(clean: tuple[Path, Path], tmp_path: Path) -> None:
    _, clean_archive = clean
    header = copy_archive(clean_archive, tmp_path / "header")
    damage_header(header / "catalog.duckdb")
    clear_library_cache()
    with pytest.raises(CatalogCorruptError, match="not a DuckDB database file") as caught:
        factor_library(header)
    assert str(header / "catalog.duckdb") in str(caught.value) and "workbench repair" in str(caught.value)
    with pytest.raises(CatalogCorruptError, match="not a DuckDB database file"):
        read_frame(header, "SELECT * FROM wb_meta")

    truncated = copy_archive(clean_archive, tmp_path / "truncated")
    _, blocks = layout(truncated / "catalog.duckdb")
    last_table = max(blocks, key=lambda t: max((b for b, _ in blocks[t]), default=-1))  # in the cut-off half
    damage_truncate(truncated / "catalog.duckdb")
    with pytest.raises(CatalogCorruptError, match="file truncated"):
        read_frame(truncated, f"SELECT * FROM {last_table}")
    assert not verify_archive(truncated).catalog.ok

    bit = copy_archive(clean_archive, tmp_path / "bit")
    damage_one_bit(bit / "catalog.duckdb")
    assert read_frame(bit, "SELECT count(*) AS n FROM wb_objects")["n"][0] > 0  # other blocks read fine
    with pytest.raises(CatalogCorruptError, match="block checksum mismatch"):
        read_frame(bit, "SELECT * FROM aistock_return_series")
    # ordinary SQL errors stay what they are
    with pytest.raises(duckdb.CatalogException):
        read_frame(bit, "SELECT * FROM no_such_table")
    report = verify_archive(bit)
    assert not report.catalog.ok and report.objects.ok and report.exit_code == 5


def test_after_a_fatal_checkpoint_the_next_open_reports_the_damage_again(
    clean: tuple[Path, Path], tmp_path: Path
) -> None:
    """DuckDB invalidates a database whose checkpoint met a bad block; a notebook kernel opens it again."""
    _, clean_archive = clean
    bit = copy_archive(clean_archive, tmp_path / "bit")
    damage_one_bit(bit / "catalog.duckdb")
    with pytest.raises(CatalogCorruptError, match="block checksum mismatch"), open_catalog(bit) as con:
        con.execute(
            "INSERT INTO aistock_return_series (experiment_id, datetime) VALUES ('x', DATE '2020-01-02')"
        )
        con.execute("CHECKPOINT")  # rewrites the row group: reads the damaged block, a fatal error in DuckDB
    for _ in range(2):
        with pytest.raises(CatalogCorruptError, match="block checksum mismatch") as caught:
            read_frame(bit, "SELECT * FROM aistock_return_series")
        assert "invalidated" not in str(caught.value)


def test_verify_parts_and_exit_codes_on_a_clean_archive_and_a_missing_object(
    clean: tuple[Path, Path], tmp_path: Path
) -> None:
    _, clean_archive = clean
    ar = copy_archive(clean_archive, tmp_path / "ar")
    done = cli("verify", "--archive", str(ar), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["failed"] == []
    assert report["catalog"]["ok"] and report["catalog"]["error"] is None
    assert report["catalog"]["tables"]["aistock_return_series"] > 0
    assert report["objects"]["checked"] > 0

    victim = next(p for p in sorted((ar / "objects").glob("??/*")) if p.is_file())
    victim.unlink()
    done = cli("verify", "--archive", str(ar), "--json")
    assert done.returncode == 7 and done.stderr.strip() == ""
    report = json.loads(done.stdout)
    assert report["catalog"]["ok"] is True and report["objects"]["ok"] is False
    assert report["failed"] == ["objects"] and len(report["objects"]["missing"]) == 1

    # both broken: the catalog decides the exit code, the objects are still checked (from the files)
    damage_header(ar / "catalog.duckdb")
    rotten = next(p for p in sorted((ar / "objects").glob("??/*")) if p.is_file() and p.stat().st_size > 100)
    with open(rotten, "r+b") as f:
        f.seek(50)
        byte = f.read(1)[0]
        f.seek(50)
        f.write(bytes([byte ^ 0x01]))
    done = cli("verify", "--archive", str(ar), "--json")
    assert done.returncode == 5
    report = json.loads(done.stdout)
    assert report["failed"] == ["catalog", "objects"] and report["objects"]["source"] == "files"
    assert report["objects"]["checked"] > 0
    assert report["objects"]["damaged"] == [rotten.name.removesuffix(".zst")]


def test_cli_last_resort_turns_a_stray_duckdb_error_into_one_line(
    clean: tuple[Path, Path], tmp_path: Path
) -> None:
    from workbench.cli import _duckdb_error

    _, clean_archive = clean
    bit = copy_archive(clean_archive, tmp_path / "bit")
    damage_one_bit(bit / "catalog.duckdb")
    con = duckdb.connect(str(bit / "catalog.duckdb"), read_only=True)
    try:
        with pytest.raises(duckdb.Error) as damage:
            con.execute("SELECT * FROM aistock_return_series").fetchall()
        with pytest.raises(duckdb.Error) as query:
            con.execute("SELECT * FROM no_such_table").fetchall()
    finally:
        con.close()
    error = _duckdb_error(damage.value, ["status", "--archive", str(bit)])
    assert isinstance(error, CatalogCorruptError) and error.exit_code == 5
    assert str(bit / "catalog.duckdb") in str(error) and "workbench repair" in str(error)
    plain = _duckdb_error(query.value, ["status", "--archive", str(bit)])
    assert plain is not None and plain.exit_code == 1 and "\n" not in str(plain)
    assert not isinstance(plain, CatalogCorruptError)
