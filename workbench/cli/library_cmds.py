"""Asset-pool commands (filled in by the library module)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the asset-pool commands to the main app."""
