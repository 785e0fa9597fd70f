"""validate: check the raw table against the pandera schema, reporting every failure.

Reads data/raw/table.parquet (a folder of shards) and the schema file in `dataset.schema`.
Values are cleaned first (text trimmed, missing-value tokens made missing, dates parsed:
stages/data/transform.py), then judged. Validation is lazy: every failure case is
collected, not only the first. A row without a label is not invalid: prepare drops it and
counts it. Writes the validated (type-coerced) table to data/validated/table.parquet and
reports/validate/report.json; when any row is invalid, the report and
reports/validate/failure_cases.csv describe every failure and the stage fails with a
message naming each column, check and count.

The table is judged partition by partition (one Dask task each, stages/common/engine.py),
each row under its number in the whole table: the failure cases and the quarantine are
those of the whole table at once. Checks that compare rows with each other (a column's
`unique`, a table-level check) see one partition at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pandera.pandas import DataFrameSchema

from stages.common import engine, paths
from stages.common.config import Params, ValidateParams
from stages.common.errors import PipelineError
from stages.common.io import (
    Partition,
    atomic_dir,
    partitions,
    say,
    unify_shards,
    write_csv,
    write_json,
    write_shard,
)
from stages.data.encoding import free_name, row_id_name
from stages.data.schema import load_schema, require_target
from stages.data.transform import clean_frame, unparsed_values
from stages.data.validation import (
    FAILURE_COLUMNS,
    apply_policy,
    failure_message,
    sorted_cases,
    too_few_classes,
    validate_frame,
    validation_metrics,
    validation_report,
)


@dataclass(frozen=True)
class PartitionJob:
    """What one partition's task needs: everything a Dask worker cannot look up."""

    partition: Partition
    schema: DataFrameSchema  # with the target nullable (load_validation_schema)
    schema_path: str  # for messages
    target: str
    missing_tokens: tuple[str, ...]
    policy: ValidateParams
    valid_folder: Path
    quarantine_folder: Path


def load_validation_schema(schema_path: str, target: str):
    schema = load_schema(schema_path)
    require_target(schema, target, schema_path)
    # Rows without a label are dropped (and counted) by prepare, never judged invalid here.
    return schema.update_column(target, nullable=True)


def validate_partition(job: PartitionJob) -> dict[str, Any]:
    """Clean and judge one partition; write its valid rows and (under the quarantine
    policy) its invalid rows with their reasons as its shards; return its failure cases
    and counts. Whether the stage passes is decided on every partition's counts."""
    schema = job.schema
    raw = job.partition.read()
    tokens = list(job.missing_tokens)
    frame = clean_frame(raw, missing_tokens=tokens, schema=schema)
    unreadable = unparsed_values(raw, frame, missing_tokens=tokens, schema=schema)
    unexpected = [name for name in frame.columns if name not in schema.columns]
    columns = frame.shape[1]
    if unexpected and job.policy.unexpected_columns == "drop":
        frame = frame.drop(columns=unexpected)
    # Columns added beside the user's take names the schema does not use (prepare finds
    # the row numbers by the same rule).
    row_id = row_id_name(schema.columns)
    reason = free_name("reason", [*schema.columns, *frame.columns, row_id])
    validated, cases = validate_frame(frame, schema=schema, earlier=unreadable)
    # The quarantine policy is applied as if every partition were within its limits; the
    # stage throws the shards away when the whole table is not.
    quarantine_policy = job.policy.model_copy(
        update={"on_invalid": "quarantine", "max_invalid_fraction": 1.0}
    )
    report = {"rows": len(frame), "invalid_rows": 0, "failure_cases": 0, "failures": []}
    report["schema"] = job.schema_path
    valid, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report=report,
        schema=schema,
        policy=quarantine_policy,
        columns=(row_id, reason),
        source=str(job.partition.file),
    )
    index = job.partition.index
    distinct: set[str] = set()
    if error is None:
        valid = valid.copy()
        valid.insert(0, row_id, valid.index.to_numpy(dtype="int64"))
        write_shard(valid.reset_index(drop=True), job.valid_folder, index)
        if len(quarantine) or index == 0:  # the folder holds one shard at least
            write_shard(quarantine.reset_index(drop=True), job.quarantine_folder, index)
        if job.target in valid.columns:  # two labels are all the stage needs to know of
            distinct = {str(label) for label in pd.unique(valid[job.target].dropna())[:2]}
    return {
        "rows": len(frame),
        "columns": columns,
        "unexpected": unexpected,
        "cases": cases,
        "table_level": error is not None,
        "valid_rows": 0 if error is not None else len(valid),
        "quarantined": 0 if error is not None else len(quarantine),
        "unlabelled": int(frame[job.target].isna().sum()) if job.target in frame.columns else 0,
        "labels": distinct,
    }


