"""Asset-pool commands: factor and strategy libraries, combinations, imports, requests, comparison, review.

Each command calls one library function with the same argument names and prints its result
(a short table, or JSON with ``--json``). Commands that write take the archive's job lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:  # the commands import the library (and Polars) lazily, to start fast
    import polars as pl

    from workbench.library.factors import FactorBasis
    from workbench.library.strategies import StrategyRole
    from workbench.rdagent.request import ExperimentKind

from workbench.cli.options import DEFAULT_ARCHIVE, ArchiveOpt, JsonOpt, LakeOpt


def register(app: typer.Typer) -> None:
    """Add the asset-pool commands to the main app."""
    app.command("factors")(factors)
    app.command("factor")(factor)
    app.command("strategies")(strategies)
    app.command("combinations")(combinations)
    app.command("save-combination")(save_combination)
    app.command("compare")(compare)
    app.command("import-factors")(import_factors)
    app.command("import-strategy")(import_strategy)
    app.command("attach-request")(attach_request)
    app.command("export-request")(export_request)
    app.command("review")(review)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in frame.iter_rows(named=True)
    ]


def _echo_table(frame: pl.DataFrame, columns: list[str], *, short_ids: tuple[str, ...] = ()) -> None:
    """A compact text table: chosen columns, ids cut to 12 characters, floats to 4 decimals."""
    import polars as pl

    if frame.height == 0:
        typer.echo("(nothing matches)")
        return
    shown = frame.select([c for c in columns if c in frame.columns]).with_columns(
        [pl.col(c).str.slice(0, 12) for c in short_ids if c in frame.columns]
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=200,
        fmt_str_lengths=40,
        float_precision=4,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
    ):
        typer.echo(str(shown))
    typer.echo(f"{frame.height} row(s)")


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def factors(
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    lake: LakeOpt = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only factors carrying every tag given (repeatable).")
    ] = None,
    name_like: Annotated[str | None, typer.Option(help="Case-insensitive part of the name.")] = None,
    min_ic: Annotated[float | None, typer.Option(help="Minimum mean IC of the summarised figures.")] = None,
    window: Annotated[
        str | None, typer.Option(help="Only results of this window (e.g. test_2021_2025).")
    ] = None,
    basis: Annotated[
        str,
        typer.Option(
            help="Whose figures: factor (its own), combination (a combination's it was part of), "
            "auto (its own when it has any, else its combinations'; own figures rank first)."
        ),
    ] = "auto",
    sort_by: Annotated[
        str,
        typer.Option(
            help="A metric's mean: ic_ir, ic_mean, rank_ic, rank_ic_ir, sharpe, annual_return, "
            "max_drawdown, coverage; or by name its median_/best_/worst_ value (e.g. best_ic_ir); "
            "or name, source, created_at, n_experiments, n_experiments_with_figures, n_combinations, n_windows."
        ),
    ] = "ic_ir",
    ascending: Annotated[
        bool, typer.Option("--ascending", help="Smallest first (default: largest first).")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="At most N factors.")] = 50,
    json_output: JsonOpt = False,
) -> None:
    """List the factor library, filtered and sorted in one call.

    One row per factor: the mean of its figures, the median, best and worst of the metric sorted
    by, how many experiments they come from, and whose figures they are (basis).
    """
    from workbench.library.factors import SUMMARY_STATS, factor_library

    frame = factor_library(
        archive,
        source=_split(source) or None,
        tags=_split(tag) or None,
        name_like=name_like,
        min_ic=min_ic,
        window=window,
        basis=cast("FactorBasis", basis),  # checked by factor_library (ConfigError naming the choices)
        sort_by=sort_by,
        descending=not ascending,
        limit=limit,
        lake=lake,
    )
    if json_output:
        _echo_json(_rows(frame))
        return
    _echo_table(
        frame,
        [
            "factor_id",
            "name",
            "source",
            "basis",
            "n_experiments_with_figures",
            "ic_mean",
            "ic_ir",
            "rank_ic",
            "sharpe",
            *[c for c in frame.columns if c.split("_", 1)[0] in SUMMARY_STATS],
            "combination_size",
            "n_experiments",
        ],
        short_ids=("factor_id",),
    )


def factor(
    factor_id: Annotated[str, typer.Argument(help="Factor id, unique id prefix or unique name.")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    json_output: JsonOpt = False,
) -> None:
    """One factor's lineage: first experiment, every experiment and combination using it, results per window."""
    from workbench.library.factors import factor_lineage

    lineage = factor_lineage(archive, factor_id)
    if json_output:
        _echo_json(lineage)
        return
    f = lineage["factor"]
    typer.echo(f"{f['name']} (v{f['version']}, {f['source']})  id {f['factor_id']}")
    if f.get("expression"):
        typer.echo(f"  expression: {f['expression']}")
    if f.get("tags"):
        typer.echo(f"  tags: {', '.join(f['tags'])}")
    first = lineage["first_experiment"] or {}
    typer.echo(
        f"  first experiment: {first.get('experiment_id')} (task run {first.get('task_run_id')}, loop {first.get('loop_id')})"
    )
    typer.echo(
        f"  used by {len(lineage['experiments'])} experiment(s), in {len(lineage['combinations'])} combination(s)"
    )
    for e in lineage["experiments"]:
        typer.echo(
            f"    {e['task_run_id'] or '?'}/{e['loop_id']}  {e['strategy_name'] or ''}  {e['strategy_role'] or ''}"
        )
    for p in lineage["performance"]:
        shared = f" of {p['combination_size']} factors" if p["basis"] == "combination" else ""
        typer.echo(
            f"  {p['window_name']:<16} {p['start_date'] or '?'}..{p['end_date'] or '?'}  IC {p['ic_mean']}  "
            f"ICIR {p['ic_ir']}  rank IC {p['rank_ic']}  Sharpe {p['sharpe']} ({p['sharpe_cost'] or 'cost ?'}, "
            f"{p['periods_per_year'] or '?'} d/y)  ({p['basis']}{shared}, "
            f"{p['task_run_id'] or 'external'}/{p['loop_id'] if p['loop_id'] is not None else '-'})"
        )
    values = lineage["values"]
    if values["n_rows"]:
        typer.echo(
            f"  values: {values['n_rows']:,} rows, {values['n_instruments']} instruments, {values['start']} .. {values['end']}"
        )


