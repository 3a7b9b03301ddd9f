"""Re-hash the archive: every object the catalog lists must exist and hash to its name."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.archive.catalog import ArchiveLayout, open_catalog
from workbench.archive.store import ObjectStore


@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [f"checked {self.checked} objects: {len(self.missing)} missing, {len(self.damaged)} damaged"]
        lines += [f"  missing: {s}" for s in self.missing[:50]]
        lines += [f"  damaged: {s}" for s in self.damaged[:50]]
        return "\n".join(lines)


def verify_objects(archive: Path | str | None, sha256s: list[str] | None = None) -> VerifyReport:
    """Check the given objects (all when None); a read-only pass over the catalog."""
    layout = ArchiveLayout.at(archive)
    with open_catalog(layout.root, read_only=True) as con:
        rows = con.execute("SELECT sha256, storage_key FROM wb_objects ORDER BY sha256").fetchall()
        inline = {r[0]: bytes(r[1]) for r in con.execute("SELECT sha256, data FROM wb_inline_objects").fetchall()}
    if sha256s is not None:
        wanted = set(sha256s)
        rows = [r for r in rows if r[0] in wanted]
        listed = {r[0] for r in rows}
        missing_rows = sorted(wanted - listed)
    else:
        missing_rows = []
    store = ObjectStore(layout.objects, tmp=layout.tmp, inline=inline.get)
    report = VerifyReport(missing=list(missing_rows))
    for sha, key in rows:
        report.checked += 1
        if not store.exists(key):
            report.missing.append(sha)
        elif not store.verify(key, sha):
            report.damaged.append(sha)
    return report


def verify_archive(archive: Path | str | None = None) -> VerifyReport:
    """Every object of the archive."""
    return verify_objects(archive)