def gather(
    results: list[dict[str, Any]], *, policy: ValidateParams, schema_path: str
) -> tuple[pd.DataFrame, dict[str, Any], PipelineError | None]:
    """Every partition's findings as the whole table's: (the failure cases in order, the
    report, the error that stops the stage or None)."""
    rows = sum(result["rows"] for result in results)
    frames = [result["cases"] for result in results if len(result["cases"])]
    cases = sorted_cases(pd.concat(frames)) if frames else pd.DataFrame(columns=FAILURE_COLUMNS)
    columns = results[0]["columns"] if results else 0
    report = validation_report(rows, columns, cases, schema_path=schema_path)
    error = None
    invalid = report["invalid_rows"]
    if not cases.empty:
        if any(r["table_level"] for r in results) or policy.on_invalid == "fail":
            error = failure_message(report, source=paths.RAW_TABLE)
        elif invalid > policy.max_invalid_fraction * rows:
            error = failure_message(report, source=paths.RAW_TABLE)
            error.details.insert(
                0,
                f"{invalid / rows:.2%} of rows are invalid, more than "
                f"validate.max_invalid_fraction ({policy.max_invalid_fraction:.2%}) allows",
            )
    report.update(
        unexpected_columns=results[0]["unexpected"] if results else [],
        unexpected_columns_policy=policy.unexpected_columns,
        on_invalid=policy.on_invalid,
        quarantined_rows=sum(r["quarantined"] for r in results),
        unlabelled_rows=sum(r["unlabelled"] for r in results),
    )
    return cases, report, error


def run(params: Params) -> None:
    """The validate command: validate the raw table partition by partition, apply the
    invalid-row policy, write the report, the metrics, the quarantine and then the
    validated table."""
    policy = params.validate_
    schema_path = params.dataset.schema_path
    target = params.dataset.target
    schema = load_validation_schema(schema_path, target)  # a bad one is said before any task
    parts = partitions(paths.RAW_TABLE)
    with (
        atomic_dir(paths.VALIDATED_TABLE) as valid_folder,
        atomic_dir(paths.QUARANTINE_TABLE) as quarantine_folder,
    ):
        jobs = [
            PartitionJob(
                partition=part,
                schema=schema,
                schema_path=schema_path,
                target=target,
                missing_tokens=tuple(params.prepare.missing_tokens),
                policy=policy,
                valid_folder=valid_folder.resolve(),
                quarantine_folder=quarantine_folder.resolve(),
            )
            for part in parts
        ]
        results = engine.run_tasks(validate_partition, jobs)
        cases, report, error = gather(results, policy=policy, schema_path=schema_path)
        valid_rows = 0 if error else sum(r["valid_rows"] for r in results)
        quarantined = report["quarantined_rows"] = 0 if error else report["quarantined_rows"]
        labels = set().union(*(r["labels"] for r in results))
        error = error or too_few_classes(min(len(labels), 2), target=target, rows=valid_rows)
        metrics = validation_metrics(
            report,
            rows=report["rows"],
            valid_rows=None if error else valid_rows,
            quarantined=quarantined,
        )
        write_csv(cases, paths.VALIDATE_FAILURES)
        write_json(report, paths.VALIDATE_REPORT)
        write_json(metrics, paths.VALIDATE_METRICS)
        if error is not None:
            raise error  # the folders are thrown away: no table is written
        unify_shards(valid_folder)
        unify_shards(quarantine_folder)
    unexpected = report["unexpected_columns"]
    dropped = f", unexpected columns dropped: {', '.join(unexpected)}" if unexpected else ""
    unlabelled = report["unlabelled_rows"]
    unlabelled = f", {unlabelled:,} without a label" if unlabelled else ""
    say(
        "validate",
        f"{valid_rows:,} rows valid{unlabelled}, {quarantined:,} quarantined{dropped} "
        f"in {len(parts)} partition(s) ({engine.describe()}) -> {paths.VALIDATED_TABLE}",
    )
