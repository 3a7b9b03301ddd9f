"""External factors and strategies, attached and exported requests, and the asset-pool commands."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from workbench.analysis.compare import compare_task_run
from workbench.archive import ids
from workbench.archive.pipeline import archive
from workbench.cli import main
from workbench.errors import ConfigError, InputFileError
from workbench.library.combinations import save_combination
from workbench.library.external_factors import import_factors
from workbench.library.external_strategies import import_strategy
from workbench.library.factors import factor_library, factor_lineage
from workbench.library.requests import attach_request, attached_request, export_request, request_for
from workbench.library.strategies import strategy_library
from workbench.rdagent.request import load_request

RESI5 = "Resi($close, 5)/$close"  # an Alpha158 expression the sample's loops also use


@pytest.fixture(scope="module")
def archived_template(sample_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("external")
    rd = root / "rd"
    shutil.copytree(sample_template, rd, symlinks=True)
    archive(rd, archive=root / "ar", mode="full", progress=False)
    return rd, root / "ar"


@pytest.fixture()
def archive_dir(archived_template: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the archived sample (these tests write)."""
    target = tmp_path / "ar"
    shutil.copytree(archived_template[1], target)
    return target


def _count(archive_dir: Path, sql: str, params: list[Any] | None = None) -> Any:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()[0][0]
    finally:
        con.close()


def _counts(archive_dir: Path) -> tuple[int, ...]:
    tables = (
        "aistock_factors",
        "aistock_factor_performance",
        "aistock_factor_values",
        "aistock_strategies",
        "wb_imports",
        "wb_attached_requests",
    )
    return tuple(_count(archive_dir, f"SELECT count(*) FROM {t}") for t in tables)


def _metadata(path: Path) -> Path:
    pl.DataFrame(
        {
            "name": ["ext_mom_5", "ext_mom_5", "ext_value", "RESI5"],
            "version": ["1", "1", "2", None],
            "expression": ["Ref($close,5)/$close-1", "Ref($close,5)/$close-1", None, RESI5],
            "description_cn": ["5日动量", "5日动量", "价值因子", None],
            "tags": [["momentum", "external"], ["momentum", "external"], ["value"], ["from_library"]],
            "window_name": ["train_2018_2020", "test_2021_2025", "test_2021_2025", "test_2021_2025"],
            "ic_mean": [0.031, 0.024, 0.052, 0.011],
            "ic_ir": [0.41, 0.33, 0.61, 0.12],
            "sharpe": [1.1, 0.9, 1.6, None],
        }
    ).write_parquet(path)
    return path


def _wide_values(path: Path, *, days: int = 5) -> Path:
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(days)]
    instruments = ["SH600000", "SH600001", "SZ000001"]
    pl.DataFrame(
        {
            "datetime": [d for d in dates for _ in instruments],
            "instrument": instruments * days,
            "('feature', 'ext_mom_5')": [
                float(i) for i in range(days * 3)
            ],  # a pandas MultiIndex column label
            "ext_value": [float(-i) for i in range(days * 3)],
        }
    ).write_parquet(path)
    return path


# --------------------------------------------------------------------------- factors


