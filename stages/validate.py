"""validate: check the raw table against the pandera schema, reporting every failure.

Reads data/raw/table.parquet and the schema file in `dataset.schema`. Validation is lazy:
every failure case is collected, not only the first. Writes the validated (type-coerced)
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
from stages.errors import PipelineError
from stages.io import read_table, say, write_csv, write_json, write_table
from stages.schema import load_schema, require_target

FAILURE_COLUMNS = ["column", "check", "failure_case", "index"]


def validate_frame(
    frame: pd.DataFrame, *, schema: pa.DataFrameSchema
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Validate lazily. Returns (validated frame or None, failure cases)."""
    try:
        validated = schema.validate(frame.copy(), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.reindex(columns=FAILURE_COLUMNS)
        cases["column"] = cases["column"].fillna("<table>")
        cases["failure_case"] = [
            "<missing>" if pd.isna(value) else str(value) for value in cases["failure_case"]
        ]
        return None, cases.reset_index(drop=True)
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


def run(params: Params) -> None:
    """The validate command: validate the raw table, write the report, then the table."""
    schema_path = params.dataset.schema_path
    schema = load_schema(schema_path)
    require_target(schema, params.dataset.target, schema_path)
    frame = read_table(paths.RAW_TABLE)
    validated, cases = validate_frame(frame, schema=schema)
    report = validation_report(frame, cases, schema_path=schema_path)
    write_csv(cases, paths.VALIDATE_FAILURES)
    write_json(report, paths.VALIDATE_REPORT)
    if validated is None:
        raise failure_message(report, source=paths.RAW_TABLE)
    write_table(validated, paths.VALIDATED_TABLE)
    say("validate", f"{len(validated):,} rows valid -> {paths.VALIDATED_TABLE}")
