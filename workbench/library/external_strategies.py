"""External strategies: imported into the strategy library, validated as RD-Agent's StrategyConfig.

Strategy files (YAML or JSON)
-----------------------------
``import_strategy(path)`` validates the file as RD-Agent's StrategyConfig
(:func:`workbench.rdagent.request.load_strategy_config`: ``strategy_type`` required, unknown
keys are errors, free-form settings under ``extra``). The strategy's key is
``external/<name>/<hash of the validated config>``: the same config imports to the same id,
an edited config becomes a new strategy version. ``extra.shape`` / ``extra.output_mode``
(if given) fill the library's shape and output mode.

Every import is recorded in ``wb_imports`` (`imports`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, get_args

from workbench.archive import ids
from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout, new_archive_note
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError
from workbench.library.combinations import resolve_combination_id
from workbench.library.imports import ImportResult, file_sha256, record_import
from workbench.rdagent.request import load_strategy_config

__all__ = ["StrategyImportSource", "import_strategy"]

StrategyImportSource = Literal["external", "handcrafted"]


@storage_errors("an imported strategy to the archive")
def import_strategy(
    path: Path | str,
    *,
    archive: Path | str | None,
    source: StrategyImportSource = "external",
    name: str | None = None,
    combination_id: str | None = None,
) -> ImportResult:
    """Import one external strategy (StrategyConfig as YAML or JSON) into the strategy library.

    ``name`` overrides the config's name (default: its ``name``, else the file name);
    ``combination_id`` links the strategy to a library factor combination.
    A missing or unreadable file is an :class:`InputFileError` (exit 3); a readable file that
    is not a valid StrategyConfig is a :class:`ConfigError` naming the field (exit 2).
    """
    if source not in get_args(StrategyImportSource):
        raise ConfigError(f"--source {source!r} is not one of: {', '.join(get_args(StrategyImportSource))}")
    path = Path(path)
    config = load_strategy_config(path)
    label = (name or config.name or path.stem).strip()
    config_json = json.dumps(config.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    key = f"external/{label}/{hashlib.sha256(config_json.encode()).hexdigest()[:12]}"
    strategy = ids.strategy_id(key)
    sha256 = file_sha256(path)
    now = utc_now()
    if combination_id is not None:
        combination_id = resolve_combination_id(archive, combination_id)
    created = new_archive_note(archive)
    with archive_lock(archive, job="import-strategy"), open_catalog(archive, create=True) as con:
        before = con.execute(
            "SELECT name, source, config_json::VARCHAR, factor_combination_id FROM aistock_strategies "
            "WHERE id = ?",
            [strategy],
        ).fetchall()
        row = [
            strategy,
            key,
            label,
            str(config.extra.get("shape") or "portfolio"),
            str(config.extra.get("output_mode") or "target_weight"),
            source,
            config.strategy_type,
            config_json,
            combination_id,
            now,
            now,
        ]
        with recorded(con, ArchiveLayout.at(archive), "import-strategy") as rec:
            con.execute(
                "INSERT INTO aistock_strategies (id, strategy_key, name, shape, output_mode, source, strategy_type, "
                "config_json, factor_combination_id, recommendation_status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, source = excluded.source, shape = excluded.shape, "
                "output_mode = excluded.output_mode, factor_combination_id = coalesce(excluded.factor_combination_id, "
                "aistock_strategies.factor_combination_id), updated_at = excluded.updated_at",
                row,
            )
            import_id = record_import(
                con,
                kind="strategy",
                source=source,
                path=path,
                sha256=sha256,
                item_ids=[strategy],
                n_values=0,
                now=now,
            )
            rec.capture("aistock_strategies", id=[strategy])
            rec.capture("wb_imports", import_id=[import_id])
    if not before:
        new, updated, unchanged = 1, 0, 0
    else:
        old_name, old_source, _, old_combination = before[0]
        same = old_name == label and old_source == source and (combination_id in (None, old_combination))
        new, updated, unchanged = 0, int(not same), int(same)
    return ImportResult(
        "strategy",
        source,
        str(path),
        sha256,
        (strategy,),
        new,
        updated,
        unchanged,
        notes=(created,) if created else (),
    )
