"""Cleanup commands: cleanup (dry run / confirm) with approve, undo, purge, plans; hold, release,
holds; export-cleanup-manifest. Each is a thin wrapper over one `workbench.cleanup` function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cleanup.policy import MANIFEST_OPTIONS
from workbench.cli.options import (
    DEFAULT_ARCHIVE,
    DEFAULT_SAMPLE,
    ArchiveOpt,
    ArchiveUriOpt,
    CacheDirOpt,
    EndpointOpt,
    JsonOpt,
    PathMapOpt,
    PlanRootOpt,
    RegistryOpt,
    RequiredRootOpt,
    RootOpt,
    given,
    with_policy_options,
)

cleanup_app = typer.Typer(
    name="cleanup",
    help="Clean up RD-Agent workspaces and logs the archive provably holds: plan, approve, quarantine, purge or undo.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    """Add the cleanup commands to the main app."""
    app.add_typer(cleanup_app, name="cleanup")
    app.command("hold")(hold)
    app.command("release")(release)
    app.command("holds")(holds)
    app.command("export-cleanup-manifest")(export_cleanup_manifest)


@cleanup_app.callback()
@with_policy_options(after="yes")
def cleanup(
    ctx: typer.Context,
    rdagent_root: RequiredRootOpt = None,
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the exact plan and store it (nothing is changed).")
    ] = False,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="Apply: re-plan under the archive lock, re-verify each item, move it to quarantine "
            "(restorable). At a terminal the plan is shown and you are asked first; without one "
            "(cron, scripts) it applies.",
        ),
    ] = False,
    approval: Annotated[
        str | None,
        typer.Option(
            "--approval", help="With --confirm: apply only what this approval approved; exit 9 if it changed."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="With --confirm at a terminal: apply without asking.")
    ] = False,
    active_list: Annotated[
        Path | None,
        typer.Option(
            "--active-list", help="File of task-run/workspace ids under active debugging, one a line."
        ),
    ] = None,
    registry: RegistryOpt = None,
    path_map: PathMapOpt = [],  # noqa: B006
    json_output: JsonOpt = False,
    **policy_options: Any,
) -> None:
    """Plan (--dry-run) or apply (--confirm) a cleanup; subcommands approve, undo, purge, plans."""
    if ctx.invoked_subcommand is not None:
        return
    from workbench.archive.remote import remote_settings
    from workbench.cleanup import PLANNING_OPTIONS
    from workbench.cleanup import cleanup as run_cleanup
    from workbench.cleanup.job import CHOOSE_ONE
    from workbench.errors import ConfigError

    if dry_run == confirm:  # before anything is planned, shown or asked
        raise ConfigError(CHOOSE_ONE)
    root: Path | None = rdagent_root
    if root is None and not approval:
        raise ConfigError(
            "--rdagent-root is required: cleanup never guesses which installation to delete from "
            "(only --confirm --approval ID takes the root from the approved plan)"
        )
    options: dict[str, Any] = dict(
        archive=archive,
        active_list=active_list,
        registry=registry,
        path_map=path_map,
        given=[name for name in PLANNING_OPTIONS if given(ctx, name)],
        **policy_options,
    )
    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        expect = None
        if confirm and not approval and not yes and _at_a_terminal():
            # a person is there: show the plan and ask; scripts and cron (no terminal) apply, as --confirm says
            shown = run_cleanup(root, dry_run=True, **options)
            typer.echo(shown.plan.format())
            if not shown.plan.items:
                typer.echo("nothing to clean up")
                return
            typer.confirm(
                f"move these {len(shown.plan.items)} plan items to quarantine (restorable with "
                "`workbench cleanup undo`)?",
                abort=True,
            )
            expect = shown.plan.plan_hash
        outcome = run_cleanup(
            root,
            dry_run=dry_run,
            confirm=confirm,
            approval=approval,
            yes=yes,
            expect_plan_hash=expect,
            **options,
        )
    if json_output:
        typer.echo(json.dumps(outcome.to_dict(), indent=2, default=str, ensure_ascii=False))
    else:
        typer.echo(outcome.format(archive=archive, rdagent_root=root))
    if not outcome.ok:
        raise typer.Exit(1)


def _at_a_terminal() -> bool:
    """Both standard input and output are a terminal: someone can read the plan and answer."""
    return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()


@cleanup_app.command("approve")
def approve(
    plan_id: Annotated[str, typer.Argument(help="Plan id printed by --dry-run.")],
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    item: Annotated[
        list[str], typer.Option("--item", help="Approve only this item id; repeatable (default: every item).")
    ] = [],  # noqa: B006
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default: the login name).")] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
) -> None:
    """Approve a stored plan (or some of its items); prints the approval id for --confirm --approval."""
    from workbench.archive.remote import remote_settings
    from workbench.cleanup import approve_plan

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        result = approve_plan(plan_id, item_ids=item or None, approved_by=by, note=note, archive=archive)
    typer.echo(
        f"approval {result.approval_id}: {len(result.item_ids)} plan items of plan {plan_id} approved by "
        f"{result.approved_by}"
    )
    typer.echo(
        f"apply with: workbench cleanup --archive {archive} --confirm --approval {result.approval_id}  "
        "(the plan's own RD-Agent root and options are used)"
    )


@cleanup_app.command("undo")
def undo(
    plan_id: Annotated[str, typer.Argument(help="Plan whose quarantined items go back.")],
    rdagent_root: PlanRootOpt = None,
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move every quarantined item of a plan back (in the plan's own root); refuses where the original path exists again."""
    from workbench.archive.remote import remote_settings
    from workbench.cleanup import undo_plan

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        result = undo_plan(plan_id, rdagent_root=rdagent_root, archive=archive)
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.format())
    if result.refused:
        raise typer.Exit(1)


