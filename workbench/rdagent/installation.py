"""One RD-Agent installation on this machine: its root and where its parts live (spec §1)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError, RegistryError
from workbench.rdagent.paths import PathResolver, parse_path_map

REGISTRY_RELPATH = Path("RDagentDB") / "registry.sqlite"
WORKSPACE_RELPATH = Path("git_ignore_folder") / "RD-Agent_workspace"
LOG_RELPATH = Path("log")


@dataclass(frozen=True)
class Installation:
    """Root, registry, workspace root and log root of one installation, plus its path resolver.

    Only the root and the registry must exist; workspace and log roots may be missing (an
    installation whose workspaces were cleaned up is still worth reading).
    """

    root: Path
    registry_path: Path
    workspace_root: Path
    log_root: Path
    resolver: PathResolver

    @classmethod
    def open(cls, root: Path, *, registry: Path | None = None, path_map: Sequence[str] = ()) -> Installation:
        """Check the layout and build the resolver (`path_map` items are `FROM=TO` strings)."""
        root = Path(root).expanduser()
        if not root.exists():
            raise ConfigError(
                f"RD-Agent root {root} does not exist; pass the directory that contains RDagentDB/"
            )
        if not root.is_dir():
            raise ConfigError(
                f"RD-Agent root {root} is not a directory; pass the repo root, not a file in it"
            )
        root = root.resolve()
        registry_path = Path(registry).expanduser() if registry is not None else root / REGISTRY_RELPATH
        if registry_path.exists() and not registry_path.is_file():
            raise RegistryError(
                f"registry {registry_path} is not a regular file; pass the path of registry.sqlite itself"
            )
        if not registry_path.is_file():
            raise RegistryError(
                f"registry {registry_path} not found; RD-Agent creates it on first write "
                "(or pass --registry PATH to read a copy elsewhere)"
            )
        rules = [parse_path_map(item) for item in path_map]
        return cls(
            root=root,
            registry_path=registry_path.resolve(),
            workspace_root=root / WORKSPACE_RELPATH,
            log_root=root / LOG_RELPATH,
            resolver=PathResolver(rules, rdagent_root=root),
        )

    def allowed_roots(self) -> tuple[str, ...]:
        """Real paths under which workspace folders may be read: the workspace root and `--path-map` targets.

        Why: a registry path is input like any other; one that resolves elsewhere on the machine
        must not make the archive copy that place (cleanup applies the same containment).
        """
        roots = [os.path.realpath(self.workspace_root)]
        roots += [os.path.realpath(Path(target).expanduser()) for _source, target in self.resolver.rules]
        return tuple(roots)
