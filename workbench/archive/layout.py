"""Where everything of one archive lives: the folder's layout, in one place.

`docs/archive-format.md` describes each of these folders and files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError

DEFAULT_ARCHIVE = Path("data/archive")
CATALOG_FILE = "catalog.duckdb"


@dataclass(frozen=True)
class ArchiveLayout:
    """Every path inside one archive folder."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def packs(self) -> Path:
        return self.root / "packs"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def damaged(self) -> Path:
        """Where `repair` keeps a damaged catalog it replaced (never deleted by workbench)."""
        return self.root / "damaged"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def lock(self) -> Path:
        return self.root / ".workbench.lock"

    @classmethod
    def at(cls, root: Path | str | None) -> ArchiveLayout:
        if str(root or "").startswith("s3:/"):
            raise ConfigError(
                f"{root}: an s3:// archive is opened by archive, status, verify, restore, repair and "
                "cleanup (their `archive=` argument), which work on this machine's cache of it; "
                "for other commands pass that cache folder (see `workbench status --archive s3://...`)"
            )
        path = Path(root if root is not None else DEFAULT_ARCHIVE).absolute()
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"archive {path} is a file, not a folder; pass --archive DIR (created if missing)"
            )
        return cls(path)


def new_archive_note(archive: Path | str | None) -> str | None:
    """A note for commands that may create an archive: None when one is already there.

    Why: a mistyped `--archive` would otherwise silently start a second, empty archive.
    """
    layout = ArchiveLayout.at(archive)
    if layout.catalog.exists():
        return None
    return f"no archive existed at {layout.root}: a new one was created there (check --archive if you meant another)"
