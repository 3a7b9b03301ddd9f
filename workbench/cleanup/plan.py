"""The cleanup plan: immutable, hashable, printable.

A plan is what a person reviews and approves, so it must mean the same thing later: items are
frozen dataclasses, every item has a stable id (hash of kind and path) and a content hash, and
the plan hash covers the canonical JSON of all items (not the times). An approval binds to the
content of the items it names; confirming re-computes the plan and compares.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from workbench.cleanup.units import format_bytes

ItemKind = Literal["workspace_full", "workspace_heavy", "log_dir"]
Stage = Literal["conservative", "full"]
STAGE_OF_KIND: dict[str, str] = {
    "workspace_full": "full",
    "workspace_heavy": "conservative",
    "log_dir": "logs",
}


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_id_for(kind: str, path: str) -> str:
    """Stable id of an item: the same kind and path always give the same id."""
    return sha256_text(f"{kind}\n{path}")[:16]


@dataclass(frozen=True)
class PlanFile:
    """One entry removed by a conservative item (relative to the workspace folder)."""

    rel_path: str
    bytes: int
    reason: str
    nlink: int = 1
    is_link: bool = False


@dataclass(frozen=True)
class PlanItem:
    """One folder (or the heavy files of one folder) that the plan would move to quarantine."""

    item_id: str
    kind: ItemKind
    path: str
    rule: str
    bytes: int
    experiment_ids: tuple[str, ...] = ()
    task_run_id: str | None = None
    loop_id: int | None = None
    task_run_ids: tuple[str, ...] = ()
    workspace_id: str | None = None
    role: str | None = None
    main_experiment_ids: tuple[str, ...] = ()
    level: int | None = None
    shared_links: int = 0
    files: tuple[PlanFile, ...] = ()
    modified_at: str | None = field(default=None, compare=False)

    def content(self) -> dict[str, Any]:
        """What the item *is* (hashed for approvals): everything but the timestamps."""
        data = asdict(self)
        data.pop("modified_at", None)
        return data

    def content_hash(self) -> str:
        return sha256_text(canonical_json(self.content()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = STAGE_OF_KIND[self.kind]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanItem:
        files = tuple(PlanFile(**f) for f in data.get("files") or ())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "files"}
        for key in ("experiment_ids", "task_run_ids", "main_experiment_ids"):
            known[key] = tuple(known.get(key) or ())
        return cls(**known, files=files)


@dataclass(frozen=True)
class Exclusion:
    """Something that was considered and left alone, with every reason that applied."""

    target: str
    kind: str
    reasons: tuple[str, ...]
    detail: str
    experiment_ids: tuple[str, ...] = ()
    task_run_id: str | None = None
    loop_id: int | None = None
    workspace_id: str | None = None
    level: int | None = None

    @property
    def reason(self) -> str:
        return self.reasons[0] if self.reasons else "excluded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exclusion:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["reasons"] = tuple(known.get("reasons") or ())
        known["experiment_ids"] = tuple(known.get("experiment_ids") or ())
        return cls(**known)


@dataclass(frozen=True)
class CleanupPlan:
    """Items to move to quarantine and what was left out; `plan_id` is set when it is stored."""

    stage: str
    created_at: str
    rdagent_root: str
    workspace_root: str
    log_root: str
    params_json: str
    items: tuple[PlanItem, ...]
    exclusions: tuple[Exclusion, ...]
    untracked_workspace_dirs: int = 0
    plan_id: str | None = None

    @property
    def plan_hash(self) -> str:
        return hash_items(self.items)

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = json.loads(self.params_json)
        return params

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    def item(self, item_id: str) -> PlanItem | None:
        return next((i for i in self.items if i.item_id == item_id), None)

    def with_id(self, plan_id: str) -> CleanupPlan:
        return replace(self, plan_id=plan_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "plan_hash": self.plan_hash,
            "stage": self.stage,
            "created_at": self.created_at,
            "rdagent_root": self.rdagent_root,
            "workspace_root": self.workspace_root,
            "log_root": self.log_root,
            "params": self.params,
            "totals": {
                "items": len(self.items),
                "bytes": self.total_bytes,
                "by_kind": dict(Counter(i.kind for i in self.items)),
                "exclusions": len(self.exclusions),
                "exclusions_by_reason": dict(Counter(e.reason for e in self.exclusions)),
                "untracked_workspace_dirs": self.untracked_workspace_dirs,
            },
            "items": [i.to_dict() for i in self.items],
            "exclusions": [e.to_dict() for e in self.exclusions],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanupPlan:
        return cls(
            stage=data["stage"],
            created_at=data["created_at"],
            rdagent_root=data["rdagent_root"],
            workspace_root=data["workspace_root"],
            log_root=data["log_root"],
            params_json=canonical_json(data.get("params") or {}),
            items=tuple(PlanItem.from_dict(i) for i in data.get("items") or ()),
            exclusions=tuple(Exclusion.from_dict(e) for e in data.get("exclusions") or ()),
            untracked_workspace_dirs=int((data.get("totals") or {}).get("untracked_workspace_dirs") or 0),
            plan_id=data.get("plan_id"),
        )

    def format(self, *, max_exclusions: int | None = None) -> str:
        return format_plan(self, max_exclusions=max_exclusions)


def hash_items(items: tuple[PlanItem, ...] | list[PlanItem]) -> str:
    """SHA-256 over the canonical JSON of the items' contents, in item-id order."""
    contents = [i.content() for i in sorted(items, key=lambda i: i.item_id)]
    return sha256_text(canonical_json(contents))


