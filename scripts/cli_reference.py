"""The README's command reference, rendered from the commands' own help (run by cog, see README).

Walks the click group Typer builds from `workbench.cli:app`: every command and subcommand gets its
usage line, its help and a table of its options, so the README cannot drift from `--help`. Only
click's plain help records are used (never the terminal formatter), so the output does not depend
on the terminal's width or colours. `python scripts/cli_reference.py` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer.main

from workbench.cli import app

WIDTH = 100  # fixed, for the contexts built here; nothing below wraps text by terminal width


def context(command: Any, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent, terminal_width=WIDTH, color=False)


def commands(group: Any, parent: Any = None, name: str = "workbench") -> Iterator[tuple[Any, Any]]:
    """(command, context) for the group and every visible command under it, in `--help`'s order."""
    ctx = context(group, name, parent)
    yield group, ctx
    for sub_name in group.list_commands(ctx):
        sub = group.get_command(ctx, sub_name)
        if sub is None or sub.hidden:
            continue
        if hasattr(sub, "list_commands"):
            yield from commands(sub, ctx, sub_name)
        else:
            yield sub, context(sub, sub_name, ctx)


def usage(command: Any, ctx: Any) -> str:
    return " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])


def summary(command: Any) -> str:
    """The first sentence of the help, as `--help` of the parent group shows it."""
    return text(command.get_short_help_str(limit=10_000))


def paragraphs(command: Any) -> list[str]:
    """The help's paragraphs, each on one line (click's `\\b` no-rewrap markers dropped)."""
    blocks = re.split(r"\n\s*\n", (command.help or "").strip())
    return [text(" ".join(line for line in block.splitlines() if line.strip() != "\b")) for block in blocks]


def text(value: str) -> str:
    """Help text as Markdown table-safe text: one line, no HTML (`log/<timestamp>/` stays visible)."""
    value = " ".join(value.split())
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def options(command: Any, ctx: Any) -> list[tuple[str, str]]:
    """(option or argument, help) rows, as `--help` shows them; `--help` itself left out."""
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        rows.append((" ".join(record[0].split()).replace("|", "\\|"), text(record[1])))
    return rows


def section(command: Any, ctx: Any) -> list[str]:
    lines = [f"#### `{ctx.command_path}`", "", "```text", usage(command, ctx), "```", ""]
    for paragraph in paragraphs(command):
        lines += [paragraph, ""]
    rows = options(command, ctx)
    if rows:
        lines += ["| option or argument | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {help_text} |" for name, help_text in rows]
        lines.append("")
    if hasattr(command, "list_commands"):
        subs = ", ".join(f"`{name}`" for name in command.list_commands(ctx))
        lines += [f"Subcommands: {subs}.", ""]
    return lines


def anchor(ctx: Any) -> str:
    """GitHub's heading id for `#### \\`workbench cleanup approve\\``."""
    return ctx.command_path.replace(" ", "-")


def overview(pairs: list[tuple[Any, Any]]) -> list[str]:
    lines = ["| command | what it does |", "|---|---|"]
    for command, ctx in pairs[1:]:
        lines.append(f"| [`{ctx.command_path}`](#{anchor(ctx)}) | {summary(command)} |")
    return [*lines, ""]


def markdown() -> str:
    """The whole reference: an overview table, then one section per command."""
    pairs = list(commands(typer.main.get_command(app)))
    lines = overview(pairs)
    for command, ctx in pairs[1:]:
        lines += section(command, ctx)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
