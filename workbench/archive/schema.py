"""The catalog schema as numbered migrations.

A catalog records the version it was brought to in ``wb_meta``; opening an older catalog applies
the missing steps in order, each in its own transaction, so an archive written by an older
workbench is upgraded in place. Never edit a published step: add a new one.
"""

from __future__ import annotations

WORKSPACE_BYTES_BACKFILL = """
-- Rows written before schema 8 get the bytes of their archived workspace (the sum of the file
-- list's sizes), so `status` reads one number per experiment instead of parsing every file list.
-- Only rows still without it are touched: running this again (after a rebuild) changes nothing.
UPDATE aistock_experiments
SET workspace_bytes = coalesce(list_sum(CAST(json_extract(file_refs_json, '$[*].size_bytes') AS BIGINT[])), 0)
WHERE workspace_bytes IS NULL AND file_refs_json IS NOT NULL;
"""

FACTOR_FIGURES_BACKFILL = """
-- Rows written before schema 7 (combination_size IS NULL) get what they lacked, from what the
-- catalog holds: the main window's dates from the experiment's return series (its backtest; a
-- level-1 experiment keeps only the recomputed figures' first and last day);
-- for a combination's figures, rank IC / rank ICIR and the cost basis of each return figure from
-- the experiment's Qlib metrics (qlib_res.csv, which the backfill copied into factor_perf.json),
-- Qlib's 238-day annualisation, and how many factors share the figures. Rows of schema 7 are
-- never touched, so running this again (after a rebuild from records) changes nothing.
UPDATE aistock_factor_performance AS p
SET start_date = r.first_day, end_date = r.last_day, dates_from = 'backtest'
FROM (
    SELECT e.id AS experiment_id,
           coalesce(s.first_day, json_extract_string(e.recomputed_metrics_json, '$.start')) AS first_day,
           coalesce(s.last_day, json_extract_string(e.recomputed_metrics_json, '$.end')) AS last_day
    FROM aistock_experiments AS e
    LEFT JOIN (
        SELECT experiment_id, CAST(min(datetime) AS VARCHAR) AS first_day, CAST(max(datetime) AS VARCHAR) AS last_day
        FROM aistock_return_series GROUP BY experiment_id
    ) AS s ON s.experiment_id = e.id
) AS r
WHERE p.combination_size IS NULL AND p.experiment_id = r.experiment_id AND p.window_name = 'main_window'
  AND p.start_date IS NULL AND p.end_date IS NULL AND r.first_day IS NOT NULL;

UPDATE aistock_factor_performance SET dates_from = 'file'
WHERE combination_size IS NULL AND dates_from IS NULL AND (start_date IS NOT NULL OR end_date IS NOT NULL);

UPDATE aistock_factor_performance AS p
SET rank_ic = q.rank_ic,
    rank_ic_ir = q.rank_icir,
    annual_return_cost = CASE WHEN p.annual_return = q.ar_without THEN 'without_cost'
                              WHEN p.annual_return = q.ar_with THEN 'with_cost' END,
    max_drawdown_cost = CASE WHEN p.max_drawdown = q.mdd_without THEN 'without_cost'
                             WHEN p.max_drawdown = q.mdd_with THEN 'with_cost' END,
    sharpe_cost = CASE WHEN p.sharpe = q.ir_without THEN 'without_cost'
                       WHEN p.sharpe = q.ir_with THEN 'with_cost' END,
    periods_per_year = CASE WHEN p.annual_return IN (q.ar_without, q.ar_with)
                              OR p.sharpe IN (q.ir_without, q.ir_with) THEN 238 END
FROM (
    SELECT id,
           TRY_CAST(json_extract_string(metrics_json, '$.qlib.rank_ic') AS DOUBLE) AS rank_ic,
           TRY_CAST(json_extract_string(metrics_json, '$.qlib.rank_icir') AS DOUBLE) AS rank_icir,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_without_cost_annualized_return') AS DOUBLE) AS ar_without,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_with_cost_annualized_return') AS DOUBLE) AS ar_with,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_without_cost_max_drawdown') AS DOUBLE) AS mdd_without,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_with_cost_max_drawdown') AS DOUBLE) AS mdd_with,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_without_cost_information_ratio') AS DOUBLE) AS ir_without,
           TRY_CAST(json_extract_string(metrics_json,
               '$.qlib.excess_return_with_cost_information_ratio') AS DOUBLE) AS ir_with
    FROM aistock_experiments
) AS q
WHERE p.combination_size IS NULL AND p.basis = 'combination' AND p.experiment_id = q.id;

UPDATE aistock_factor_performance AS p SET combination_size = n.size
FROM (
    SELECT experiment_id, window_name, count(*) AS size FROM aistock_factor_performance
    WHERE basis = 'combination' GROUP BY experiment_id, window_name
) AS n
WHERE p.combination_size IS NULL AND p.basis = 'combination'
  AND p.experiment_id = n.experiment_id AND p.window_name = n.window_name;

UPDATE aistock_factor_performance SET combination_size = 1
WHERE combination_size IS NULL AND basis = 'factor';
"""
"""Fill the schema-7 columns of older performance rows (migration 7, and after a rebuild from records)."""

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS wb_meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE aistock_factors (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    version VARCHAR,
    source VARCHAR NOT NULL,
    description_cn VARCHAR,
    formula_hint VARCHAR,
    expression VARCHAR,
    expression_key VARCHAR,
    tags JSON,
    region VARCHAR,
    freq VARCHAR,
    variables_json JSON,
    first_experiment_id VARCHAR,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
);