def strategies(
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    lake: LakeOpt = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="rdagent_accept, rdagent_reject, manual_review or none (repeatable)."),
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="rdagent, external, handcrafted (repeatable).")
    ] = None,
    task_run: Annotated[str | None, typer.Option(help="Only this task run (id or prefix).")] = None,
    request_name: Annotated[
        str | None, typer.Option("--request", help="Only strategies of this request name.")
    ] = None,
    role: Annotated[str | None, typer.Option(help="control or treatment.")] = None,
    name_like: Annotated[str | None, typer.Option(help="Case-insensitive part of the name.")] = None,
    sort_by: Annotated[
        str,
        typer.Option(
            help="information_ratio, annualized_return, max_drawdown, ic, rank_ic, turnover, "
            "name, created_at, task_run_id."
        ),
    ] = "information_ratio",
    ascending: Annotated[bool, typer.Option("--ascending", help="Smallest first.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most N strategies.")] = 50,
    json_output: JsonOpt = False,
) -> None:
    """List the strategy library with each strategy's experiment and key results."""
    from workbench.library.strategies import strategy_library

    frame = strategy_library(
        archive,
        status=_split(status) or None,
        source=_split(source) or None,
        task_run_id=task_run,
        request_name=request_name,
        role=cast("StrategyRole | None", role),  # checked by strategy_library
        name_like=name_like,
        sort_by=sort_by,  # type: ignore[arg-type]
        descending=not ascending,
        limit=limit,
        lake=lake,
    )
    if json_output:
        _echo_json(_rows(frame))
        return
    _echo_table(
        frame,
        [
            "strategy_id",
            "name",
            "source",
            "recommendation_status",
            "task_run_id",
            "loop_id",
            "strategy_role",
            "annualized_return",
            "information_ratio",
            "max_drawdown",
            "ic",
            "n_factors",
        ],
        short_ids=("strategy_id", "task_run_id"),
    )