@cleanup_app.command("purge")
def purge(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Purge what was quarantined at least this long ago (7d, 12h, 0s)."),
    ] = "7d",
    rdagent_root: Annotated[
        Path | None,
        typer.Option(
            "--rdagent-root",
            help="Only plans made for this RD-Agent root (default: every plan, each in its own root).",
        ),
    ] = None,
    archive: ArchiveUriOpt = str(DEFAULT_ARCHIVE),
    endpoint_url: EndpointOpt = None,
    cache_dir: CacheDirOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete quarantined items for good, each plan's in its own root (links are unlinked, never followed)."""
    from workbench.archive.remote import remote_settings
    from workbench.cleanup import purge_quarantine

    with remote_settings(endpoint_url=endpoint_url, cache_dir=cache_dir):
        result = purge_quarantine(rdagent_root=rdagent_root, archive=archive, older_than=older_than)
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.format())
    if result.skipped:
        raise typer.Exit(1)


@cleanup_app.command("plans")
def plans(
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    limit: Annotated[int, typer.Option(help="How many recent plans.")] = 20,
    json_output: JsonOpt = False,
) -> None:
    """Recent cleanup plans: status, plan items, how many were moved (plan items and paths), what is still in quarantine."""
    from workbench.cleanup import list_plans
    from workbench.cleanup.units import format_bytes

    rows = list_plans(archive=archive, limit=limit)
    if json_output:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("no cleanup plans yet; make one with `workbench cleanup --rdagent-root ROOT --dry-run`")
    for r in rows:
        status = "approved" if r["status"] == "planned" and r["approvals"] else r["status"]
        typer.echo(
            f"{r['plan_id']}  {r['stage']:<12} {status:<17} {r['items']:>4} plan items, "
            f"{r['items_moved']:>4} moved ({r['paths_moved']} paths, {format_bytes(r['bytes'])}); "
            f"{r['paths_in_quarantine']} paths still in quarantine  approval {r['approval_id'] or '-'}"
        )
        if r.get("recovery"):
            typer.echo(f"    RECOVERY NEEDED: {r['recovery']}")


def hold(
    target_id: Annotated[str, typer.Argument(help="Experiment id, workspace id or task-run id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it must not be cleaned up (recorded).")],
    active: Annotated[
        bool, typer.Option("--active", help="Put it on the active debugging list (no expiry).")
    ] = False,
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown",
            help="Record it even if the archive knows no such id (a workspace or task run not archived yet).",
        ),
    ] = False,
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
) -> None:
    """Flag an id for re-tracing/debugging so cleanup leaves it alone (recorded with time and reason)."""
    from workbench.cleanup import hold as add_hold

    record = add_hold(target_id, reason=reason, active=active, allow_unknown=allow_unknown, archive=archive)
    if record.known_as is None:
        typer.echo(
            f"warning: {record.target_id} is not an id the archive knows (yet); the hold protects it only "
            "once an experiment, workspace or task run with exactly this id is archived",
            err=True,
        )
    typer.echo(f"recorded: {record.describe()}" + (f" ({record.known_as})" if record.known_as else ""))


def release(
    target_id: Annotated[str, typer.Argument(help="The id a hold was placed on.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the hold is lifted (recorded).")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
) -> None:
    """Lift the open holds on an id (they stay in the record with the release time and reason)."""
    from workbench.cleanup import release as lift

    for record in lift(target_id, reason=reason, archive=archive):
        typer.echo(f"released: {record.describe()}")


def holds(
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    all_holds: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
) -> None:
    """List holds (open ones unless --all)."""
    from workbench.cleanup import list_holds

    records = list_holds(archive, include_released=all_holds, identify=True)
    if not records:
        typer.echo("no holds" if all_holds else "no open holds (released ones: `workbench holds --all`)")
    for record in records:
        known = f" ({record.known_as})" if record.known_as else " (id not in the archive)"
        released = (
            f"  released {record.released_at:%Y-%m-%d %H:%M}: {record.release_reason}"
            if record.released_at
            else ""
        )
        typer.echo(record.describe() + known + released)


@with_policy_options(after="archive", only=MANIFEST_OPTIONS)
def export_cleanup_manifest(
    out: Annotated[Path, typer.Option("--out", help="Manifest file to write (JSON).")],
    rdagent_root: RootOpt = DEFAULT_SAMPLE,
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    active_list: Annotated[
        Path | None, typer.Option("--active-list", help="File of ids under active debugging.")
    ] = None,
    registry: RegistryOpt = None,
    path_map: PathMapOpt = [],  # noqa: B006
    **policy_options: Any,
) -> None:
    """Write the manifest RD-Agent's tools/cleanup_archived_workspaces.py reads (full-stage decisions)."""
    from workbench.cleanup import export_cleanup_manifest as export

    document = export(
        rdagent_root,
        out=out,
        archive=archive,
        active_list=active_list,
        registry=registry,
        path_map=path_map,
        **policy_options,
    )
    entries = document["experiments"]
    typer.echo(
        f"wrote {out}: {len(entries)} entries, {sum(e['can_cleanup'] for e in entries)} with can_cleanup=true "
        f"(plan {document['plan_id']})"
    )
