"""Commands that make and read an archive: sample, archive, status, verify, restore, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:  # the commands import the archive lazily, to start fast
    from workbench.archive.selection import Mode

from workbench.cli.options import (
    DEFAULT_ARCHIVE,
    DEFAULT_SAMPLE,
    ArchiveOpt,
    ArchiveUriOpt,
    CacheDirOpt,
    EndpointOpt,
    LakeOpt,
    PathMapOpt,
    RegistryOpt,
    RootOpt,
)


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
    app.command("archive")(archive)
    app.command("status")(status)
    app.command("verify")(verify)
    app.command("restore")(restore)
    app.command("repair")(repair)
    app.command("demo")(demo)
    app.command("report")(report)


def sample(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to create (must not exist or be empty).")
    ] = DEFAULT_SAMPLE,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same installation.")] = 0,
    task_runs: Annotated[int, typer.Option(help="Number of ordinary task runs.")] = 3,
    loops_per_run: Annotated[int, typer.Option(help="Loops per task run.")] = 4,
    trading_days: Annotated[int, typer.Option(help="Trading days in each return series.")] = 60,
    heavy_bytes: Annotated[
        int, typer.Option(help="Approximate size of each heavy intermediate file.")
    ] = 32_768,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: by size).")] = None,
) -> None:
    """Generate a sample RD-Agent installation (registry, workspaces, logs, quirks included)."""
    from workbench.sample.generate import auto_workers, generate_sample

    info = generate_sample(
        out,
        seed=seed,
        task_runs=task_runs,
        loops_per_run=loops_per_run,
        trading_days=trading_days,
        heavy_bytes=heavy_bytes,
        workers=workers or auto_workers(task_runs=task_runs, loops_per_run=loops_per_run),
    )
    data = info.to_dict()
    typer.echo(f"sample installation written to {out}")
    typer.echo(
        f"  loops in registry: {len(data.get('loops', []))}, experiments with results: "
        f"{len(data.get('experiments_expected', []))}"
    )
    typer.echo(f"  manifest: {out / 'sample_manifest.json'}")


def archive(
    rdagent_root: RootOpt = DEFAULT_SAMPLE,
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    mode: Annotated[
        str,
        typer.Option(
            help="full: every loop (failed ones retried); incremental: new or changed loops, loops below "
            "target, and failed loops once their files or rows changed (or the failure was not their input's)."
        ),
    ] = "full",
    registry: RegistryOpt = None,
    path_map: PathMapOpt = [],  # noqa: B006
    since: Annotated[str | None, typer.Option(help="Only loops at or after this date (YYYY-MM-DD).")] = None,
    hours: Annotated[
        float | None,
        typer.Option(
            help="Incremental: only new loops of the last N hours (failed and below-target loops always pass)."
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            help="Incremental: only the latest N new loops (failed and below-target loops always pass)."
        ),
    ] = None,
    target_level: Annotated[
        int, typer.Option(help="1: catalog rows only; 2: rows plus verified key files.")
    ] = 2,
    batch_size: Annotated[int, typer.Option(help="Loops committed per transaction.")] = 200,
    include_heavy: Annotated[
        bool, typer.Option("--include-heavy", help="Also store heavy intermediates.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
    publish: Annotated[
        str | None,
        typer.Option(
            "--publish", help="Then publish the archive to this lake (folder or s3://BUCKET/PREFIX)."
        ),
    ] = None,
) -> None:
    """Archive an RD-Agent installation (levels 0 → 1 → 2), full or incremental; exits 1 if any loop failed."""
    from workbench.archive.pipeline import archive as run_archive
    from workbench.archive.remote import remote_settings

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        summary = run_archive(
            rdagent_root,
            archive=archive,
            mode=cast("Mode", mode),  # checked by archive(): an unknown mode is a ConfigError (exit 2)
            registry=registry,
            path_map=path_map,
            since=since,
            hours=hours,
            last=last,
            target_level=target_level,
            batch_size=batch_size,
            include_heavy=include_heavy,
            progress=not no_progress,
        )
        typer.echo(json.dumps(summary.to_dict(), indent=2, default=str) if json_output else summary.format())
        if (
            publish is not None
        ):  # the run's last step: what it archived (failed loops stay out) goes to the lake
            from workbench.lake.publication import publish as run_publish

            published = run_publish(archive, publish)
            typer.echo(json.dumps(published.to_dict(), default=str) if json_output else published.format())
    if summary.failed:
        raise typer.Exit(1)


def status(
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    level: Annotated[int | None, typer.Option(help="Only experiments at this level.")] = None,
    task_run: Annotated[str | None, typer.Option(help="Only this task run.")] = None,
    errors_only: Annotated[
        bool, typer.Option("--errors", help="Only experiments whose last run failed.")
    ] = False,
    experiments: Annotated[
        bool, typer.Option("--experiments", help="List every experiment with its ids.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    lake: LakeOpt = None,
) -> None:
    """Show archive status: experiments by level and task run, recent runs, open errors."""
    from workbench.archive.remote import remote_settings
    from workbench.archive.status import archive_status

    if lake is not None:
        from workbench.errors import ConfigError
        from workbench.lake.status import lake_status

        if level is not None or task_run or errors_only or experiments:
            raise ConfigError(
                "--lake shows the whole lake: leave out --level, --task-run, --errors, --experiments"
            )
        shown = lake_status(lake)
        typer.echo(json.dumps(shown.to_dict(), indent=2, default=str) if json_output else shown.format())
        return
    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        report = archive_status(
            archive, level=level, task_run_id=task_run, errors_only=errors_only, list_experiments=experiments
        )
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str) if json_output else report.format())


def verify(
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    read_data: Annotated[
        bool,
        typer.Option(
            "--read-data",
            help="Re-hash every stored byte: objects, packs, series (slower; reads the whole archive).",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the archive in parts: catalog, objects, manifests, records (and packs with --read-data);
    for an s3:// archive also that the bucket holds every file of this machine's cache.

    Exits 5 when the catalog is damaged, 7 when an object, manifest, record or pack is missing or
    damaged (the first failing part decides), 0 when every part passed.
    """
    from workbench.archive.remote import remote_settings
    from workbench.archive.verify import verify_archive

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        report = verify_archive(archive, read_data=read_data)
    typer.echo(json.dumps(report.to_dict(), indent=2) if json_output else report.format())
    if not report.catalog.ok:  # like every other command meeting a damaged catalog: one line on stderr
        typer.echo(f"error: {report.catalog.error}", err=True)
    if not report.ok:
        raise typer.Exit(report.exit_code)


