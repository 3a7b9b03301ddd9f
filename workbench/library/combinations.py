"""Factor combinations: named sets of library factors and the experiments that used them.

A combination is its set of factors (:func:`workbench.archive.ids.combination_id`): the archive
job records the set each loop trained on, and a person can save a new set to hand to RD-Agent
(:func:`save_combination`, then ``workbench export-request --combination ID``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from workbench.archive import ids
from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.library_cache import refresh_library_cache
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError
from workbench.library.factors import resolve_factor_id, resolve_factor_ids

__all__ = [
    "KNOWN_COMBINATION_SOURCES",
    "combination_members",
    "combinations",
    "resolve_combination_id",
    "save_combination",
]

KNOWN_COMBINATION_SOURCES: tuple[str, ...] = ("rdagent", "manual")
"""Combination sources workbench writes: recorded by the archive job, or saved by a person."""

# Experiments of a combination: the one that recorded it, those whose factors were used as it,
# and those run by a strategy built on it.
_EXPERIMENTS_SQL = """
    SELECT id AS combination_id, experiment_id FROM aistock_factor_combinations WHERE experiment_id IS NOT NULL
    UNION
    SELECT combination_id, experiment_id FROM aistock_factor_usage WHERE combination_id <> ''
    UNION
    SELECT s.factor_combination_id, e.id FROM aistock_strategies s JOIN aistock_experiments e ON e.strategy_id = s.id
    WHERE s.factor_combination_id IS NOT NULL
