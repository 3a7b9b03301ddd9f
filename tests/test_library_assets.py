"""Factor and strategy libraries and combinations on a really archived sample, multi-strategy run included."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from workbench.analysis.compare import compare_task_run
from workbench.archive import ids
from workbench.archive.pipeline import archive
from workbench.cli import main
from workbench.errors import ConfigError
from workbench.library.combinations import combination_members, combinations, save_combination
from workbench.library.factors import factor_library, factor_lineage, factor_performance
from workbench.library.strategies import set_recommendation, strategy_config, strategy_library


@dataclass(frozen=True)
class Archived:
    rd: Path
    archive: Path
    manifest: dict[str, Any]

    @property
    def multi_task_run(self) -> str:
        return next(iter(self.manifest["multi_strategy_task_runs"]))

    @property
    def multi_request(self) -> dict[str, Any]:
        return self.manifest["multi_strategy_task_runs"][self.multi_task_run]


@pytest.fixture(scope="module")
def archived(sample_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Archived:
    """The sample installation archived once for this module (read-only tests use it directly)."""
    root = tmp_path_factory.mktemp("library")
    rd = root / "rd"
    shutil.copytree(sample_template, rd, symlinks=True)
    archive(rd, archive=root / "ar", mode="full", progress=False)
    manifest = json.loads((rd / "sample_manifest.json").read_text(encoding="utf-8"))
    return Archived(rd, root / "ar", manifest)


def _query(archive_dir: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- multi-strategy end to end


def test_every_strategy_of_the_multi_strategy_experiment_is_in_the_library_with_its_results(
    archived: Archived,
) -> None:
    expected = {s["name"]: s for s in archived.multi_request["strategies"]}
    library = strategy_library(
        archived.archive, task_run_id=archived.multi_task_run, sort_by="name", descending=False
    )
    assert sorted(library["name"].to_list()) == sorted(expected)
    for row in library.iter_rows(named=True):
        entry = expected[row["name"]]
        assert row["strategy_role"] == entry["role"]
        assert row["loop_id"] == entry["loop_id"]
        assert row["request_name"] == archived.multi_request["name"]
        assert row["strategy_key"].startswith(f"{archived.multi_task_run}/{entry['loop_id']}/")
        assert row["archiving_level"] == 2 and row["n_days"] == 60 and row["metrics_basis"] == "recomputed"
        assert row["information_ratio"] is not None and row["max_drawdown"] <= 0
        assert row["n_factors"] == len(entry["factor_set"]["factors"])
    assert library.filter(pl.col("strategy_role") == "control")["name"].to_list() == ["sota_topk50"]


def test_every_factor_of_the_multi_strategy_experiment_is_visible_with_lineage_and_results(
    archived: Archived,
) -> None:
    names = {f["name"] for s in archived.multi_request["strategies"] for f in s["factor_set"]["factors"]}
    experiments = {
        r[0]: r[1]
        for r in _query(
            archived.archive,
            "SELECT loop_id, id FROM aistock_experiments WHERE task_run_id = ?",
            [archived.multi_task_run],
        )
    }
    library = factor_library(archived.archive, limit=None)
    for name in sorted(names):
        used_by = [
            s["loop_id"]
            for s in archived.multi_request["strategies"]
            if name in {f["name"] for f in s["factor_set"]["factors"]}
        ]
        candidates = library.filter(pl.col("name") == name)
        assert candidates.height >= 1, name
        uses: dict[str, dict[str, Any]] = {}
        for factor in candidates["factor_id"]:
            uses |= {e["experiment_id"]: e for e in factor_lineage(archived.archive, factor)["experiments"]}
        for loop in used_by:
            use = uses[experiments[loop]]  # the factor's lineage lists each experiment that used it ...
            assert use["strategy_name"] == archived.multi_request["strategies"][loop]["name"], name
            assert use["strategy_role"] == archived.multi_request["strategies"][loop]["role"], name
            assert (
                use["information_ratio"] is not None and use["annualized_return"] is not None
            )  # ... with results
    # factor-level results of the run: one row per factor, window and experiment that reported them
    perf = factor_performance(archived.archive).filter(pl.col("task_run_id") == archived.multi_task_run)
    assert perf.height and set(perf["name"].to_list()) <= names
    assert set(perf["loop_id"].to_list()) == {s["loop_id"] for s in archived.multi_request["strategies"]}


def test_the_multi_strategy_combinations_list_the_experiments_that_used_them(archived: Archived) -> None:
    frame = combinations(archived.archive)
    mine = frame.filter(pl.col("task_run_ids").list.contains(archived.multi_task_run))
    by_loop = {
        r[0]: r[1]
        for r in _query(
            archived.archive,
            "SELECT loop_id, id FROM aistock_experiments WHERE task_run_id = ?",
            [archived.multi_task_run],
        )
    }
    shared = mine.filter(pl.col("name").str.starts_with("sota_topk50_factors"))
    assert shared.height == 1
    # loops 0-2 share one factor set; loop 3 (alt_factors) has its own
    assert set(shared["experiment_ids"][0].to_list()) == {by_loop[0], by_loop[1], by_loop[2]}
    alt = mine.filter(pl.col("name").str.starts_with("alt_factors"))
    assert alt["experiment_ids"][0].to_list() == [by_loop[3]]
    alt_names = {f["name"] for f in archived.multi_request["strategies"][3]["factor_set"]["factors"]}
    assert set(alt["factor_names"][0].to_list()) == alt_names
    members = combination_members(archived.archive, alt["combination_id"][0])
    assert set(members["name"].to_list()) == alt_names and members.height == len(alt_names)


def test_the_comparison_between_the_strategies_of_the_multi_strategy_run(archived: Archived) -> None:
    result = compare_task_run(archived.archive, archived.multi_task_run, n_boot=300)
    assert result.control == "sota_topk50" and result.control_basis == "request"
    assert result.table["strategy"].to_list() == ["sota_topk50", "topk30", "topk50_riskcap", "alt_factors"]
    assert result.n_trials == 4 and result.n_days == 60


# --------------------------------------------------------------------------- factor library


def test_factor_ids_follow_the_identity_rule_and_are_unique(archived: Archived) -> None:
    library = factor_library(archived.archive, limit=None)
    assert library["factor_id"].n_unique() == library.height
    for row in library.iter_rows(named=True):
        expression = row["expression"] or row["formula_hint"]
        if expression:
            assert row["factor_id"] == ids.factor_id(row["name"], expression=expression)
    # the same Alpha158 expression met in several loops is one factor used by several experiments
    by_expression = library.filter(pl.col("expression").is_not_null() & (pl.col("expression") != ""))
    assert by_expression.select(
        pl.col("expression").str.replace_all(r"\s", "").str.to_lowercase().is_unique().all()
    ).item()
    assert by_expression["n_experiments"].max() >= 2


def test_factor_library_filters_and_sorts_in_one_call(archived: Archived) -> None:
    everything = factor_library(archived.archive, limit=None)
    assert set(everything["source"].unique().to_list()) >= {"rdagent_generated", "qlib_alpha158"}

    alpha = factor_library(archived.archive, source="qlib_alpha158", tags=["alpha158"], limit=None)
    assert alpha.height and set(alpha["source"].to_list()) == {"qlib_alpha158"}
    assert all("alpha158" in tags for tags in alpha["tags"].to_list())

    named = factor_library(archived.archive, name_like="corr", sort_by="name", descending=False, limit=None)
    assert named.height and all("corr" in n.lower() for n in named["name"].to_list())
    assert named["name"].to_list() == sorted(named["name"].to_list())

    ranked = factor_library(archived.archive, sort_by="ic_ir", limit=5)
    values = [v for v in ranked["ic_ir"].to_list() if v is not None]
    assert ranked.height == 5 and values == sorted(values, reverse=True)
    ascending = factor_library(archived.archive, sort_by="ic_ir", descending=False, limit=None)
    non_null = ascending["ic_ir"].drop_nulls().to_list()
    assert (
        non_null == sorted(non_null) and ascending["ic_ir"].to_list()[: len(non_null)] == non_null
    )  # nulls last

    strong = factor_library(archived.archive, min_ic=0.045, limit=None)
    assert strong.height and (strong["ic_mean"] >= 0.045).all()
    assert strong.height < everything.height

    window = factor_library(archived.archive, window="main_window", limit=None)
    assert set(window["window_name"].to_list()) == {"main_window"}
    with pytest.raises(
        ConfigError,
        match=r"window='no_such_window': no factor has a result in that window; "
        r"windows in the library: .*main_window",
    ):
        factor_library(archived.archive, window="no_such_window", limit=None)

    with pytest.raises(ConfigError, match="sort_by"):
        factor_library(archived.archive, sort_by="bogus")  # type: ignore[arg-type]


def test_each_factor_carries_a_summary_of_its_figures_and_how_much_evidence_there_is(
    archived: Archived,
) -> None:
    library = factor_library(archived.archive, sort_by="sharpe", limit=None)
    perf = factor_performance(archived.archive)
    own = perf.filter((pl.col("basis") == "factor").any().over("factor_id"))
    chosen = pl.concat([own.filter(pl.col("basis") == "factor"), perf.join(own, on="factor_id", how="anti")])
    expected = chosen.group_by("factor_id").agg(
        pl.col("sharpe").mean().alias("mean"),
        pl.col("sharpe").median().alias("median"),
        pl.col("sharpe").max().alias("best"),
        pl.col("sharpe").min().alias("worst"),
        pl.col("experiment_id").drop_nulls().n_unique().alias("n"),
    )
    joined = library.join(expected, on="factor_id", how="inner")
    assert joined.height == expected.height and joined.height > 0
    for ours, theirs in (("sharpe", "mean"), ("median_sharpe", "median"), ("best_sharpe", "best")):
        assert ((joined[ours] - joined[theirs]).abs() < 1e-12).all(), ours
    assert (joined["worst_sharpe"] == joined["worst"]).all()
    assert (joined["n_experiments_with_figures"] == joined["n"]).all() and (joined["n"] >= 1).all()
    assert (joined["n_experiments"] >= 1).all()
    # every figure of the sample is a combination's (HEAD files have no per-factor figures): labelled so
    assert set(library["basis"].drop_nulls().to_list()) == {"combination"}
    assert (library.filter(pl.col("basis").is_not_null())["combination_size"] > 1).any()


def test_factor_lineage_names_the_first_experiment_and_every_use(archived: Archived) -> None:
    library = factor_library(archived.archive, sort_by="n_experiments", limit=1)
    factor = library["factor_id"][0]
    lineage = factor_lineage(archived.archive, factor[:10])  # a unique prefix is enough
    assert lineage["factor"]["factor_id"] == factor
    assert len(lineage["experiments"]) == library["n_experiments"][0] >= 2
    assert lineage["first_experiment"]["experiment_id"] == lineage["factor"]["first_experiment_id"]
    assert all(e["task_run_id"] and e["strategy_name"] for e in lineage["experiments"])
    assert len(lineage["combinations"]) == library["n_combinations"][0]
    assert lineage["values"]["n_rows"] == 0
    json.dumps(lineage)  # JSON-ready
    with pytest.raises(ConfigError, match="unknown factor"):
        factor_lineage(archived.archive, "no-such-factor")


# --------------------------------------------------------------------------- strategy library and review


def test_strategy_library_shows_the_agents_verdict_and_filters(archived: Archived) -> None:
    everything = strategy_library(archived.archive, limit=None)
    keys = everything["strategy_key"].to_list()
    assert len(keys) == len(set(keys))
    accepted = strategy_library(archived.archive, status="rdagent_accept", limit=None)
    assert accepted.height and set(accepted["recommendation_status"].to_list()) == {"rdagent_accept"}
    undecided = strategy_library(archived.archive, status="none", limit=None)
    assert undecided["recommendation_status"].null_count() == undecided.height
    treatments = strategy_library(archived.archive, role="treatment", limit=None)
    assert sorted(treatments["name"].to_list()) == ["alt_factors", "topk30", "topk50_riskcap"]
    ranked = strategy_library(archived.archive, sort_by="information_ratio", limit=None)
    values = ranked["information_ratio"].drop_nulls().to_list()
    assert values == sorted(values, reverse=True)


def test_strategy_config_turns_a_library_strategy_back_into_a_strategy_config(archived: Archived) -> None:
    config = strategy_config(archived.archive, "topk50_riskcap")
    entry = archived.multi_request["strategies"][2]
    assert config.strategy_type == "topk" and config.name == "topk50_riskcap"
    assert config.trading_rule == entry["trading_rule"] and config.risk_model == entry["risk_model"]
    assert config.benchmark == "SH000300"


def test_a_manual_review_survives_re_archiving_and_is_audited(sample_template: Path, tmp_path: Path) -> None:
    rd = tmp_path / "rd"
    shutil.copytree(sample_template, rd, symlinks=True)
    archive_dir = tmp_path / "ar"
    archive(rd, archive=archive_dir, mode="full", progress=False)
    accepted = strategy_library(archive_dir, status="rdagent_accept", limit=None)
    row = accepted.filter(pl.col("archiving_level") == 2).row(0, named=True)

    with pytest.raises(ConfigError, match="note"):
        set_recommendation(archive_dir, row["strategy_id"], "manual_review")
    with pytest.raises(ConfigError, match="status"):
        set_recommendation(archive_dir, row["strategy_id"], "approved", "x")  # type: ignore[arg-type]
    result = set_recommendation(
        archive_dir, row["strategy_id"][:10], "manual_review", "turnover too high", reviewer="qa"
    )
    assert (
        result["previous_status"] == "rdagent_accept" and result["recommendation_status"] == "manual_review"
    )

    # touch the loop's workspace so the next full run re-extracts it, then archive again
    workspace = Path(
        _query(
            archive_dir, "SELECT workspace_dir FROM aistock_experiments WHERE id = ?", [row["experiment_id"]]
        )[0][0]
    )
    os.utime(workspace / "qlib_res.csv", ns=(1, 1))
    summary = archive(rd, archive=archive_dir, mode="full", progress=False)
    assert summary.level2 >= 1
    after = strategy_library(archive_dir, status="manual_review", limit=None)
    assert after["strategy_id"].to_list() == [row["strategy_id"]]
    assert after["review_note"][0] == "turnover too high"

    back = set_recommendation(archive_dir, row["strategy_id"], "rdagent_accept")
    assert back["recommendation_status"] == "rdagent_accept"
    history = _query(
        archive_dir,
        "SELECT status, previous_status, note, reviewer FROM wb_strategy_reviews "
        "WHERE strategy_id = ? ORDER BY created_at",
        [row["strategy_id"]],
    )
    assert history == [
        ("manual_review", "rdagent_accept", "turnover too high", "qa"),
        ("rdagent_accept", "manual_review", None, None),
    ]


# --------------------------------------------------------------------------- combinations


def test_save_combination_is_idempotent_and_refuses_unknown_factors(
    archived: Archived, tmp_path: Path
) -> None:
    archive_dir = tmp_path / "ar"
    shutil.copytree(archived.archive, archive_dir)
    # three factors that no loop ran together (the top three by IC ICIR can be one combination's members)
    picks = factor_library(archive_dir, sort_by="name", descending=False, limit=3)["factor_id"].to_list()
    first = save_combination(archive_dir, "top3_by_icir", picks)
    again = save_combination(archive_dir, "top3_by_icir", list(reversed(picks)))
    assert first == again == ids.combination_id(picks)
    saved = combinations(archive_dir, source="manual")
    assert (
        saved["name"].to_list() == ["top3_by_icir"]
        and saved["n_factors"][0] == 3
        and saved["n_experiments"][0] == 0
    )
    for factor in picks:
        assert first in combinations(archive_dir, factor_id=factor)["combination_id"].to_list()
    before = _query(archive_dir, "SELECT count(*) FROM aistock_factor_combinations")
    with pytest.raises(ConfigError, match="unknown factor"):
        save_combination(archive_dir, "bad", [picks[0], "not-a-factor"])
    assert _query(archive_dir, "SELECT count(*) FROM aistock_factor_combinations") == before


def test_saving_a_known_set_under_another_name_says_which_combination_it_is(
    archived: Archived, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_dir = tmp_path / "ar"
    shutil.copytree(archived.archive, archive_dir)
    picks = factor_library(archive_dir, sort_by="ic_ir", limit=2)["factor_id"].to_list()
    combo = save_combination(archive_dir, "mycombo", picks)
    before = _query(archive_dir, "SELECT id, name FROM aistock_factor_combinations ORDER BY id")

    code = main(
        [
            "save-combination",
            "mycombo2",
            "--factors",
            ",".join(reversed(picks)),
            "--archive",
            str(archive_dir),
        ]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and captured.err.count("\n") == 1
    assert f"the same factors are already saved as combination 'mycombo' (id {combo}" in captured.err
    assert "'mycombo2' was not recorded" in captured.err

    others = factor_library(archive_dir, sort_by="ic_ir", limit=4)["factor_id"].to_list()[2:]
    with pytest.raises(ConfigError, match="a combination named 'mycombo' already exists with other factors"):
        save_combination(archive_dir, "mycombo", others)
    assert _query(archive_dir, "SELECT id, name FROM aistock_factor_combinations ORDER BY id") == before

    # a set RD-Agent already ran: the message names the combination the archive recorded
    recorded = combinations(archive_dir, source="rdagent").row(0, named=True)
    with pytest.raises(
        ConfigError,
        match=f"already saved as combination '{re.escape(recorded['name'])}'.*recorded by the archive",
    ):
        save_combination(archive_dir, "my_copy", recorded["factor_ids"])


# --------------------------------------------------------------------------- filters refuse values that can never match


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["strategies", "--role", "boss"], "role='boss' is not one of: control, treatment"),
        (
            ["strategies", "--status", "nonsense"],
            "status='nonsense' is not one of: manual_review, rdagent_accept, rdagent_reject, none",
        ),
        (["strategies", "--source", "agent"], "source='agent' is not one of: external, handcrafted, rdagent"),
        (["strategies", "--task-run", "no-such-run"], "unknown task run 'no-such-run'"),
        (["strategies", "--request", "no_such_request"], "unknown request 'no_such_request'"),
        (["strategies", "--sort-by", "sharpe"], "sort_by='sharpe' is not one of"),
        (
            ["factors", "--source", "qlib_alpha159"],
            "source='qlib_alpha159' is not one of: alpha_library, external_manual, "
            "qlib_alpha158, rdagent_generated",
        ),
        (["factors", "--window", "test_2012"], "window='test_2012': no factor has a result in that window"),
        (["factors", "--sort-by", "ic"], "sort_by='ic' is not one of"),
        (["factors", "--limit", "0"], "limit must be at least 1"),
        (["factor", ""], "factor reference is empty"),
        (["factor", "no-such-factor"], "unknown factor 'no-such-factor'"),
        (["combinations", "--source", "manaul"], "source='manaul' is not one of: manual, rdagent"),
        (["combinations", "--factor", "no-such-factor"], "unknown factor 'no-such-factor'"),
        (["save-combination", "x", "--factors", "no-such-factor"], "unknown factor 'no-such-factor'"),
    ],
)
def test_library_filters_refuse_values_that_can_never_match(
    archived: Archived, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main([*argv, "--archive", str(archived.archive)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_library_filters_validate_in_python_too(archived: Archived) -> None:
    with pytest.raises(ConfigError, match="role='boss'"):
        strategy_library(archived.archive, role="boss")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="status='approved'"):
        strategy_library(archived.archive, status=["rdagent_accept", "approved"])
    with pytest.raises(ConfigError, match="task run id is empty"):
        strategy_library(archived.archive, task_run_id="")
    with pytest.raises(ConfigError, match="source='alpha'"):
        factor_library(archived.archive, source=["qlib_alpha158", "alpha"])
    with pytest.raises(ConfigError, match="source='nope'"):
        combinations(archived.archive, source="nope")
    with pytest.raises(ConfigError, match="factor reference is empty"):
        factor_lineage(archived.archive, " ")
    # valid values still filter: a documented source nobody has yet is an empty answer, not an error
    assert factor_library(archived.archive, source="external_manual", limit=None).height == 0
    assert strategy_library(archived.archive, source="handcrafted", limit=None).height == 0
    assert combinations(archived.archive, source="manual").height == 0
    prefix = strategy_library(archived.archive, task_run_id=archived.multi_task_run[:6], limit=None)
    assert prefix.height == len(archived.multi_request["strategies"])
    by_request = strategy_library(
        archived.archive, request_name=archived.multi_request["name"], role="control"
    )
    assert by_request["name"].to_list() == ["sota_topk50"]


def test_library_commands_on_a_missing_archive_exit_5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["factors"],
        ["factor", "x"],
        ["strategies"],
        ["strategies", "--role", "control"],
        ["combinations"],
        ["save-combination", "x", "--factors", "y"],
        ["review", "x", "--status", "rdagent_accept"],
        ["export-request", "--factors", "y", "--out", str(tmp_path / "r.json")],
    ):
        code = main([*argv, "--archive", str(tmp_path / "nothing")])
        err = capsys.readouterr().err
        assert code == 5 and err.count("\n") == 1 and "no archive at" in err, (argv, err)


# --------------------------------------------------------------------------- the on-disk library copy


def _wait_for_cache_writes() -> None:
    import threading

    for thread in threading.enumerate():
        if thread.name == "factor-library-cache":
            thread.join(timeout=30)


def test_the_library_copy_on_disk_serves_a_fresh_process_and_never_a_changed_catalog(
    archived: Archived, tmp_path: Path
) -> None:
    from workbench.archive.library_cache import clear_library_cache, refresh_library_cache

    archive_dir = tmp_path / "ar"
    shutil.copytree(archived.archive, archive_dir)
    shutil.rmtree(archive_dir / "cache", ignore_errors=True)
    clear_library_cache()
    from_catalog = factor_library(archive_dir, sort_by="name", descending=False)
    _wait_for_cache_writes()  # the copy is written in the background
    refresh_library_cache(archive_dir)
    cached = sorted((archive_dir / "cache").glob("factor_library-*.arrow"))
    assert [p.name.split(".", 1)[1] for p in cached] == ["factors.arrow", "performance.arrow"]
    clear_library_cache()  # as in a new kernel: the copy on disk answers, with the same rows
    assert factor_library(archive_dir, sort_by="name", descending=False).equals(from_catalog)

    # another program changes the catalog: the copy made for the old state is never used again
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"))
    first = from_catalog["factor_id"][0]
    con.execute("UPDATE aistock_factors SET name = 'AAA_renamed' WHERE id = ?", [first])
    con.close()
    clear_library_cache()
    renamed = factor_library(archive_dir, sort_by="name", descending=False)
    assert renamed["name"][0] == "AAA_renamed" and renamed["factor_id"][0] == first
    _wait_for_cache_writes()
    refresh_library_cache(archive_dir)
    assert (
        len(list((archive_dir / "cache").glob("factor_library-*.arrow"))) == 2
    )  # the old state's copy is gone

    # a damaged copy is read as no copy
    for path in (archive_dir / "cache").glob("factor_library-*.factors.arrow"):
        path.write_bytes(b"not arrow")
    clear_library_cache()
    assert factor_library(archive_dir, sort_by="name", descending=False).equals(renamed)


def test_jobs_that_change_the_library_leave_a_current_copy(archived: Archived, tmp_path: Path) -> None:
    from workbench.archive.library_cache import (  # the copy's name for a catalog state
        _cache_files,
        _catalog_state,
    )

    archive_dir = tmp_path / "ar"
    shutil.copytree(archived.archive, archive_dir)
    factor_ids = factor_library(archive_dir, limit=2)["factor_id"].to_list()
    save_combination(archive_dir, "cache_check", factor_ids)
    from workbench.archive.layout import ArchiveLayout

    files = _cache_files(ArchiveLayout.at(archive_dir), _catalog_state(archive_dir))
    assert all(f.is_file() for f in files)