def restore(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id (or workspace id) to rebuild.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write the workspace files into.")],
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Rebuild the archived files of a workspace byte for byte into a folder."""
    from workbench.archive.remote import remote_settings
    from workbench.archive.restore import restore_experiment

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        result = restore_experiment(experiment_id, to=to, archive=archive)
    typer.echo(
        f"restored {result.files} files ({result.bytes:,} bytes) of {result.experiment_id} into {result.target}"
    )
    for path in result.left_out[:20]:
        typer.echo(f"  not archived (deliberately left out): {path}")


def repair(
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    rdagent_root: Annotated[
        Path | None,
        typer.Option(
            "--rdagent-root",
            help="RD-Agent installation to take damaged objects from again "
            "(default: the one the last archive run used).",
        ),
    ] = None,
    path_map: Annotated[
        list[str] | None, typer.Option("--path-map", help="FROM=TO path rule (repeatable).")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the catalog from disk even if it reads fine.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rebuild a missing or damaged catalog from snapshots and records, store damaged objects again.

    The damaged catalog is moved to damaged/, never deleted. Exits 7 when something could not
    be repaired (listed, with the experiments that lose a file).
    """
    from workbench.archive.remote import remote_settings
    from workbench.archive.repair import repair as repair_archive

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        report = repair_archive(archive, rdagent_root=rdagent_root, path_map=path_map or [], rebuild=rebuild)
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str) if json_output else report.format())
    if not report.ok:
        raise typer.Exit(7)


def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the sample installation goes.")] = DEFAULT_SAMPLE,
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    seed: Annotated[int, typer.Option(help="Sample seed.")] = 0,
) -> None:
    """The main job on the embedded default: make a sample installation (once), archive it, summarise."""
    from workbench.demo import run_demo

    text, failed = run_demo(out=out, archive=archive, seed=seed)
    typer.echo(text)
    if failed:
        raise typer.Exit(1)


def report(
    notebook: Annotated[
        Path, typer.Argument(help="An executed notebook (.ipynb), e.g. one papermill wrote.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write (default: next to the notebook, .html).")
    ] = None,
) -> None:
    """Write an HTML copy of an executed notebook that opens offline (charts inline, nothing from a CDN)."""
    from workbench.widgets.report import export_html

    typer.echo(f"wrote {export_html(notebook, out)}")
