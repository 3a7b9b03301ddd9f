"""Commands for the team's lake: publish an archive to Delta Lake tables."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from workbench.cli.options import DEFAULT_ARCHIVE, ArchiveUriOpt, CacheDirOpt, EndpointOpt, JsonOpt


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)


def publish(
    lake: Annotated[
        str,
        typer.Option("--lake", help="The lake: a folder or s3://BUCKET/PREFIX (AWS_* environment for S3)."),
    ],
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Publish the archive's factors, strategies, experiments and return series to the lake's Delta tables.

    Merges by the stable ids: only new or changed rows are written (publishing again commits
    nothing), a re-archived experiment's rows are replaced, and several machines may publish
    into one lake at once.
    """
    from workbench.archive.remote import remote_settings
    from workbench.lake.publication import publish as run_publish

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        result = run_publish(archive, lake)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if json_output else result.format())