CREATE TABLE aistock_factor_performance (
    id VARCHAR PRIMARY KEY,
    factor_id VARCHAR NOT NULL,
    window_name VARCHAR NOT NULL,
    start_date VARCHAR,
    end_date VARCHAR,
    ic_mean DOUBLE,
    ic_ir DOUBLE,
    coverage DOUBLE,
    annual_return DOUBLE,
    max_drawdown DOUBLE,
    sharpe DOUBLE,
    experiment_id VARCHAR,
    basis VARCHAR,
    updated_at TIMESTAMPTZ
);

CREATE TABLE aistock_factor_combinations (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    factor_ids JSON NOT NULL,
    experiment_id VARCHAR,
    source VARCHAR,
    created_at TIMESTAMPTZ
);

CREATE TABLE aistock_factor_usage (
    factor_id VARCHAR NOT NULL,
    experiment_id VARCHAR NOT NULL,
    combination_id VARCHAR NOT NULL,
    PRIMARY KEY (factor_id, experiment_id, combination_id)
);

CREATE TABLE aistock_strategies (
    id VARCHAR PRIMARY KEY,
    strategy_key VARCHAR NOT NULL,
    name VARCHAR,
    shape VARCHAR,
    output_mode VARCHAR,
    source VARCHAR NOT NULL,
    strategy_type VARCHAR,
    config_json JSON,
    factor_combination_id VARCHAR,
    recommendation_status VARCHAR,
    review_note VARCHAR,
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
);

CREATE TABLE aistock_experiments (
    id VARCHAR PRIMARY KEY,
    task_run_id VARCHAR NOT NULL,
    loop_id BIGINT NOT NULL,
    workspace_id VARCHAR,
    strategy_id VARCHAR,
    archiving_level INTEGER NOT NULL DEFAULT 0,
    action VARCHAR,
    scenario VARCHAR,
    loop_status VARCHAR,
    workspace_path VARCHAR,
    workspace_dir VARCHAR,
    workspace_state VARCHAR NOT NULL DEFAULT 'present',
    log_trace_path VARCHAR,
    metrics_json JSON,
    recomputed_metrics_json JSON,
    feedback_json JSON,
    file_refs_json JSON,
    request_name VARCHAR,
    strategy_role VARCHAR,
    source_fingerprint VARCHAR,
    created_at TIMESTAMPTZ,
    imported_at TIMESTAMPTZ,
    level2_at TIMESTAMPTZ
);

CREATE TABLE aistock_return_series (
    experiment_id VARCHAR NOT NULL,
    datetime DATE NOT NULL,
    account DOUBLE,
    "return" DOUBLE,
    total_turnover DOUBLE,
    turnover DOUBLE,
    total_cost DOUBLE,
    cost DOUBLE,
    value DOUBLE,
    cash DOUBLE,
    bench DOUBLE
);

CREATE TABLE wb_objects (
    sha256 VARCHAR PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    storage_key VARCHAR NOT NULL,
    codec VARCHAR NOT NULL,
    created_at TIMESTAMPTZ
);

CREATE TABLE wb_stored_files (
    experiment_id VARCHAR NOT NULL,
    rel_path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    file_class VARCHAR NOT NULL,
    mtime_utc VARCHAR,
    stored_at TIMESTAMPTZ,
    PRIMARY KEY (experiment_id, rel_path)
);

CREATE TABLE wb_archive_runs (
    run_id VARCHAR PRIMARY KEY,
    mode VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    params_json JSON,
    n_candidates BIGINT,
    n_level1 BIGINT,
    n_level2 BIGINT,
    n_unchanged BIGINT,
    n_skipped BIGINT,
    n_errors BIGINT,
    bytes_read BIGINT,
    bytes_stored BIGINT,
    summary_json JSON
);

