"""The CLI: thin commands with help text, documented in the README, with the documented exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer.main

from workbench.cli import app, main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def command_names() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names.append(name)
        if sub:
            names += [f"{name} {child}" for child in sub]
    return names


def test_every_command_has_help_and_a_readme_entry() -> None:
    group = typer.main.get_command(app)
    names = command_names()
    assert {"sample", "archive", "status", "verify", "restore", "demo"} <= set(names)
    for name in names:
        parts = name.split()
        command = group.commands[parts[0]]  # type: ignore[attr-defined]
        if len(parts) == 2:
            command = command.commands[parts[1]]
        assert (command.help or "").strip(), f"`workbench {name}` has no help text"
        assert re.search(rf"`workbench {re.escape(name)}\b", README), (
            f"README does not document `workbench {name}`"
        )


def test_every_command_help_renders(capsys) -> None:
    for name in command_names():
        assert main([*name.split(), "--help"]) == 0, name
        assert "Usage" in capsys.readouterr().out


def test_demo_runs_the_main_job_and_succeeds(tmp_path: Path, capsys) -> None:
    code = main(["demo", "--out", str(tmp_path / "sample"), "--archive", str(tmp_path / "archive")])
    out = capsys.readouterr().out
    assert code == 0
    assert "level 2:" in out and "files the sample breaks on purpose" in out
    assert (tmp_path / "archive" / "catalog.duckdb").exists()


def test_archive_exit_codes_and_json_summary(rd_root: Path, archive_dir: Path, capsys) -> None:
    code = main(
        ["archive", "--rdagent-root", str(rd_root), "--archive", str(archive_dir), "--json", "--no-progress"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 1, "the sample has broken files, so some loops fail"
    assert summary["level2"] > 0 and summary["errors"]
    assert main(["status", "--archive", str(archive_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert sum(r["experiments"] for r in status["by_level"]) > 0
    assert main(["verify", "--archive", str(archive_dir)]) == 0


def test_missing_archive_and_bad_options_map_to_documented_codes(tmp_path: Path, capsys) -> None:
    assert main(["status", "--archive", str(tmp_path / "nothing")]) == 5
    assert "no archive at" in capsys.readouterr().err
    assert (
        main(
            [
                "archive",
                "--rdagent-root",
                str(tmp_path),
                "--archive",
                str(tmp_path / "a"),
                "--mode",
                "sideways",
            ]
        )
        == 2
    )


def test_restore_rebuilds_files_byte_for_byte(rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    import duckdb

    main(["archive", "--rdagent-root", str(rd_root), "--archive", str(archive_dir), "--no-progress"])
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    exp_id, workspace_dir, refs = con.execute(
        "SELECT id, workspace_dir, file_refs_json FROM aistock_experiments WHERE archiving_level = 2 LIMIT 1"
    ).fetchall()[0]
    con.close()
    target = tmp_path / "restored"
    assert main(["restore", exp_id, "--to", str(target), "--archive", str(archive_dir)]) == 0
    kept = [r["path"] for r in json.loads(refs) if r["kept"]]
    assert kept
    for rel in kept:
        if not rel.startswith("sub/"):
            assert (target / rel).read_bytes() == (Path(workspace_dir) / rel).read_bytes(), rel