def combinations(
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    factor: Annotated[
        str | None, typer.Option("--factor", help="Only combinations containing this factor.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Only combinations of this source (rdagent, manual).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List factor combinations with their factors and the experiments that used them."""
    import polars as pl

    from workbench.library.combinations import combinations as list_combinations

    frame = list_combinations(archive, factor_id=factor, source=source)
    if json_output:
        _echo_json(_rows(frame))
        return
    _echo_table(
        frame.with_columns(pl.col("factor_names").list.join(", ").alias("factors")),
        ["combination_id", "name", "source", "n_factors", "n_experiments", "factors"],
        short_ids=("combination_id",),
    )


def save_combination(
    name: Annotated[str, typer.Argument(help="Name of the new combination.")],
    factors: Annotated[
        list[str],
        typer.Option("--factors", help="Factor ids, prefixes or names; comma-separated or repeated."),
    ],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
) -> None:
    """Save a set of library factors as a named combination (the same set always gets the same id)."""
    from workbench.library.combinations import save_combination as save

    typer.echo(save(archive, name, _split(factors)))


def compare(
    task_run_id: Annotated[str, typer.Argument(help="Task run id (or unique prefix).")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    lake: LakeOpt = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option("--strategy", help="Only these strategies (name, loop id or id; repeatable)."),
    ] = None,
    control: Annotated[
        str | None, typer.Option(help="Use this strategy as the control instead of the request's.")
    ] = None,
    without_cost: Annotated[
        bool, typer.Option("--without-cost", help="Excess return before transaction cost.")
    ] = False,
    n_boot: Annotated[
        int, typer.Option(help="Bootstrap resamples for the Sharpe-difference interval.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (same seed, same interval).")] = 0,
    alpha: Annotated[float, typer.Option(help="1 - confidence level of the intervals (0.05: 95%).")] = 0.05,
    block: Annotated[
        float | None,
        typer.Option(
            help="Bootstrap block length in days (expected length for stationary); default: Politis-White."
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Bootstrap: stationary (Politis-Romano) or circular (fixed blocks).")
    ] = "stationary",
    search: Annotated[
        list[str] | None,
        typer.Option("--search", help="Also count the loops of this task run as DSR trials (repeatable)."),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Number of trials for the DSR instead of the archive's count."),
    ] = None,
    max_dropped_share: Annotated[
        float,
        typer.Option(
            "--max-dropped-share", help="Warn when alignment drops more than this share of a strategy's days."
        ),
    ] = 0.1,
    json_output: JsonOpt = False,
    save_chart: Annotated[
        Path | None, typer.Option("--save-chart", help="Write the chart (.svg, .png or .json).")
    ] = None,
) -> None:
    """Compare control and treatments of a task run: metrics, differences, PSR, DSR, Sharpe-difference CIs."""
    from workbench.analysis import charts
    from workbench.analysis.compare import compare_task_run

    if save_chart is not None:
        charts.check_chart_path(save_chart)  # a wrong suffix is refused before the comparison runs
    result = compare_task_run(
        archive,
        task_run_id,
        strategies=_split(strategy) or None,
        control=control,
        with_cost=not without_cost,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        block=block,
        method=method,  # type: ignore[arg-type]  # checked by compare_task_run
        search=_split(search) or None,
        n_trials=n_trials,
        max_dropped_share=max_dropped_share,
        lake=lake,
    )
    if save_chart is not None:
        charts.save(result.chart(), save_chart)
    typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if json_output else result.format())
    if save_chart is not None and not json_output:
        typer.echo(f"chart written to {save_chart}")


def import_factors(
    file: Annotated[
        Path, typer.Argument(help="Parquet: a factor metadata table or a values table (long or wide).")
    ],
    source: Annotated[str, typer.Option("--source", help="external_manual or alpha_library.")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    values: Annotated[
        Path | None, typer.Option("--values", help="Parquet with the factors' values (long or wide).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Import external factors (and their values) into the factor library; idempotent, source recorded."""
    from workbench.library.external_factors import import_factors as run

    result = run(file, archive=archive, source=source, values=values)  # type: ignore[arg-type]
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.format())


def import_strategy(
    file: Annotated[Path, typer.Argument(help="StrategyConfig as YAML or JSON.")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    source: Annotated[str, typer.Option(help="external or handcrafted.")] = "external",
    name: Annotated[
        str | None, typer.Option(help="Name in the library (default: the config's name, else the file name).")
    ] = None,
    combination: Annotated[
        str | None, typer.Option("--combination", help="Link to this factor combination.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Import an external strategy config into the strategy library; idempotent, source recorded."""
    from workbench.library.external_strategies import import_strategy as run

    result = run(file, archive=archive, source=source, name=name, combination_id=combination)  # type: ignore[arg-type]
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.format())


def attach_request(
    task_run_id: Annotated[str, typer.Argument(help="Task run the request belongs to.")],
    file: Annotated[Path, typer.Argument(help="ExperimentRequest as JSON or YAML.")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    json_output: JsonOpt = False,
) -> None:
    """Attach a validated ExperimentRequest to a task run; the archive job prefers it to params_json."""
    from workbench.library.requests import attach_request as run

    result = run(archive, task_run_id, file)
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.format())


def export_request(
    out: Annotated[Path, typer.Option("--out", help="File to write (.json, .yaml or .yml).")],
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
    factors: Annotated[
        list[str] | None,
        typer.Option("--factors", help="Factor ids, prefixes or names; comma-separated or repeated."),
    ] = None,
    combination: Annotated[
        str | None, typer.Option("--combination", help="A library factor combination.")
    ] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", help="Library strategies, one loop each (repeatable).")
    ] = None,
    control: Annotated[
        str | None, typer.Option(help="Which strategy is the control (default: the first).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Request name.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="research, benchmark or ab_test (default: ab_test with 2+ strategies).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Request description.")] = None,
) -> None:
    """Write the ExperimentRequest for library factors and strategies, ready to hand to RD-Agent."""
    from workbench.library.requests import export_request as run

    path = run(
        archive,
        out=out,
        factor_ids=_split(factors),
        combination_id=combination,
        strategy_ids=_split(strategy),
        control=control,
        name=name,
        kind=cast("ExperimentKind | None", kind),  # checked by export_request
        description=description,
    )
    typer.echo(f"request written to {path}")


def review(
    strategy_id: Annotated[str, typer.Argument(help="Strategy id, unique prefix, key or unique name.")],
    status: Annotated[
        str,
        typer.Option(
            "--status",
            help="manual_review (kept across re-archiving), or rdagent_accept / "
            "rdagent_reject to hand it back to the agent's verdict.",
        ),
    ],
    note: Annotated[str | None, typer.Option("--note", help="Why (required for manual_review).")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who reviewed it.")] = None,
    archive: ArchiveOpt = DEFAULT_ARCHIVE,
) -> None:
    """Record a person's review of a strategy (recommendation status and note)."""
    from workbench.library.strategies import set_recommendation

    result = set_recommendation(archive, strategy_id, status, note, reviewer=reviewer)  # type: ignore[arg-type]
    typer.echo(
        f"{result['name']} ({result['strategy_id']}): {result['previous_status']} -> {result['recommendation_status']}"
    )