CREATE TABLE wb_item_errors (
    run_id VARCHAR NOT NULL,
    task_run_id VARCHAR,
    loop_id BIGINT,
    experiment_id VARCHAR,
    path VARCHAR,
    stage VARCHAR NOT NULL,
    error_type VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE wb_loop_state (
    task_run_id VARCHAR NOT NULL,
    loop_id BIGINT NOT NULL,
    experiment_id VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    archiving_level INTEGER NOT NULL DEFAULT 0,
    fingerprint VARCHAR,
    last_run_id VARCHAR,
    last_error VARCHAR,
    updated_at TIMESTAMPTZ,
    PRIMARY KEY (task_run_id, loop_id)
);

CREATE TABLE wb_cursor (
    name VARCHAR PRIMARY KEY,
    registry_rowid BIGINT,
    registry_updated_at VARCHAR,
    run_id VARCHAR,
    updated_at TIMESTAMPTZ
);
""",
    2: """
CREATE TABLE wb_holds (
    target_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    reason VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    released_at TIMESTAMPTZ,
    release_reason VARCHAR
);

CREATE TABLE wb_cleanup_plans (
    plan_id VARCHAR PRIMARY KEY,
    plan_hash VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    params_json JSON,
    plan_json JSON NOT NULL,
    status VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ,
    approval_id VARCHAR
);

CREATE TABLE wb_cleanup_approvals (
    approval_id VARCHAR PRIMARY KEY,
    plan_id VARCHAR NOT NULL,
    plan_hash VARCHAR NOT NULL,
    item_ids JSON NOT NULL,
    approved_by VARCHAR,
    note VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);

CREATE TABLE wb_deletions (
    deletion_id VARCHAR PRIMARY KEY,
    plan_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    experiment_id VARCHAR,
    kind VARCHAR NOT NULL,
    original_path VARCHAR NOT NULL,
    quarantine_path VARCHAR,
    bytes BIGINT,
    state VARCHAR NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL,
    restored_at TIMESTAMPTZ,
    purged_at TIMESTAMPTZ
);
""",
    3: """
CREATE TABLE wb_attached_requests (
    task_run_id VARCHAR PRIMARY KEY,
    request_json JSON NOT NULL,
    source_path VARCHAR,
    attached_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE aistock_factor_values (
    factor_id VARCHAR NOT NULL,
    datetime DATE NOT NULL,
    instrument VARCHAR NOT NULL,
    value DOUBLE
);
""",
    4: """
-- Asset pool: where imported factors and strategies came from, and who reviewed which strategy.
CREATE TABLE wb_imports (
    import_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    item_ids JSON NOT NULL,
    n_values BIGINT NOT NULL DEFAULT 0,
    first_imported_at TIMESTAMPTZ NOT NULL,
    last_imported_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE wb_strategy_reviews (
    strategy_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    previous_status VARCHAR,
    note VARCHAR,
    reviewer VARCHAR,
    created_at TIMESTAMPTZ NOT NULL
);
""",
    5: """
-- Small objects (<= 4 KiB) live in the catalog instead of as files: see store.py.
CREATE TABLE wb_inline_objects (
    sha256 VARCHAR PRIMARY KEY,
    data BLOB NOT NULL
);
""",
    6: """
-- Durable archive: each experiment's current manifest (manifests/), and the record sequence.
CREATE TABLE wb_manifests (
    experiment_id VARCHAR PRIMARY KEY,
    sha256 VARCHAR NOT NULL,
    storage_key VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL
);
INSERT INTO wb_meta VALUES ('record_seq', '0') ON CONFLICT (key) DO NOTHING;
""",
    7: """
-- Factor figures that say what they measure: rank IC, the dates of the window, the cost basis
-- of each return figure, the annualisation, and how many factors share a combination's figures.
ALTER TABLE aistock_factor_performance ADD COLUMN rank_ic DOUBLE;
ALTER TABLE aistock_factor_performance ADD COLUMN rank_ic_ir DOUBLE;
ALTER TABLE aistock_factor_performance ADD COLUMN dates_from VARCHAR;
ALTER TABLE aistock_factor_performance ADD COLUMN annual_return_cost VARCHAR;
ALTER TABLE aistock_factor_performance ADD COLUMN max_drawdown_cost VARCHAR;
ALTER TABLE aistock_factor_performance ADD COLUMN sharpe_cost VARCHAR;
ALTER TABLE aistock_factor_performance ADD COLUMN periods_per_year INTEGER;
ALTER TABLE aistock_factor_performance ADD COLUMN combination_size INTEGER;
"""
    + FACTOR_FIGURES_BACKFILL,
    8: """
-- The bytes of each experiment's workspace as archived (kept and dropped files), for `status`.
ALTER TABLE aistock_experiments ADD COLUMN workspace_bytes BIGINT;
"""
    + WORKSPACE_BYTES_BACKFILL,
}

LATEST_VERSION = max(MIGRATIONS)