def _ids(item: PlanItem | Exclusion) -> str:
    parts = []
    if item.task_run_id:
        parts.append(
            f"{item.task_run_id[:12]}/{item.loop_id}" if item.loop_id is not None else item.task_run_id[:26]
        )
    if item.workspace_id:
        parts.append(f"ws {item.workspace_id[:12]}")
    if item.experiment_ids:
        extra = f" +{len(item.experiment_ids) - 1}" if len(item.experiment_ids) > 1 else ""
        parts.append(f"exp {item.experiment_ids[0][:12]}{extra}")
    return "  ".join(parts) or "-"


def _head(kind: str, level: int | None, ids: str, extra: str = "") -> str:
    lvl = "level -" if level is None else f"level {level}"
    return f"{kind:<15}  {lvl}  {extra}{ids}"


def _item_lines(item: PlanItem) -> list[str]:
    links = f", {item.shared_links} links only unlinked" if item.shared_links else ""
    lines = [
        f"  [{item.item_id}] "
        + _head(item.kind, item.level, _ids(item), f"frees {format_bytes(item.bytes)}{links}  "),
        f"      path: {item.path}",
        f"      rule: {item.rule}",
    ]
    for f in item.files:
        size = format_bytes(f.bytes) if f.nlink == 1 and not f.is_link else f"0 B (link, nlink={f.nlink})"
        lines.append(f"      - {f.rel_path}  {size}  {f.reason}")
    return lines


def _exclusion_lines(exclusion: Exclusion) -> list[str]:
    return [
        f"  [{','.join(exclusion.reasons)}] " + _head(exclusion.kind, exclusion.level, _ids(exclusion)),
        f"      path: {exclusion.target}",
        f"      why:  {exclusion.detail}",
    ]


def format_plan(plan: CleanupPlan, *, max_exclusions: int | None = None) -> str:
    """The plan as a person reads it: totals, items with their rule, exclusions with reasons."""
    lines = [
        f"cleanup plan {plan.plan_id or '(not stored)'}  stage={plan.stage}  hash={plan.plan_hash[:16]}",
        f"  workspace root: {plan.workspace_root}",
        f"  log root:       {plan.log_root}",
        "",
        "  kind             items  frees",
    ]
    for kind in ("workspace_heavy", "workspace_full", "log_dir"):
        chosen = [i for i in plan.items if i.kind == kind]
        if chosen:
            lines.append(f"  {kind:<15}  {len(chosen):>5}  {format_bytes(sum(i.bytes for i in chosen))}")
    lines.append(f"  {'total':<15}  {len(plan.items):>5}  {format_bytes(plan.total_bytes)}")
    lines.append("")
    lines.append(
        f"WILL MOVE TO QUARANTINE ({len(plan.items)} items, {format_bytes(plan.total_bytes)} freed):"
    )
    for item in sorted(plan.items, key=lambda i: (i.kind, i.task_run_id or "", i.loop_id or 0, i.path)):
        lines.extend(_item_lines(item))
    if not plan.items:
        lines.append("  (nothing)")
    lines.append("")
    shown = [e for e in plan.exclusions if e.reason != "already_deleted"]
    hidden = len(plan.exclusions) - len(shown)
    if max_exclusions is not None and len(shown) > max_exclusions:
        hidden += len(shown) - max_exclusions
        shown = shown[:max_exclusions]
    lines.append(f"EXCLUDED ({len(plan.exclusions)}), left alone:")
    for exclusion in shown:
        lines.extend(_exclusion_lines(exclusion))
    if hidden:
        lines.append(f"  ... and {hidden} more (already deleted, or beyond the list; see --json)")
    if not plan.exclusions:
        lines.append("  (nothing)")
    counts = Counter(e.reason for e in plan.exclusions)
    lines.append("")
    lines.append(
        f"totals: {len(plan.items)} items, {format_bytes(plan.total_bytes)}; excluded: "
        + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
    )
    if plan.untracked_workspace_dirs:
        lines.append(
            f"  {plan.untracked_workspace_dirs} workspace folders belong to no archived experiment "
            "and are never touched"
        )
    return "\n".join(lines)


def new_plan_id(now: datetime) -> str:
    """Sortable, typeable plan id: UTC time plus 6 random hex digits."""
    import secrets

    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
