"""The catalog schema as numbered migrations.

A catalog records the version it was brought to in ``wb_meta``; opening an older catalog applies
the missing steps in order, each in its own transaction, so an archive written by an older
workbench is upgraded in place. Never edit a published step: add a new one.
"""

from __future__ import annotations

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
}

LATEST_VERSION = max(MIGRATIONS)
