"""Experiment requests in and out of the archive.

* :func:`attach_request` gives a task run its ExperimentRequest after the fact (RD-Agent ran it
  without one in ``task_runs.params_json``). The archive job prefers an attached request, so the
  loops get their strategy names, roles and factor sets the next time they are archived.
* :func:`export_request` writes a new ExperimentRequest from library assets (a factor
  combination or a list of factors, and strategies, external ones included), in the JSON shape
  RD-Agent's own parser accepts (:func:`workbench.rdagent.request.request_to_rdagent_json`).

Both validate with the same models as the archive job; an invalid request is refused with the
field and the problem, and nothing is stored or written.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout, new_archive_note
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError
from workbench.library.combinations import resolve_combination_id
from workbench.library.factors import resolve_factor_ids
from workbench.library.strategies import resolve_strategy_id, strategy_config
from workbench.rdagent.request import (
    ExperimentKind,
    ExperimentRequest,
    FactorRef,
    FactorSetConfig,
    StrategyEntry,
    StrategySource,
    load_request,
    parse_request,
    request_to_rdagent_json,
)

__all__ = ["AttachResult", "attach_request", "attached_request", "export_request", "request_for"]

_SOURCE_FOR_LIBRARY: dict[str, StrategySource] = {
    "rdagent": "rdagent",
    "external": "external",
    "handcrafted": "handcrafted",
}


@dataclass(frozen=True)
class AttachResult:
    """What attaching did, and what the person should know before the next archive run."""

    task_run_id: str
    request_name: str | None
    kind: str
    strategies: tuple[dict[str, Any], ...]
    source_path: str
    replaced: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"{'replaced the' if self.replaced else 'attached a'} request "
            f"{self.request_name or '(unnamed)'} ({self.kind}) to task run {self.task_run_id}"
        ]
        for entry in self.strategies:
            lines.append(
                f"  loop {entry['loop_id'] if entry['loop_id'] is not None else '?':>3}  "
                f"{entry['role']:<9}  {entry['name']}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@storage_errors("an attached request to the archive catalog")
def attach_request(archive: Path | str | None, task_run_id: str, path: Path | str) -> AttachResult:
    """Validate a request file (JSON or YAML) and attach it to a task run (replacing an earlier one).

    The archive job reads it in preference to ``task_runs.params_json``. Loops already
    archived take it up when they are archived again; the result's notes say which loops the
    request names that the archive does not know (yet).
    """
    path = Path(path)
    request = load_request(path)
    task_run_id = task_run_id.strip()
    if not task_run_id:
        raise ConfigError("task run id is empty")
    entries = request.strategy_entries()
    if not entries:
        raise ConfigError(
            f"{path}: the request names no strategy (give strategy or strategies); "
            "there is nothing to attach to the task run's loops"
        )
    now = utc_now()
    created = new_archive_note(archive)
    with archive_lock(archive, job="attach-request"), open_catalog(archive, create=True) as con:
        known_loops = {
            int(r[0])
            for r in con.execute(
                "SELECT loop_id FROM wb_loop_state WHERE task_run_id = ? UNION SELECT loop_id FROM aistock_experiments "
                "WHERE task_run_id = ?",
                [task_run_id, task_run_id],
            ).fetchall()
        }
        cleaned = sorted(
            int(r[0])
            for r in con.execute(
                "SELECT loop_id FROM aistock_experiments WHERE task_run_id = ? AND workspace_state <> 'present'",
                [task_run_id],
            ).fetchall()
        )
        replaced = bool(
            con.execute(
                "SELECT count(*) FROM wb_attached_requests WHERE task_run_id = ?", [task_run_id]
            ).fetchall()[0][0]
        )
        with recorded(con, ArchiveLayout.at(archive), "attach-request") as rec:
            con.execute(
                "INSERT INTO wb_attached_requests (task_run_id, request_json, source_path, attached_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (task_run_id) DO UPDATE SET request_json = excluded.request_json, "
                "source_path = excluded.source_path, attached_at = excluded.attached_at",
                [
                    task_run_id,
                    json.dumps(request.model_dump(mode="json"), ensure_ascii=False),
                    str(path.absolute()),
                    now,
                ],
            )
            rec.capture("wb_attached_requests", task_run_id=[task_run_id])
    notes = [created] if created else []
    if not known_loops:
        notes.append(
            f"the archive has no loop of task run {task_run_id} yet; the request applies when it is archived"
        )
    else:
        unknown = sorted({e.loop_id for e in entries if e.loop_id is not None} - known_loops)
        if unknown:
            notes.append(
                f"loop(s) {unknown} named by the request are not in the archive (known: {sorted(known_loops)})"
            )
        notes.append(
            "loops already archived take the request up when archived again "
            "(the next `workbench archive` run does it)"
        )
        if cleaned:
            notes.append(
                f"loop(s) {cleaned} had their workspaces cleaned up: they cannot be archived again and "
                "keep their earlier record; to apply the request to them, bring the workspaces back "
                "first (`workbench cleanup undo PLAN_ID` while they are in quarantine)"
            )
    if len(entries) > 1 and any(e.loop_id is None for e in entries):
        notes.append("some strategies have no loop_id; the archive cannot tell which loop ran them")
    shown = tuple({"name": e.name, "role": e.role, "loop_id": e.loop_id, "source": e.source} for e in entries)
    return AttachResult(task_run_id, request.name, request.kind, shown, str(path), replaced, tuple(notes))


def attached_request(archive: Path | str | None, task_run_id: str) -> ExperimentRequest | None:
    """The request attached to a task run, validated again (None when nothing is attached)."""
    frame = read_frame(
        archive,
        "SELECT request_json::VARCHAR AS request_json FROM wb_attached_requests WHERE task_run_id = $id",
        {"id": task_run_id},
    )
    if frame.height == 0:
        return None
    return parse_request(json.loads(frame["request_json"][0]), source=f"wb_attached_requests[{task_run_id}]")


def _factor_refs(
    archive: Path | str | None, factor_ids: Sequence[str]
) -> tuple[list[FactorRef], dict[str, str]]:
    """FactorRefs (name, source, version) of library factors, and name → library id.

    Names must be unique within one request (RD-Agent refers to factors by name); two library
    factors with the same name are an error naming both.
    """
    rows = read_frame(
        archive,
        "SELECT id, name, version, source FROM aistock_factors WHERE id IN (SELECT unnest($ids))",
        {"ids": list(factor_ids)},
    )
    by_id = {r["id"]: r for r in rows.iter_rows(named=True)}
    refs: list[FactorRef] = []
    names: dict[str, str] = {}
    for factor in factor_ids:
        row = by_id[factor]
        if row["name"] in names and names[row["name"]] != factor:
            raise ConfigError(
                f"two chosen factors are both called {row['name']!r} ({names[row['name']][:12]} and "
                f"{factor[:12]}); RD-Agent refers to factors by name, keep one"
            )
        if row["name"] in names:
            continue
        names[row["name"]] = factor
        refs.append(FactorRef(name=row["name"], source=row["source"], version=row["version"]))
    return refs, names


def request_for(
    archive: Path | str | None,
    *,
    factor_ids: Sequence[str] = (),
    combination_id: str | None = None,
    strategy_ids: Sequence[str] = (),
    control: str | None = None,
    name: str | None = None,
    kind: ExperimentKind | None = None,
    description: str | None = None,
) -> ExperimentRequest:
    """The ExperimentRequest for a factor combination (or factors) and library strategies.

    Factors: ``combination_id`` or ``factor_ids`` (ids, unique prefixes or names), not both.
    Strategies: each becomes one entry (with the factor set), run by loops 0, 1, ... in the order given; the
    ``control`` (a strategy reference; default the first) is the control, the rest treatments,
    and two or more strategies make an ``ab_test``. Each entry keeps its library id in
    ``external_id`` and external strategies keep ``source='external'``, so the results can be
    traced back when the run is archived. The factor set carries the library ids in
    ``extra.library_factor_ids`` (name → id).
    """
    if combination_id and factor_ids:
        raise ConfigError("give either a combination or a list of factors, not both")
    if combination_id:
        resolved_combination = resolve_combination_id(archive, combination_id)
        members = read_frame(
            archive,
            "SELECT CAST(factor_ids AS VARCHAR[]) AS ids FROM aistock_factor_combinations WHERE id = $id",
            {"id": resolved_combination},
        )["ids"][0].to_list()
        ordered = read_frame(
            archive,
            "SELECT id FROM aistock_factors WHERE id IN (SELECT unnest($ids)) ORDER BY name, id",
            {"ids": list(members)},
        )
        chosen = ordered["id"].to_list()
    else:
        resolved_combination = None
        chosen = resolve_factor_ids(archive, list(factor_ids))
    if not chosen:
        raise ConfigError("choose at least one factor (--factors ID,... or --combination ID)")
    refs, names = _factor_refs(archive, chosen)
    extra: dict[str, Any] = {"library_factor_ids": names}
    if resolved_combination:
        extra["library_combination_id"] = resolved_combination
    factor_set = FactorSetConfig(factors=refs, extra=extra)
    strategies = [resolve_strategy_id(archive, ref) for ref in strategy_ids]
    if len(set(strategies)) < len(strategies):
        raise ConfigError("the same strategy is chosen twice")
    control_id = resolve_strategy_id(archive, control) if control else (strategies[0] if strategies else None)
    if control_id is not None and control_id not in strategies:
        raise ConfigError(f"the control {control!r} is not among the chosen strategies")
    entries = _strategy_entries(archive, strategies, control_id=control_id, factor_set=factor_set)
    data: dict[str, Any] = {
        "kind": kind or ("ab_test" if len(entries) >= 2 else "research"),
        "factor_set": factor_set.model_dump(mode="json"),
        "name": name,
        "description": description,
        "strategies": [e.model_dump(mode="json") for e in entries],
    }
    return parse_request(data, source="export-request")


def _strategy_entries(
    archive: Path | str | None, strategies: list[str], *, control_id: str | None, factor_set: FactorSetConfig
) -> list[StrategyEntry]:
    """One entry per strategy, each with the request's factor set (the archive job reads it per loop)."""
    sources = read_frame(
        archive,
        "SELECT id, source FROM aistock_strategies WHERE id IN (SELECT unnest($ids))",
        {"ids": strategies or [""]},
    )
    source_of = dict(zip(sources["id"].to_list(), sources["source"].to_list(), strict=True))
    entries: list[StrategyEntry] = []
    taken: set[str] = set()
    for loop, strategy in enumerate(strategies):
        config = strategy_config(archive, strategy)
        config = config.model_copy(
            update={"extra": {k: v for k, v in config.extra.items() if k != "library_strategy_id"}}
        )
        label = config.name or config.strategy_type
        unique = label if label not in taken else f"{label}_{loop}"
        taken.add(unique)
        entries.append(
            StrategyEntry.from_config(
                config,
                role="control" if strategy == control_id else "treatment",
                source=_SOURCE_FOR_LIBRARY.get(str(source_of.get(strategy)), "rdagent"),
                name=unique,
                loop_id=loop,
                factor_set=factor_set,
                external_id=strategy,
            )
        )
    return entries