def test_import_factors_with_results_and_wide_values_is_idempotent(archive_dir: Path, tmp_path: Path) -> None:
    meta, values = _metadata(tmp_path / "meta.parquet"), _wide_values(tmp_path / "values.parquet")
    known_resi5 = ids.factor_id("RESI5", expression=RESI5)
    before = factor_lineage(archive_dir, known_resi5)["factor"]
    assert (
        factor_library(archive_dir, source="alpha_library", limit=None).height == 0
    )  # (cached until the catalog changes)

    first = import_factors(meta, archive=archive_dir, source="alpha_library", values=values)
    assert (first.new, first.n_performance, first.n_values) == (2, 4, 30)
    assert len(first.ids) == 3 and known_resi5 in first.ids
    counts = _counts(archive_dir)

    again = import_factors(meta, archive=archive_dir, source="alpha_library", values=values)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)
    assert _counts(archive_dir) == counts  # nothing duplicated, values replaced by themselves
    assert not any("new one was created" in n for n in first.notes + again.notes)
    mistyped = import_factors(meta, archive=tmp_path / "typo", source="alpha_library")
    assert any(n.startswith(f"no archive existed at {tmp_path / 'typo'}") for n in mistyped.notes)

    library = factor_library(
        archive_dir, source="alpha_library", window="test_2021_2025", sort_by="ic_ir", limit=None
    )
    assert library["name"].to_list() == ["ext_value", "ext_mom_5"]
    assert library["ic_ir"].to_list() == [0.61, 0.33] and set(library["basis"].to_list()) == {"factor"}
    mom = factor_lineage(archive_dir, "ext_mom_5")
    assert mom["factor"]["factor_id"] == ids.factor_id("ext_mom_5", expression="Ref($close,5)/$close-1")
    assert sorted(p["window_name"] for p in mom["performance"]) == ["test_2021_2025", "train_2018_2020"]
    assert mom["factor"]["tags"] == ["external", "momentum"] and mom["factor"]["description_cn"] == "5日动量"
    assert mom["values"] == {"n_rows": 15, "start": "2024-01-01", "end": "2024-01-05", "n_instruments": 3}

    # the Alpha158 factor RD-Agent already produced is the same factor: source kept, tags united
    resi5 = factor_lineage(archive_dir, known_resi5)["factor"]
    assert resi5["source"] == before["source"] == "qlib_alpha158"
    assert set(resi5["tags"]) == set(before["tags"]) | {"from_library"}
    assert any("another source" in note for note in first.notes)

    recorded = _count(
        archive_dir,
        "SELECT count(*) FROM wb_imports WHERE kind = 'factors' AND source = 'alpha_library' AND sha256 = ?",
        [first.sha256],
    )
    assert recorded == 1


def test_import_factor_values_alone_long_format(archive_dir: Path, tmp_path: Path) -> None:
    wide = pl.read_parquet(_wide_values(tmp_path / "wide.parquet"))
    long = wide.unpivot(
        index=["datetime", "instrument"], variable_name="factor", value_name="value"
    ).with_columns(pl.col("datetime").cast(pl.String))
    long.write_parquet(tmp_path / "long.parquet")
    result = import_factors(tmp_path / "long.parquet", archive=archive_dir, source="external_manual")
    assert (result.new, result.n_values) == (2, 30)
    library = factor_library(
        archive_dir, source="external_manual", sort_by="name", descending=False, limit=None
    )
    assert library["name"].to_list() == ["ext_mom_5", "ext_value"]  # the tuple label became the factor name
    assert factor_lineage(archive_dir, library["factor_id"][1])["values"]["n_rows"] == 15


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"name": ["a"], "ic_men": [0.1]}), "unknown column.*'ic_men'"),
        (pl.DataFrame({"name": ["a", " "], "ic_mean": [0.1, 0.2]}), "'name' is empty in row 2"),
        (pl.DataFrame({"name": ["a", "b"], "ic_mean": ["0.1", "high"]}), "'ic_mean' must be numeric; row 2"),
        (pl.DataFrame({"name": ["a", "a"], "version": ["1", "1"]}), "appears twice"),
        (pl.DataFrame({"name": ["a"], "tags": [1]}), "'tags' must be a list"),
        (pl.DataFrame({"nom": ["a"]}), "neither a factor metadata table"),
        (
            pl.DataFrame(
                {"datetime": ["2024-01-01", "2024-13-01"], "instrument": ["X", "X"], "f": [1.0, 2.0]}
            ),
            "'datetime' is not a date .* row 2",
        ),
        (
            pl.DataFrame(
                {
                    "datetime": ["2024-01-01"] * 2,
                    "instrument": ["X"] * 2,
                    "factor": ["f"] * 2,
                    "value": [1.0, 2.0],
                }
            ),
            "more than once",
        ),
        (pl.DataFrame({"datetime": ["2024-01-01"], "instrument": ["X"], "f": ["text"]}), "not numeric"),
    ],
)
def test_invalid_factor_tables_are_refused_with_the_column_and_nothing_is_stored(
    archive_dir: Path, tmp_path: Path, frame: pl.DataFrame, message: str
) -> None:
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)
    before = _counts(archive_dir)
    with pytest.raises(ConfigError, match=message):
        import_factors(path, archive=archive_dir, source="external_manual")
    assert _counts(archive_dir) == before