"""


def combinations(
    archive: Path | str | None,
    *,
    factor_id: str | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """One row per combination: its factors (ids and names), the experiments and task runs that used it.

    ``factor_id`` keeps the combinations containing that factor (id, unique prefix or name; an
    unknown one is an error). ``source`` is ``rdagent`` or ``manual`` (or another source the
    library holds; anything else is an error listing them). Sorted by how often a combination
    was used, then name.
    """
    params: dict[str, Any] = {}
    where = ["TRUE"]
    if factor_id is not None:
        where.append("list_contains(c.members, $factor_id)")
        params["factor_id"] = resolve_factor_id(archive, factor_id)
    if source is not None:
        held = read_frame(
            archive, "SELECT DISTINCT source FROM aistock_factor_combinations WHERE source IS NOT NULL"
        )
        valid = sorted(set(KNOWN_COMBINATION_SOURCES) | set(held["source"].to_list()))
        if source not in valid:
            raise ConfigError(f"source={source!r} is not one of: {', '.join(valid)}")
        where.append("c.source = $source")
        params["source"] = source
    sql = f"""
    WITH c AS (
        SELECT id, name, source, CAST(factor_ids AS VARCHAR[]) AS members, experiment_id, created_at
        FROM aistock_factor_combinations
    ),
    used AS (
        SELECT x.combination_id, list(DISTINCT x.experiment_id ORDER BY x.experiment_id) AS experiment_ids,
               list(DISTINCT e.task_run_id ORDER BY e.task_run_id) FILTER (WHERE e.task_run_id IS NOT NULL) AS task_run_ids
        FROM ({_EXPERIMENTS_SQL}) x LEFT JOIN aistock_experiments e ON e.id = x.experiment_id
        GROUP BY x.combination_id
    ),
    names AS (
        SELECT c.id, list(f.name ORDER BY f.name) AS factor_names, list(DISTINCT f.source ORDER BY f.source) AS factor_sources
        FROM c, unnest(c.members) AS m(member) JOIN aistock_factors f ON f.id = m.member
        GROUP BY c.id
    )
    SELECT c.id AS combination_id, c.name, c.source, len(c.members) AS n_factors, c.members AS factor_ids,
           coalesce(n.factor_names, []) AS factor_names, coalesce(n.factor_sources, []) AS factor_sources,
           len(coalesce(u.experiment_ids, [])) AS n_experiments, coalesce(u.experiment_ids, []) AS experiment_ids,
           coalesce(u.task_run_ids, []) AS task_run_ids, c.experiment_id AS first_experiment_id, c.created_at
    FROM c LEFT JOIN used u ON u.combination_id = c.id LEFT JOIN names n ON n.id = c.id
    WHERE {" AND ".join(where)}
    ORDER BY n_experiments DESC, c.name, c.id
    """
    return read_frame(archive, sql, params)


def resolve_combination_id(archive: Path | str | None, ref: str) -> str:
    """A combination id from an id, a unique id prefix (≥ 6 characters) or a unique name."""
    ref = ref.strip()
    hits = read_frame(
        archive,
        "SELECT id, name FROM aistock_factor_combinations "
        "WHERE id = $ref OR name = $ref OR (length($ref) >= 6 AND starts_with(id, $ref))",
        {"ref": ref},
    )
    exact = hits.filter(pl.col("id") == ref)
    if exact.height:
        return ref
    if hits.height == 0:
        short = " (an id prefix needs at least 6 characters)" if len(ref) < 6 else ""
        raise ConfigError(
            f"unknown combination {ref!r}: no combination has that id, id prefix or name{short} "
            "(see `workbench combinations`)"
        )
    if hits.height > 1:
        listed = ", ".join(f"{r['id'][:12]} ({r['name']})" for r in hits.iter_rows(named=True))
        raise ConfigError(f"combination {ref!r} is ambiguous: {listed}; give the id")
    only_id: str = hits["id"][0]
    return only_id


def combination_members(archive: Path | str | None, combination_id: str) -> pl.DataFrame:
    """The factors of one combination with their library rows (name, source, version, expression, tags)."""
    resolved = resolve_combination_id(archive, combination_id)
    return read_frame(
        archive,
        """
        SELECT f.id AS factor_id, f.name, f.version, f.source, CAST(coalesce(f.tags, '[]') AS VARCHAR[]) AS tags,
               f.expression, f.description_cn
        FROM aistock_factor_combinations c, unnest(CAST(c.factor_ids AS VARCHAR[])) AS m(member)
        JOIN aistock_factors f ON f.id = m.member
        WHERE c.id = $id
        ORDER BY f.name, f.id
        """,
        {"id": resolved},
    )


@storage_errors("a saved combination to the archive catalog")
def save_combination(
    archive: Path | str | None,
    name: str,
    factor_ids: Sequence[str],
    *,
    source: str = "manual",
) -> str:
    """Save a set of library factors as a named combination; returns its id (the same set → the same id).

    Factors may be given by id, unique id prefix or unique name; an unknown one is an error and
    nothing is saved. A combination IS its set of factors and has one name:

    * saving the same set under the same name again returns its id (idempotent);
    * saving a set that is already a combination under another name is a :class:`ConfigError`
      naming the existing combination and its id (use that name or the id; nothing is changed);
    * a name already used by a combination with other factors is a :class:`ConfigError` too, so
      a name always means one set.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a combination needs a name")
    name = name.strip()
    members = resolve_factor_ids(archive, list(factor_ids))
    if not members:
        raise ConfigError("a combination needs at least one factor (--factors ID,...)")
    combination = ids.combination_id(members)
    with archive_lock(archive, job="save-combination"), open_catalog(archive) as con:
        same_set = con.execute(
            "SELECT name, source, experiment_id FROM aistock_factor_combinations WHERE id = ?", [combination]
        ).fetchall()
        if same_set:
            existing_name, existing_source, experiment = same_set[0]
            if existing_name == name:
                return combination
            origin = (
                f", recorded by the archive from experiment {experiment}"
                if experiment
                else f", source {existing_source}"
                if existing_source
                else ""
            )
            raise ConfigError(
                f"the same factors are already saved as combination {existing_name!r} (id {combination}{origin}); "
                f"a combination is its set of factors and keeps one name, so {name!r} was not recorded: "
                f"use {existing_name!r} or the id"
            )
        same_name = con.execute(
            "SELECT id FROM aistock_factor_combinations WHERE name = ? ORDER BY id", [name]
        ).fetchall()
        if same_name:
            raise ConfigError(
                f"a combination named {name!r} already exists with other factors (id {same_name[0][0]}); "
                "choose another name (see `workbench combinations`)"
            )
        with recorded(con, ArchiveLayout.at(archive), "save-combination") as rec:
            con.execute(
                "INSERT INTO aistock_factor_combinations (id, name, factor_ids, experiment_id, source, created_at) "
                "VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT (id) DO NOTHING",
                [combination, name, json.dumps(sorted(set(members))), source, utc_now()],
            )
            rec.capture("aistock_factor_combinations", id=[combination])
    refresh_library_cache(archive)
    return combination
