"""Options shared by the commands, defined once: the same flag means the same thing everywhere.

Also turns the cleanup policy's fields (`workbench.cleanup.CleanupPolicy`, where the planning
options are defined) into command-line options, so `workbench cleanup` offers exactly them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from workbench.archive.layout import DEFAULT_ARCHIVE
from workbench.cleanup.policy import CleanupPolicy, option_spec, policy_fields

__all__ = [
    "DEFAULT_ARCHIVE",
    "DEFAULT_SAMPLE",
    "ArchiveOpt",
    "ArchiveUriOpt",
    "CacheDirOpt",
    "EndpointOpt",
    "JsonOpt",
    "LakeOpt",
    "PathMapOpt",
    "PlanRootOpt",
    "RegistryOpt",
    "RequiredRootOpt",
    "RootOpt",
    "given",
    "with_policy_options",
]

DEFAULT_SAMPLE = Path("data/sample")
"""The embedded sample installation: the default of commands that only read an installation."""

ArchiveOpt = Annotated[Path, typer.Option("--archive", help="Archive folder (catalog.duckdb + objects/).")]
ArchiveUriOpt = Annotated[
    str,
    typer.Option(
        "--archive",
        help="Archive folder (catalog.duckdb + objects/), or s3://BUCKET/PREFIX for an archive in a bucket "
        "(used through this machine's cache; see --cache-dir).",
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="S3 endpoint of an s3:// archive (default: AWS_ENDPOINT_URL / ~/.aws/config, else AWS).",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Where this machine keeps its cache of s3:// archives, one subfolder each "
        "(default: WORKBENCH_CACHE_DIR, else $XDG_CACHE_HOME/workbench).",
    ),
]
RootOpt = Annotated[
    Path,
    typer.Option("--rdagent-root", help="RD-Agent repo root (holds RDagentDB/, git_ignore_folder/, log/)."),
]
RequiredRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--rdagent-root",
        help="RD-Agent repo root (holds RDagentDB/, git_ignore_folder/, log/); required, never defaulted "
        "for a command that deletes.",
    ),
]
PlanRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--rdagent-root",
        help="Default: the RD-Agent root each plan was made for; if given it must be that root.",
    ),
]
RegistryOpt = Annotated[
    Path | None, typer.Option("--registry", help="Registry file (default ROOT/RDagentDB/registry.sqlite).")
]
PathMapOpt = Annotated[
    list[str], typer.Option("--path-map", help="FROM=TO prefix rule for registry paths; repeatable.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake",
        help="Read the team's Delta Lake tables at this URI (a folder or s3://BUCKET/PREFIX) instead of --archive.",
    ),
]


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set this option (on the command line or through the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


F = TypeVar("F", bound=Callable[..., Any])


def with_policy_options(after: str, only: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Give a command one option per cleanup policy field (or per field named in `only`), inserted
    after the parameter `after`.

    The command takes them as ``**policy_options``; Typer reads the generated signature, so the
    help, flags and defaults are the policy's own.
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = next(i for i, p in enumerate(fixed) if p.name == after) + 1
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*fixed[:at], *_policy_parameters(only), *fixed[at:]]
        )
        return command

    return decorate


def _policy_parameters(only: tuple[str, ...] | None) -> list[inspect.Parameter]:
    hints = get_type_hints(CleanupPolicy)
    out = []
    for f in policy_fields():
        spec = option_spec(f)
        if not spec.on_cli or (only is not None and f.name not in only):
            continue
        kind = spec.cli_type if spec.cli_type is not None else hints[f.name]
        option = typer.Option(*spec.flags, help=spec.help)
        out.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=f.default,
                annotation=Annotated[kind, option],
            )
        )
    return out
