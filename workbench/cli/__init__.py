"""The `workbench` command: thin wrappers over the library, one command per entry point.

Each command parses options, calls one library function with the same argument names, prints
the result, and maps `WorkbenchError` subclasses to the documented exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from workbench.archive.storage_errors import one_line, storage_error
from workbench.cli import archive_cmds, cleanup_cmds, lake_cmds, library_cmds
from workbench.errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Archive, clean up and compare what RD-Agent produced.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
archive_cmds.register(app)
cleanup_cmds.register(app)
library_cmds.register(app)
lake_cmds.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn project errors into a message and an exit code."""
    try:
        result = app(args=argv, standalone_mode=False)
        if isinstance(result, int):  # typer.Exit(code) is returned, not raised, without standalone mode
            return result
    except WorkbenchError as exc:
        exc = storage_error(exc) or exc  # e.g. a catalog that cannot be opened because its disk is full
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click's own usage errors
        return int(exc.code or 0)
    except Exception as exc:  # usage errors of (typer's bundled) click: they know how to show themselves
        stray = _duckdb_error(exc, argv)
        if stray is not None:
            typer.echo(f"error: {stray}", err=True)
            return stray.exit_code
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            return 1
        storage = storage_error(exc)  # last resort: a full or failing disk is never a traceback
        if storage is not None:
            typer.echo(f"error: {one_line(str(storage))}", err=True)
            return storage.exit_code
        raise
    return 0


def _duckdb_error(exc: BaseException, argv: list[str] | None) -> WorkbenchError | None:
    """Last resort for a DuckDB error no library function turned into a project error: one line, never a traceback.

    Damage becomes `CatalogCorruptError` (exit 5) naming the catalog of `--archive`; anything else
    is a one-line error with exit code 1.
    """
    import duckdb

    if not isinstance(exc, duckdb.Error):
        return None
    from workbench.archive.catalog import corrupt_catalog_error, damage_in_chain, first_line
    from workbench.archive.layout import DEFAULT_ARCHIVE, ArchiveLayout

    what = damage_in_chain(exc)
    if what is None:
        return WorkbenchError(f"DuckDB: {first_line(str(exc), 300)}")
    args = list(sys.argv[1:] if argv is None else argv)
    archive: Path | str = DEFAULT_ARCHIVE
    for i, arg in enumerate(args):
        if arg == "--archive" and i + 1 < len(args):
            archive = args[i + 1]
        elif arg.startswith("--archive="):
            archive = arg.split("=", 1)[1]
    try:
        catalog = ArchiveLayout.at(archive).catalog
    except WorkbenchError:
        catalog = ArchiveLayout(DEFAULT_ARCHIVE).catalog
    return corrupt_catalog_error(catalog, what)


if __name__ == "__main__":
    sys.exit(main())


_NATIVE_RUNTIMES = ("deltalake", "daft", "ray")
"""Libraries whose native thread pools may abort the interpreter's shutdown ("terminate called
without an active exception", exit 134) after a command has finished and printed its result."""


def run() -> None:
    """`workbench` console script: the exit code is the command's own, whatever happens at shutdown.

    Once a lake was read or written, the process leaves without the interpreter's finalisation
    (output flushed first), so a native runtime tearing down its threads cannot replace the code.
    """
    code = main()
    if any(name in sys.modules for name in _NATIVE_RUNTIMES):
        exit_now(code)
    sys.exit(code)


def exit_now(code: int) -> None:
    """Flush what was printed and end the process with ``code``, skipping interpreter shutdown."""
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    logging.shutdown()
    os._exit(code)
