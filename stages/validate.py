"""validate: check the raw table against the pandera schema, reporting every failure.

Reads data/raw/table.parquet and the schema file in `dataset.schema`. Values are cleaned
first (text trimmed, missing-value tokens made missing, dates parsed: stages/data/transform.py),
then judged. Validation is lazy: every failure case is collected, not only the first. A row
without a label is not invalid: prepare drops it and counts it. Writes the validated (type-coerced)
table to data/validated/table.parquet and reports/validate/report.json; when any row is
invalid, the report and reports/validate/failure_cases.csv describe every failure and the
stage fails with a message naming each column, check and count.
"""

from __future__ import annotations

from stages.common import paths
from stages.common.config import Params
from stages.common.io import read_table, say, write_csv, write_json, write_table
from stages.data.encoding import free_name, row_id_name
from stages.data.schema import load_schema, require_target
from stages.data.transform import clean_frame, unparsed_values
from stages.data.validation import (
    apply_policy,
    too_few_classes,
    validate_frame,
    validation_metrics,
    validation_report,
)


def run(params: Params) -> None:
    """The validate command: validate the raw table, apply the invalid-row policy, write
    the report, the metrics, the quarantine and then the validated table."""
    policy = params.validate_
    schema_path = params.dataset.schema_path
    schema = load_schema(schema_path)
    target = params.dataset.target
    require_target(schema, target, schema_path)
    # Rows without a label are dropped (and counted) by prepare, never judged invalid here.
    schema = schema.update_column(target, nullable=True)
    raw = read_table(paths.RAW_TABLE)
    tokens = params.prepare.missing_tokens
    frame = clean_frame(raw, missing_tokens=tokens, schema=schema)
    unreadable = unparsed_values(raw, frame, missing_tokens=tokens, schema=schema)
    unexpected = [name for name in frame.columns if name not in schema.columns]
    if unexpected and policy.unexpected_columns == "drop":
        frame = frame.drop(columns=unexpected)
    # Columns added beside the user's take names the schema does not use (prepare finds
    # the row numbers by the same rule).
    row_id = row_id_name(schema.columns)
    reason = free_name("reason", [*schema.columns, *frame.columns, row_id])
    validated, cases = validate_frame(frame, schema=schema, earlier=unreadable)
    report = validation_report(frame, cases, schema_path=schema_path)
    validated, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report=report,
        schema=schema,
        policy=policy,
        columns=(row_id, reason),
        source=paths.RAW_TABLE,
    )
    error = error or too_few_classes(validated, target)
    report.update(
        unexpected_columns=unexpected,
        unexpected_columns_policy=policy.unexpected_columns,
        on_invalid=policy.on_invalid,
        quarantined_rows=len(quarantine),
        unlabelled_rows=int(frame[target].isna().sum()) if target in frame.columns else 0,
    )
    valid = None if error else validated
    metrics = validation_metrics(report, rows=len(frame), valid=valid, quarantine=quarantine)
    write_csv(cases, paths.VALIDATE_FAILURES)
    write_json(report, paths.VALIDATE_REPORT)
    write_json(metrics, paths.VALIDATE_METRICS)
    if error is not None:
        raise error
    write_table(quarantine, paths.QUARANTINE_TABLE)
    validated.insert(0, row_id, validated.index.to_numpy(dtype="int64"))
    write_table(validated.reset_index(drop=True), paths.VALIDATED_TABLE)
    dropped = f", unexpected columns dropped: {', '.join(unexpected)}" if unexpected else ""
    unlabelled = report["unlabelled_rows"]
    unlabelled = f", {unlabelled:,} without a label" if unlabelled else ""
    say(
        "validate",
        f"{len(validated):,} rows valid{unlabelled}, {len(quarantine):,} quarantined{dropped} "
        f"-> {paths.VALIDATED_TABLE}",
    )
