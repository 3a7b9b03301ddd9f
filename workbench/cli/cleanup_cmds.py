"""Cleanup commands (filled in by the cleanup module)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the cleanup commands to the main app."""
