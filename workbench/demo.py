"""The main job on the embedded default: sample installation → archive → summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.archive.pipeline import archive as run_archive
from workbench.archive.runs import RunSummary
from workbench.archive.status import archive_status


def _expected_broken(sample: Path) -> set[str]:
    """Files the sample generator broke on purpose (its quirks), as absolute paths; none elsewhere."""
    try:
        manifest = json.loads((sample / "sample_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a real installation has no sample manifest
        return set()
    broken = manifest.get("quirks", {}).get("broken_files", []) if isinstance(manifest, dict) else []
    return {str((sample / (b["path"] if isinstance(b, dict) else b)).resolve()) for b in broken}


def planted_errors(
    summary: RunSummary, rdagent_root: Path | str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's loop errors split into (planted by the sample on purpose, real ones)."""
    expected = _expected_broken(Path(rdagent_root))
    planted: list[dict[str, Any]] = []
    real: list[dict[str, Any]] = []
    for error in summary.errors:
        path = error.get("path")
        (planted if path and str(Path(path).resolve()) in expected else real).append(error)
    return planted, real


def describe_run(summary: RunSummary, rdagent_root: Path | str) -> str:
    """The run summary, saying which loop errors are the sample's planted defects (the notebooks and
    the demo print this): on the embedded sample a clean run has exactly those; anything else, and
    every error on a real installation, is a real failure and reads as one."""
    text = summary.format()
    planted, real = planted_errors(summary, rdagent_root)
    if planted and not real:
        return text + (
            f"\n  all {len(planted)} errors are files the sample breaks on purpose "
            "(sample_manifest.json, quirks.broken_files): the run recorded them and went on"
        )
    if planted:
        return text + (
            f"\n  {len(planted)} errors are files the sample breaks on purpose; "
            f"{len(real)} are real failures: look at those"
        )
    return text


def run_demo(*, out: Path, archive: Path, seed: int = 0) -> tuple[str, bool]:
    """Generate the sample once (kept across runs), archive it incrementally, describe the result.

    Returns the text to print and whether anything failed other than the sample's deliberately
    broken files.
    """
    from workbench.sample.generate import generate_sample

    out, archive = Path(out), Path(archive)
    lines = []
    if not (out / "RDagentDB" / "registry.sqlite").exists():
        generate_sample(out, seed=seed)
        lines.append(f"generated a sample RD-Agent installation in {out}")
    else:
        lines.append(f"using the sample RD-Agent installation in {out}")
    summary = run_archive(out, archive=archive, mode="incremental", progress=True)
    lines.append(describe_run(summary, out))
    _, unexpected = planted_errors(summary, out)
    lines.append("")
    lines.append(archive_status(archive).format())
    lines.append("")
    lines.append("next:")
    lines.append(f"  workbench status --archive {archive}")
    lines.append(
        "  jupyter lab notebooks/   (archive_incremental, factor_library, strategy_comparison, cleanup_review)"
    )
    lines.append(f"  workbench cleanup --rdagent-root {out} --archive {archive} --dry-run")
    return "\n".join(lines), bool(unexpected)


def ensure_sample(out: Path | str, *, seed: int = 0) -> Path:
    """The sample installation at `out`, generated on first use (notebooks call this)."""
    from workbench.sample.generate import generate_sample

    out = Path(out)
    if not (out / "RDagentDB" / "registry.sqlite").exists():
        generate_sample(out, seed=seed)
    return out