def export_request(
    archive: Path | str | None,
    *,
    out: Path | str,
    factor_ids: Sequence[str] = (),
    combination_id: str | None = None,
    strategy_ids: Sequence[str] = (),
    control: str | None = None,
    name: str | None = None,
    kind: ExperimentKind | None = None,
    description: str | None = None,
) -> Path:
    """Write :func:`request_for`'s request for RD-Agent (``.json``; ``.yaml``/``.yml`` also accepted).

    The file is RD-Agent's shape (``strategy`` = the control; every entry under
    ``extra.strategies``), and reading it back with :func:`load_request` gives the same request.
    """
    out = Path(out)
    if out.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{out}: use a .json, .yaml or .yml file name")
    request = request_for(
        archive,
        factor_ids=factor_ids,
        combination_id=combination_id,
        strategy_ids=strategy_ids,
        control=control,
        name=name,
        kind=kind,
        description=description,
    )
    data = request_to_rdagent_json(request)
    text = (
        json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if out.suffix.lower() == ".json"
        else yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    )
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give a file name ending in .json, .yaml or .yml (--out FILE)")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = (
            f"{exc.filename or 'a parent'} is a file, not a folder"
            if isinstance(exc, FileExistsError | NotADirectoryError)
            else exc.strerror or type(exc).__name__
        )
        raise ConfigError(f"{out}: cannot write the request: {reason}; choose a writable --out path") from exc
    return out
