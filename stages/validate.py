"""validate: check the raw table against the pandera schema, reporting every failure.

Reads data/raw/table.parquet and the schema file in `dataset.schema`. Values are cleaned
first (text trimmed, missing-value tokens made missing, dates parsed: stages/transform.py),
then judged. Validation is lazy: every failure case is collected, not only the first. A row
without a label is not invalid: prepare drops it and counts it. Writes the validated (type-coerced)
table to data/validated/table.parquet and reports/validate/report.json; when any row is
invalid, the report and reports/validate/failure_cases.csv describe every failure and the
stage fails with a message naming each column, check and count.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa

from stages import paths
from stages.config import Params
from stages.encoding import ROW_ID, free_name
from stages.errors import PipelineError
from stages.io import read_table, say, write_csv, write_json, write_table
from stages.schema import load_schema, require_target
from stages.transform import clean_frame, unparsed_dates

FAILURE_COLUMNS = ["column", "check", "failure_case", "index"]


def validate_frame(
    frame: pd.DataFrame, *, schema: pa.DataFrameSchema, earlier: pd.DataFrame | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Validate lazily. Returns (validated frame or None, failure cases). `earlier` holds
    failure cases found while cleaning (dates that do not parse); rows in it are invalid."""
    extra = earlier if earlier is not None and len(earlier) else None
    try:
        validated = schema.validate(frame.copy(), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.reindex(columns=FAILURE_COLUMNS)
        cases["column"] = cases["column"].fillna("<table>")
        cases["failure_case"] = [
            "<missing>" if pd.isna(value) else str(value) for value in cases["failure_case"]
        ]
        if extra is not None:
            cases = pd.concat([extra, cases], ignore_index=True)
        return None, cases.reset_index(drop=True)
    if extra is not None:
        return None, extra.reset_index(drop=True)
    return validated, pd.DataFrame(columns=FAILURE_COLUMNS)


def summarize_failures(cases: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per (column, check): how many cases failed, and a few examples."""
    summary = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True, dropna=False):
        rows = group["index"].dropna()
        summary.append(
            {
                "column": str(column),
                "check": str(check),
                "failures": len(group),
                "rows": int(rows.nunique()),
                "examples": sorted(set(group["failure_case"]))[:5],
            }
        )
    return summary


def validation_report(
    frame: pd.DataFrame, cases: pd.DataFrame, *, schema_path: str
) -> dict[str, Any]:
    invalid_rows = int(cases["index"].dropna().nunique())
    return {
        "schema": schema_path,
        "rows": len(frame),
        "columns": frame.shape[1],
        "valid": cases.empty,
        "invalid_rows": invalid_rows,
        "failure_cases": len(cases),
        "failures": summarize_failures(cases),
    }


def failure_message(report: dict[str, Any], *, source: str) -> PipelineError:
    details = [
        f"column '{item['column']}', check {item['check']}: {item['failures']} failures"
        f" (e.g. {', '.join(map(repr, item['examples'][:3]))})"
        for item in report["failures"]
    ]
    where = (
        f"{report['invalid_rows']} of {report['rows']} rows"
        if report["invalid_rows"]
        else "the table"
    )
    return PipelineError(
        f"{source}: {where} failed the schema {report['schema']} "
        f"({report['failure_cases']} failure cases, all in reports/validate/)",
        details,
    )


def row_reasons(cases: pd.DataFrame) -> dict[int, str]:
    """One readable reason per invalid row, from the failure cases."""
    reasons: dict[int, list[str]] = {}
    for case in cases.dropna(subset=["index"]).itertuples():
        check = "not in the schema's vocabulary" if case.check.startswith("isin(") else case.check
        reasons.setdefault(int(case.index), []).append(
            f"{case.column}: {case.failure_case!r} fails {check}"
        )
    return {row: "; ".join(parts) for row, parts in reasons.items()}


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
    bad_dates = unparsed_dates(raw, frame, missing_tokens=tokens, schema=schema)
    unexpected = [name for name in frame.columns if name not in schema.columns]
    if unexpected and policy.unexpected_columns == "drop":
        frame = frame.drop(columns=unexpected)
    # Columns added beside the user's take names the schema does not use (prepare finds
    # the row numbers by the same rule).
    row_id = free_name(ROW_ID, schema.columns)
    reason = free_name("reason", [*schema.columns, *frame.columns, row_id])
    validated, cases = validate_frame(frame, schema=schema, earlier=bad_dates)
    report = validation_report(frame, cases, schema_path=schema_path)
    reasons = row_reasons(cases)
    table_level = cases["index"].isna().any()
    quarantine = pd.DataFrame(columns=[row_id, *frame.columns, reason])
    error = None
    if validated is None and (table_level or policy.on_invalid == "fail"):
        error = failure_message(report, source=paths.RAW_TABLE)
    elif validated is None and len(reasons) > policy.max_invalid_fraction * len(frame):
        error = failure_message(report, source=paths.RAW_TABLE)
        error.details.insert(
            0,
            f"{len(reasons) / len(frame):.2%} of rows are invalid, more than "
            f"validate.max_invalid_fraction ({policy.max_invalid_fraction:.2%}) allows",
        )
    elif validated is None:
        invalid = list(reasons)
        quarantine = frame.loc[invalid].assign(**{reason: [reasons[row] for row in invalid]})
        quarantine.insert(0, row_id, invalid)
        validated, _ = validate_frame(frame.drop(index=invalid), schema=schema)
    if error is None:
        classes = validated[target].dropna().unique()
        if len(classes) < 2:
            error = PipelineError(
                f"target column '{target}' has {len(classes)} class(es) in "
                f"{len(validated):,} valid rows; at least two are needed"
            )
    report.update(
        unexpected_columns=unexpected,
        unexpected_columns_policy=policy.unexpected_columns,
        on_invalid=policy.on_invalid,
        quarantined_rows=len(quarantine),
        unlabelled_rows=int(frame[target].isna().sum()) if target in frame.columns else 0,
    )
    metrics = {
        "rows": len(frame),
        "valid_rows": 0 if error else len(validated),
        "invalid_rows": report["invalid_rows"],
        "quarantined_rows": len(quarantine),
        "unlabelled_rows": report["unlabelled_rows"],
        # failure count per `column:check`, for `dvc metrics show`
        "failures": {f"{i['column']}:{i['check']}": i["failures"] for i in report["failures"]},
    }
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