def test_values_must_belong_to_factors_of_the_metadata(archive_dir: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.parquet"
    pl.DataFrame({"name": ["ext_mom_5"], "version": ["1"]}).write_parquet(meta)
    before = _counts(archive_dir)
    with pytest.raises(
        ConfigError,
        match=r"v\.parquet: values for factor\(s\) not in the metadata table .*meta\.parquet: \['ext_value'\]",
    ):
        import_factors(
            meta, archive=archive_dir, source="external_manual", values=_wide_values(tmp_path / "v.parquet")
        )
    with pytest.raises(ConfigError, match="external_manual or|is not one of"):
        import_factors(meta, archive=archive_dir, source="rdagent_generated")  # type: ignore[arg-type]
    with pytest.raises(InputFileError, match="not a readable Parquet"):
        (tmp_path / "x.parquet").write_text("not parquet")
        import_factors(tmp_path / "x.parquet", archive=archive_dir, source="external_manual")
    assert _counts(archive_dir) == before


def test_missing_or_unreadable_input_files_are_input_file_errors_naming_the_file(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = ["--archive", str(archive_dir)]
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("name,ic\nmom,0.1\n", encoding="utf-8")
    not_utf8 = tmp_path / "latin1.yaml"
    not_utf8.write_bytes("strategy_type: topk\nname: caf\xe9\n".encode("latin-1"))
    cases = [
        (
            ["import-factors", str(tmp_path / "missing.parquet"), "--source", "external_manual"],
            "missing.parquet: factor file not found",
        ),
        (
            ["import-factors", str(not_parquet), "--source", "external_manual"],
            "notes.parquet: factor file is not a readable Parquet",
        ),
        (["import-factors", str(tmp_path), "--source", "external_manual"], "factor file is not a file"),
        (
            [
                "import-factors",
                str(_metadata(tmp_path / "meta.parquet")),
                "--source",
                "external_manual",
                "--values",
                str(tmp_path / "gone.parquet"),
            ],
            "gone.parquet: values file not found",
        ),
        (["import-strategy", str(tmp_path / "missing.yaml")], "missing.yaml: file not found"),
        (["import-strategy", str(not_utf8)], "latin1.yaml: not UTF-8 text"),
        (
            ["attach-request", "b7d779cc4b5c4436953c178e61067a8c", str(tmp_path / "missing.json")],
            "missing.json: file not found",
        ),
    ]
    before = _counts(archive_dir)
    for argv, message in cases:
        code = main([*argv, *a])
        captured = capsys.readouterr()
        assert code == 3, (argv, code, captured.err)
        assert captured.err.count("\n") == 1 and message in captured.err, (argv, captured.err)
    assert _counts(archive_dir) == before
    with pytest.raises(InputFileError) as caught:
        import_strategy(tmp_path / "missing.yaml", archive=archive_dir)
    assert caught.value.path == str(tmp_path / "missing.yaml")

    # a readable file with invalid content stays a documented validation error (exit 2)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("strategy_type: topk\ntrading_rules: {topk: 5}\n", encoding="utf-8")
    assert main(["import-strategy", str(bad_yaml), *a]) == 2
    assert "trading_rules: unknown field" in capsys.readouterr().err
    pl.DataFrame({"name": ["x"], "bogus": [1]}).write_parquet(tmp_path / "cols.parquet")
    assert main(["import-factors", str(tmp_path / "cols.parquet"), "--source", "external_manual", *a]) == 2
    assert "unknown column(s) 'bogus'" in capsys.readouterr().err


def test_a_bad_values_file_is_named_not_the_metadata_file(archive_dir: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.parquet"
    pl.DataFrame({"name": ["ext_mom_5"], "version": ["1"]}).write_parquet(meta)
    values = _wide_values(tmp_path / "values_file.parquet")  # holds ext_value too, which the metadata lacks
    with pytest.raises(ConfigError) as caught:
        import_factors(meta, archive=archive_dir, source="external_manual", values=values)
    message = str(caught.value)
    assert message.startswith(f"{values}: values for factor(s) not in the metadata table {meta}")
    assert "['ext_value']" in message

    two_versions = tmp_path / "two_versions.parquet"
    pl.DataFrame({"name": ["ext_mom_5", "ext_mom_5", "ext_value"], "version": ["1", "2", "1"]}).write_parquet(
        two_versions
    )
    with pytest.raises(ConfigError) as caught:
        import_factors(two_versions, archive=archive_dir, source="external_manual", values=values)
    assert str(caught.value).startswith(f"{values}: factor name(s) ['ext_mom_5'] stand for several factors")
    assert str(two_versions) in str(caught.value)


# --------------------------------------------------------------------------- strategies


def _strategy_file(path: Path, topk: int = 40) -> Path:
    path.write_text(
        f"strategy_type: topk\nname: ext_topk{topk}\ntrading_rule: {{topk: {topk}, n_drop: 4}}\n"
        "benchmark: SH000905\nextra: {shape: portfolio, output_mode: target_weight}\n",
        encoding="utf-8",
    )
    return path


def test_import_strategy_is_validated_idempotent_and_versioned(archive_dir: Path, tmp_path: Path) -> None:
    path = _strategy_file(tmp_path / "ext.yaml")
    first = import_strategy(path, archive=archive_dir)
    assert (first.new, first.kind, first.source) == (1, "strategy", "external")
    again = import_strategy(path, archive=archive_dir)
    assert again.ids == first.ids and again.unchanged == 1

    row = strategy_library(archive_dir, source="external", limit=None).row(0, named=True)
    assert row["name"] == "ext_topk40" and row["strategy_key"].startswith("external/ext_topk40/")
    assert (
        row["shape"] == "portfolio" and row["experiment_id"] is None and row["recommendation_status"] is None
    )

    edited = import_strategy(
        _strategy_file(tmp_path / "ext.yaml", topk=30), archive=archive_dir, name="ext_topk40"
    )
    assert edited.new == 1 and edited.ids != first.ids  # a changed config is a new strategy version
    assert strategy_library(archive_dir, source="external", limit=None).height == 2

    combination = save_combination(
        archive_dir, "two", factor_library(archive_dir, limit=2)["factor_id"].to_list()
    )
    linked = import_strategy(
        _strategy_file(tmp_path / "ext.yaml"), archive=archive_dir, combination_id=combination[:8]
    )
    assert linked.ids == first.ids and linked.updated == 1
    linked_row = strategy_library(archive_dir, source="external", limit=None).filter(
        pl.col("strategy_id") == first.ids[0]
    )
    assert linked_row["factor_combination_id"][0] == combination and linked_row["n_factors"][0] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: no_type\ntrading_rule: {topk: 5}\n", "strategy_type: required field is missing"),
        ("strategy_type: topk\ntrading_rules: {topk: 5}\n", "trading_rules: unknown field"),
        ("strategy_type: topk\nrisk_model: 3\n", "risk_model"),
        ("- not a mapping\n", "top level must be a mapping"),
    ],
)
def test_invalid_strategy_files_name_the_field_and_store_nothing(
    archive_dir: Path, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    before = _counts(archive_dir)
    with pytest.raises(ConfigError, match=message):
        import_strategy(path, archive=archive_dir)
    assert _counts(archive_dir) == before


# --------------------------------------------------------------------------- requests


def _request(path: Path, strategies: list[dict[str, Any]], **extra: Any) -> Path:
    path.write_text(
        json.dumps({"kind": "ab_test", "name": "attached_ab", "strategies": strategies, **extra}),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("strategies", "extra", "message"),
    [
        (
            [
                {"name": "a", "strategy_type": "topk", "role": "control", "loop_id": 0},
                {"name": "b", "strategy_type": "topk", "role": "control", "loop_id": 1},
            ],
            {},
            r"strategies\[1\].role: second control",
        ),
        (
            [
                {"name": "a", "strategy_type": "topk", "loop_id": 0},
                {"name": "b", "strategy_type": "topk", "loop_id": 1},
            ],
            {},
            "needs exactly one role: control",
        ),
        (
            [{"name": "a", "strategy_type": "topk", "role": "control", "loop_id": 0, "topk": 50}],
            {},
            r"strategies\[0\].topk: unknown field",
        ),
        (
            [{"name": "a", "strategy_type": "topk", "role": "control", "loop_id": 0}],
            {"train_test": {"train_start": "2020-01-01", "train_end": "2019-01-01"}},
            "train_test.train_end",
        ),
        ([{"name": "a", "strategy_type": "topk", "role": "boss", "loop_id": 0}], {}, r"strategies\[0\].role"),
    ],
)
def test_an_invalid_request_is_refused_with_field_and_problem_and_nothing_is_attached(
    archive_dir: Path, tmp_path: Path, strategies: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    before = _counts(archive_dir)
    with pytest.raises(ConfigError, match=message):
        attach_request(
            archive_dir,
            "b7d779cc4b5c4436953c178e61067a8c",
            _request(tmp_path / "r.json", strategies, **extra),
        )
    assert _counts(archive_dir) == before


def test_export_request_for_a_mixed_experiment_round_trips(archive_dir: Path, tmp_path: Path) -> None:
    import_factors(_metadata(tmp_path / "meta.parquet"), archive=archive_dir, source="alpha_library")
    external = import_strategy(_strategy_file(tmp_path / "ext.yaml"), archive=archive_dir).ids[0]
    picks = [ids.factor_id("RESI5", expression=RESI5), "ext_value"]
    combination = save_combination(
        archive_dir,
        "mixed",
        picks + [factor_library(archive_dir, source="rdagent_generated", limit=1)["factor_id"][0]],
    )
    out = export_request(
        archive_dir,
        out=tmp_path / "req" / "mixed.json",
        combination_id=combination,
        strategy_ids=["sota_topk50", external[:10]],
        name="mixed_q2",
    )
    request = load_request(out)
    assert request == request_for(
        archive_dir, combination_id=combination, strategy_ids=["sota_topk50", external], name="mixed_q2"
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (
        data["kind"] == "ab_test" and data["strategy"]["name"] == "sota_topk50"
    )  # RD-Agent's view: the control
    assert [s["name"] for s in data["extra"]["strategies"]] == ["sota_topk50", "ext_topk40"]
    assert [(e.role, e.loop_id, e.source) for e in request.strategies] == [
        ("control", 0, "rdagent"),
        ("treatment", 1, "external"),
    ]
    assert request.strategies[1].external_id == external
    refs = {(f.name, f.source) for f in request.factor_set.factors}
    assert {("RESI5", "qlib_alpha158"), ("ext_value", "alpha_library")} <= refs and len(refs) == 3
    assert request.factor_set.extra["library_combination_id"] == combination

    with pytest.raises(ConfigError, match="not both"):
        request_for(archive_dir, combination_id=combination, factor_ids=picks)
    with pytest.raises(ConfigError, match="at least one factor"):
        request_for(archive_dir)
    with pytest.raises(ConfigError, match="not among the chosen"):
        request_for(archive_dir, factor_ids=picks, strategy_ids=["sota_topk50"], control="topk30")


def test_an_attached_exported_request_structures_the_next_archive_run(
    archived_template: tuple[Path, Path], rd_root: Path, tmp_path: Path
) -> None:
    """Mixed experiment end to end: library strategies (one external) → request → attached → archived → compared."""
    source_archive = tmp_path / "library"
    shutil.copytree(archived_template[1], source_archive)
    external = import_strategy(_strategy_file(tmp_path / "ext.yaml"), archive=source_archive).ids[0]
    request_file = export_request(
        source_archive,
        out=tmp_path / "mixed.yaml",
        factor_ids=[ids.factor_id("RESI5", expression=RESI5)],
        strategy_ids=["sota_topk50", external],
        name="mixed_b7",
    )

    task_run = (
        "b7d779cc4b5c4436953c178e61067a8c"  # a regular run without a request, loops 0 and 1 with results
    )
    fresh = tmp_path / "fresh"
    result = attach_request(fresh, task_run, request_file)
    assert not result.replaced and "no loop of task run" in result.notes[1]
    assert result.notes[0].startswith(f"no archive existed at {fresh}: a new one was created")
    assert attached_request(fresh, task_run).name == "mixed_b7"  # type: ignore[union-attr]
    archive(rd_root, archive=fresh, mode="full", progress=False)

    rows = strategy_library(fresh, task_run_id=task_run, sort_by="name", descending=False, limit=None)
    assert rows.select("name", "source", "strategy_role", "loop_id", "request_name").rows() == [
        ("ext_topk40", "external", "treatment", 1, "mixed_b7"),
        ("sota_topk50", "rdagent", "control", 0, "mixed_b7"),
    ]
    comparison = compare_task_run(fresh, task_run, n_boot=200)
    assert comparison.control == "sota_topk50" and comparison.control_basis == "request"
    assert comparison.request_name == "mixed_b7"
    again = attach_request(fresh, task_run, request_file)
    assert again.replaced and any("archived again" in n for n in again.notes)
    assert not any("cleaned up" in n or "new one was created" in n for n in again.notes)

    from workbench.cleanup import cleanup

    cleanup(rd_root, archive=fresh, stage="full", confirm=True, yes=True)
    after_cleanup = attach_request(fresh, task_run, request_file)
    assert any("loop(s) [0, 1] had their workspaces cleaned up" in n for n in after_cleanup.notes)


# --------------------------------------------------------------------------- commands


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_asset_pool_commands(archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = ["--archive", str(archive_dir)]
    code, out, _ = _run(
        [
            "factors",
            *a,
            "--source",
            "qlib_alpha158",
            "--tag",
            "alpha158",
            "--sort-by",
            "name",
            "--ascending",
            "--limit",
            "3",
            "--json",
        ],
        capsys,
    )
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and [r["name"] for r in rows] == sorted(r["name"] for r in rows)

    code, out, _ = _run(["factors", *a, "--limit", "2"], capsys)
    assert code == 0 and "2 row(s)" in out

    code, out, _ = _run(["factor", rows[0]["factor_id"][:12], *a, "--json"], capsys)
    assert code == 0 and json.loads(out)["factor"]["factor_id"] == rows[0]["factor_id"]

    code, out, _ = _run(["strategies", *a, "--role", "treatment", "--json"], capsys)
    assert code == 0 and sorted(r["name"] for r in json.loads(out)) == [
        "alt_factors",
        "topk30",
        "topk50_riskcap",
    ]

    meta = _metadata(tmp_path / "meta.parquet")
    code, out, _ = _run(["import-factors", str(meta), "--source", "external_manual", *a], capsys)
    assert code == 0 and "2 new" in out
    code, out, err = _run(["import-factors", str(meta), "--source", "bogus", *a], capsys)
    assert code == 2 and "is not one of" in err

    code, out, _ = _run(["import-strategy", str(_strategy_file(tmp_path / "s.yaml")), *a, "--json"], capsys)
    strategy = json.loads(out)["ids"][0]
    assert code == 0

    code, out, _ = _run(["save-combination", "cli_combo", "--factors", "ext_value", *a], capsys)
    combination = out.strip()
    assert code == 0 and len(combination) == 32
    code, out, _ = _run(["combinations", *a, "--source", "manual", "--json"], capsys)
    assert [r["combination_id"] for r in json.loads(out)] == [combination]

    target = tmp_path / "req.json"
    code, out, _ = _run(
        ["export-request", "--combination", combination, "--strategy", strategy, "--out", str(target), *a],
        capsys,
    )
    assert code == 0 and load_request(target).strategies[0].external_id == strategy

    code, out, _ = _run(["attach-request", "b7d779cc4b5c4436953c178e61067a8c", str(target), *a], capsys)
    assert code == 0 and "attached a request" in out
    bad = tmp_path / "bad.json"
    bad.write_text('{"strategies": [{"name": "x"}]}', encoding="utf-8")
    code, _, err = _run(["attach-request", "b7d779cc4b5c4436953c178e61067a8c", str(bad), *a], capsys)
    assert code == 2 and "strategies[0].strategy_type: required field is missing" in err

    code, out, _ = _run(
        ["review", "topk30", "--status", "manual_review", "--note", "check costs", *a], capsys
    )
    assert code == 0 and "-> manual_review" in out
    code, out, _ = _run(["strategies", *a, "--status", "manual_review", "--json"], capsys)
    assert [r["name"] for r in json.loads(out)] == ["topk30"]
    code, _, err = _run(["review", "topk30", "--status", "manual_review", *a], capsys)
    assert code == 2 and "note" in err


def test_reimporting_a_file_without_a_window_removes_that_window(archive_dir: Path, tmp_path: Path) -> None:
    meta = _metadata(tmp_path / "meta.parquet")
    import_factors(meta, archive=archive_dir, source="alpha_library")
    table = pl.read_parquet(meta)
    trimmed = table.filter(pl.col("window_name") != "train_2018_2020")
    trimmed.write_parquet(tmp_path / "trimmed.parquet")
    import_factors(tmp_path / "trimmed.parquet", archive=archive_dir, source="alpha_library")
    mom = factor_lineage(archive_dir, "ext_mom_5")
    assert sorted(p["window_name"] for p in mom["performance"]) == ["test_2021_2025"]


def test_tuple_string_names_in_metadata_are_normalised(archive_dir: Path, tmp_path: Path) -> None:
    table = pl.DataFrame({"name": ["('feature', 'EXT_TUPLE')"], "expression": ["$close/$open"]})
    table.write_parquet(tmp_path / "meta.parquet")
    import_factors(tmp_path / "meta.parquet", archive=archive_dir, source="external_manual")
    assert factor_lineage(archive_dir, "EXT_TUPLE")["factor"]["name"] == "EXT_TUPLE"


def test_export_request_to_an_unwritable_place_is_a_one_line_error(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me", encoding="utf-8")
    base = ["export-request", "--factors", "RESI5", "--archive", str(archive_dir)]
    code, _, err = _run([*base, "--out", str(blocker / "req.json")], capsys)
    assert (
        code == 2
        and err.count("\n") == 1
        and "cannot write the request" in err
        and "is a file, not a folder" in err
    )
    assert blocker.read_text(encoding="utf-8") == "keep me"
    (tmp_path / "folder.json").mkdir()
    code, _, err = _run([*base, "--out", str(tmp_path / "folder.json")], capsys)
    assert code == 2 and "is a folder" in err
    target = tmp_path / "new" / "deeper" / "req.json"
    code, out, _ = _run([*base, "--out", str(target)], capsys)
    assert code == 0 and load_request(target).factor_set is not None
    assert [p.name for p in target.parent.iterdir()] == ["req.json"]  # no temporary file left behind
