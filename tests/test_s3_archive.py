"""Archives in a bucket (``s3://BUCKET/PREFIX``) on a real S3 server (SeaweedFS on loopback).

Two machines are two cache folders (and two RD-Agent installations made by the sample generator
with different seeds); "at the same time" is two `workbench archive` processes started together.
Faults are injected at the bucket layer's own seam (`faults.check("s3", key)`), never by patching.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cleanup_helpers import Env, copy_tree_keeping_links, files_under
from lake_helpers import assert_lake_equals_catalogs
from seaweedfs import SeaweedFS
from test_durability import assert_same_tables, catalog_tables

from workbench.archive import archive, archive_status, verify_archive
from workbench.archive.remote import RemoteArchive, remote_settings
from workbench.archive.repair import repair
from workbench.archive.restore import restore_experiment
from workbench.cleanup import cleanup, undo_plan
from workbench.cli import main
from workbench.errors import RemoteArchiveError
from workbench.sample.generate import generate_sample

pytestmark = pytest.mark.xdist_group("s3")
REPO = Path(__file__).resolve().parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`workbench ARGS` in its own process (a machine of its own when its --cache-dir is its own)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from workbench.cli import run; sys.argv[0] = 'workbench'; run()",
            *args,
        ],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def installation(tmp_path: Path, name: str, seed: int) -> Path:
    root = tmp_path / name
    generate_sample(root, seed=seed, task_runs=2, loops_per_run=3)
    return root


def cache_catalog(cache_dir: Path) -> Path:
    (folder,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    return folder / "catalog.duckdb"


def experiments(catalog: Path) -> dict[str, dict]:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        rows = con.execute(
            "SELECT id, task_run_id, workspace_id, file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
        ).fetchall()
    finally:
        con.close()
    return {r[0]: {"task_run_id": r[1], "workspace_id": r[2], "file_refs": json.loads(r[3])} for r in rows}


def workspace_file(rd: Path, experiment: dict, rel: str) -> Path:
    root = rd / "git_ignore_folder" / "RD-Agent_workspace"
    if rel.startswith("sub/"):
        _sub, ws_id, rest = rel.split("/", 2)
        return root / ws_id / rest
    return root / experiment["workspace_id"] / rel


def test_two_machines_archive_into_one_bucket_at_once_and_lose_nothing(
    bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/team"
    rd = {"a": installation(tmp_path, "rd_a", 1), "b": installation(tmp_path, "rd_b", 2)}
    procs = {
        m: cli(
            [
                "archive",
                "--rdagent-root",
                str(rd[m]),
                "--archive",
                uri,
                "--cache-dir",
                str(tmp_path / f"cache_{m}"),
                "--no-progress",
                "--batch-size",
                "2",
            ],
            s3_env,
        )
        for m in rd
    }
    for m, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1), (m, out.decode(), err.decode())  # 1: a sample quirk loop failed
    own = {m: experiments(cache_catalog(tmp_path / f"cache_{m}")) for m in rd}
    assert own["a"] and own["b"] and not set(own["a"]) & set(own["b"])

    # a third machine: nothing but the bucket
    with remote_settings(cache_dir=tmp_path / "cache_c"):
        report = verify_archive(uri, read_data=True)
        assert report.ok, report.format()
        assert report.parts["bucket"].checked > 0
        everything = experiments(cache_catalog(tmp_path / "cache_c"))
        assert set(everything) == set(own["a"]) | set(own["b"])
        for m in rd:
            for experiment_id, experiment in own[m].items():
                target = tmp_path / "restored" / experiment_id
                result = restore_experiment(experiment_id, to=target, archive=uri)
                kept = [r for r in experiment["file_refs"] if r["kept"]]
                assert result.files == len(kept) > 0
                for ref in kept:
                    assert (
                        sha(target / ref["path"])
                        == ref["sha256"]
                        == sha(workspace_file(rd[m], experiment, ref["path"]))
                    )
    # every machine converges on the same catalog: rows are equal table by table, except the
    # first-seen metadata of library rows both machines wrote and which machine's pack serves an
    # object both stored (whichever record was applied last); their keys are equal there too
    fresh = catalog_tables(cache_catalog(tmp_path / "cache_c"))
    shared = {"aistock_factors", "aistock_factor_combinations", "wb_objects"}
    for m in rd:
        with remote_settings(cache_dir=tmp_path / f"cache_{m}"):
            archive_status(uri)
        mine = catalog_tables(cache_catalog(tmp_path / f"cache_{m}"))
        assert_same_tables(
            {t: r for t, r in fresh.items() if t not in shared},
            {t: r for t, r in mine.items() if t not in shared},
        )
        for table in shared:
            assert sorted(r[0] for r in mine[table]) == sorted(r[0] for r in fresh[table])
    # each machine's cursor is its own: an incremental run on A after B's records finds nothing to do
    with remote_settings(cache_dir=tmp_path / "cache_a"):
        again = archive(rd["a"], archive=uri, mode="incremental", progress=False)
        assert again.level2 == 0
        cursors = (
            duckdb.connect(str(cache_catalog(tmp_path / "cache_a")), read_only=True)
            .execute("SELECT name FROM wb_cursor ORDER BY name")
            .fetchall()
        )
        assert len(cursors) == 2 and all(name.startswith("registry@") for (name,) in cursors)


def test_a_lost_cache_is_rebuilt_from_the_bucket_alone(
    bucket: str, s3_env: dict[str, str], rd_root: Path, tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/ar"
    with remote_settings(cache_dir=tmp_path / "cache"):
        archive(rd_root, archive=uri, progress=False)
        status = archive_status(uri)
    original = cache_catalog(tmp_path / "cache")
    # the machine's disk keeps no copy of what is in the bucket: objects and packs are read on demand
    assert not [*original.parent.glob("objects/*/*"), *original.parent.glob("packs/*/*")]
    with remote_settings(cache_dir=tmp_path / "cache"):
        verify = verify_archive(uri, read_data=True)
        assert verify.ok and verify.checked > 0, verify.format()
    before = catalog_tables(original)
    shutil.rmtree(tmp_path / "cache")
    with remote_settings(cache_dir=tmp_path / "cache"):
        report = repair(uri)
        assert report.ok, report.format()
        assert archive_status(uri).to_dict()["by_task_run"] == status.to_dict()["by_task_run"]
    assert_same_tables(before, catalog_tables(cache_catalog(tmp_path / "cache")))


def bucket_keys(seaweedfs: SeaweedFS, bucket: str, folder: str) -> list[str]:
    pages = (
        seaweedfs.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"ar/{folder}/")
    )
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_an_interrupted_upload_leaves_no_record_without_its_files_and_the_next_run_completes_it(
    seaweedfs: SeaweedFS, bucket: str, s3_env: dict[str, str], rd_root: Path, tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/ar"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    args = ["archive", "--rdagent-root", str(rd_root), "--archive", uri, *cache, "--no-progress"]
    failing = cli(args, {**s3_env, "WORKBENCH_FAULTS": "eio:s3:after=40"})
    out, err = failing.communicate(timeout=300)
    assert failing.returncode == RemoteArchiveError.exit_code, (out.decode(), err.decode())
    assert "run the command again" in err.decode() and bucket in err.decode()
    assert bucket_keys(seaweedfs, bucket, "objects") or bucket_keys(seaweedfs, bucket, "packs")
    # batches committed before the fault may already be uploaded (records go last, after their
    # files); whatever records the bucket holds, another machine finds every file they refer to
    if bucket_keys(seaweedfs, bucket, "records"):
        with remote_settings(cache_dir=tmp_path / "other"):
            report = verify_archive(uri, read_data=True)
            assert report.ok, report.format()
    # the next run on the same machine uploads the rest first
    again = cli(["status", "--archive", uri, *cache], s3_env)
    again.communicate(timeout=300)
    finish = cli(args[:-1] + ["--no-progress", "--mode", "incremental"], s3_env)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode in (0, 1), err.decode()
    assert bucket_keys(seaweedfs, bucket, "records")
    with remote_settings(cache_dir=tmp_path / "third"):
        report = verify_archive(uri, read_data=True)
        assert report.ok, report.format()
        assert experiments(cache_catalog(tmp_path / "third")) == experiments(
            cache_catalog(tmp_path / "cache")
        )


def test_cleanup_against_a_bucket_plans_confirms_and_undoes_as_against_a_folder(
    seaweedfs: SeaweedFS,
    bucket: str,
    s3_env: dict[str, str],
    env: Env,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = f"s3://{bucket}/ar"
    rd = tmp_path / "rd_s3"
    copy_tree_keeping_links(env.rd, rd)
    with remote_settings(cache_dir=tmp_path / "cache"):
        archive(rd, archive=uri, progress=False)
        local_plan = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True).plan
        s3_plan = cleanup(rd, archive=uri, stage="full", dry_run=True).plan

        def shape(plan: object, root: Path) -> list[tuple[str, str]]:
            return sorted((str(Path(i.path).relative_to(root)), i.rule) for i in plan.items)  # type: ignore[attr-defined]

        assert shape(s3_plan, rd) == shape(local_plan, env.rd) != []
        before = files_under(rd / "git_ignore_folder" / "RD-Agent_workspace")
        outcome = cleanup(rd, archive=uri, stage="full", confirm=True, yes=True)
        assert outcome.ok and len(outcome.plan.items) == len(local_plan.items)
        assert files_under(rd / "git_ignore_folder" / "RD-Agent_workspace") != before
        result = undo_plan(outcome.plan.plan_id, rdagent_root=rd, archive=uri)
        assert not result.refused
        assert files_under(rd / "git_ignore_folder" / "RD-Agent_workspace") == before
    # the plan, the moves and the undo are records in the bucket: another machine sees them
    with remote_settings(cache_dir=tmp_path / "other"):
        archive_status(uri)
    con = duckdb.connect(str(cache_catalog(tmp_path / "other")), read_only=True)
    assert con.execute("SELECT DISTINCT state FROM wb_deletions").fetchall() == [("restored",)]
    con.close()

    # an object the bucket lost (this machine still has it) keeps its experiment out of the plan
    victim = next(i for i in s3_plan.items if i.experiment_ids)
    cache = cache_catalog(tmp_path / "cache")
    con = duckdb.connect(str(cache), read_only=True)
    key = con.execute(
        "SELECT o.storage_key FROM wb_stored_files f JOIN wb_objects o USING (sha256) "
        "WHERE f.experiment_id = ? AND o.storage_key NOT LIKE 'pack:%' LIMIT 1",
        [victim.experiment_ids[0]],
    ).fetchone()[0]
    con.close()
    seaweedfs.client().delete_object(Bucket=bucket, Key=f"ar/objects/{key}")
    with remote_settings(cache_dir=tmp_path / "cache"):
        plan = cleanup(rd, archive=uri, stage="full", dry_run=True).plan
    assert victim.path not in {i.path for i in plan.items}
    assert any(uri in str(e) for e in plan.exclusions)
    # and `verify` names the key the bucket lost, with its own exit code
    code = main(["verify", "--archive", uri, "--cache-dir", str(tmp_path / "other")])
    assert code == 7
    assert f"s3://{bucket}/ar/objects/{key} is missing" in capsys.readouterr().out


def test_errors_name_the_bucket_and_what_to_do(
    seaweedfs: SeaweedFS,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["status", "--archive", "s3://no-such-bucket/ar", *cache]) == 12
    assert "bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    assert main(["status", "--archive", "s3://b/ar", "--endpoint-url", "http://127.0.0.1:9", *cache]) == 12
    assert "cannot be reached" in capsys.readouterr().err
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert main(["status", "--archive", "s3://b/ar", *cache]) == 12
    assert "no AWS credentials" in capsys.readouterr().err
    assert main(["factors", "--archive", "s3://b/ar"]) == 2  # commands that take only a folder say so
    assert "s3:// archive is opened by" in capsys.readouterr().err


def test_a_cache_folder_belongs_to_one_archive(bucket: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    remote = RemoteArchive(f"s3://{bucket}/one", cache_dir=tmp_path)
    (remote.root / "remote.json").write_text(json.dumps({"uri": f"s3://{bucket}/two", "writer": "x"}))
    with pytest.raises(Exception, match="belongs to"):
        RemoteArchive(f"s3://{bucket}/one", cache_dir=tmp_path)


def test_publish_reads_an_archive_in_the_bucket_on_a_machine_that_never_archived(
    bucket: str, s3_env: dict[str, str], rd_root: Path, tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/ar"
    with remote_settings(cache_dir=tmp_path / "archiving"):
        archive(rd_root, archive=uri, progress=False)
    lake = tmp_path / "lake"
    published = cli(
        ["publish", "--archive", uri, "--cache-dir", str(tmp_path / "reading"), "--lake", str(lake)], s3_env
    )
    out, err = published.communicate(timeout=300)
    assert published.returncode == 0, err.decode()
    assert b"experiments new or changed" in out
    # the reading machine's cache was pulled from the bucket alone, and the lake equals it
    assert_lake_equals_catalogs(lake, [cache_catalog(tmp_path / "reading").parent])
    assert_lake_equals_catalogs(lake, [cache_catalog(tmp_path / "archiving").parent])
