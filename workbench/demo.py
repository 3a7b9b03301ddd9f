"""The main job on the embedded default: sample installation → archive → summary."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.archive.pipeline import archive as run_archive
from workbench.archive.status import archive_status


def _expected_broken(sample: Path) -> set[str]:
    """Files the sample generator broke on purpose (its quirks), as absolute paths."""
    manifest = json.loads((sample / "sample_manifest.json").read_text(encoding="utf-8"))
    broken = manifest.get("quirks", {}).get("broken_files", [])
    return {str((sample / (b["path"] if isinstance(b, dict) else b)).resolve()) for b in broken}


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
    lines.append(summary.format())
    expected = _expected_broken(out)
    unexpected = [
        e for e in summary.errors if not e.get("path") or str(Path(e["path"]).resolve()) not in expected
    ]
    if summary.errors and not unexpected:
        lines.append(
            f"  (all {len(summary.errors)} errors are files the sample breaks on purpose: "
            "the run recorded them and went on)"
        )
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
