"""Checking rows against the pandera schema, lazily: every failure case, not the first.

Used by the validate stage and by predict: the failure summary, each invalid row's reasons
and the message that names each column, check and count.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.engines.pandas_engine import Engine

from stages.common.config import ValidateParams
from stages.common.errors import PipelineError
from stages.common.tasks import require_two_classes

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
        cases["failure_case"] = [case_text(value) for value in cases["failure_case"]]
        if extra is not None:
            cases = pd.concat([extra, cases], ignore_index=True)
        return None, cases.reset_index(drop=True)
    if extra is not None:
        return None, extra.reset_index(drop=True)
    return validated, pd.DataFrame(columns=FAILURE_COLUMNS)


def case_text(value: Any) -> str:
    """A failing value as the failure cases show it. A whole number reads the same whether
    its column holds missing values (pandas then stores it as a float) or not: `250`, not
    `250.0`, so a table judged in parts reports what the whole table reports."""
    if pd.isna(value):
        return "<missing>"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def passes_quickly(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> bool:
    """Whether `frame` certainly passes `schema`, found column by column with the schema's
    own checks, without pandera's lazy run (a fixed ~9 ms a call here, most of the time of
    scoring a few rows). Every column present and already of its dtype (not object, which
    pandera converts), no missing value
    where the column is not nullable, each check passing. False means "not certain": a
    schema with table-level checks, uniqueness, order, parsers, regex or grouped checks, or
    any value that fails, goes to `validate_frame` for its failure cases."""
    if schema.checks or schema.unique or schema.ordered or schema.index is not None:
        return False
    if getattr(schema, "parsers", None) or schema.strict == "filter":
        return False
    if schema.strict and not set(frame.columns) <= set(schema.columns):
        return False
    for name, column in schema.columns.items():
        if column.regex or column.unique or getattr(column, "parsers", None):
            return False
        if name not in frame.columns:
            if column.required:
                return False
            continue
        values = frame[name]
        if values.dtype == object:  # pandera would convert it, to text or numbers
            return False
        if column.dtype is not None and not column.dtype.check(Engine.dtype(values.dtype)):
            return False
        if not column.nullable and values.isna().any():
            return False
        for check in column.checks:
            if check.groupby is not None or not check(values).check_passed:
                return False
    return True


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


def sorted_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """Failure cases in one order whatever order they were found in (partitions judged
    apart, in any order): table-level cases first, then by row, column and check."""
    cases = cases.reindex(columns=FAILURE_COLUMNS).reset_index(drop=True)
    order = cases.assign(_text=cases["failure_case"].astype(str)).sort_values(
        ["index", "column", "check", "_text"], na_position="first", kind="stable"
    )
    return cases.loc[order.index].reset_index(drop=True)


def validation_report(
    rows: int, columns: int, cases: pd.DataFrame, *, schema_path: str
) -> dict[str, Any]:
    invalid_rows = int(cases["index"].dropna().nunique())
    return {
        "schema": schema_path,
        "rows": rows,
        "columns": columns,
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


# Checks found while cleaning (stages.data.transform.unparsed_values), as a row's reason
# reads them.
UNREADABLE = {
    "parses as a date": "is not a date",
    "parses as a number": "is not a number",
    "is a whole number": "is not a whole number",
}


def row_reasons(cases: pd.DataFrame) -> dict[int, str]:
    """One readable reason per invalid row, from the failure cases."""
    by_row: dict[int, dict[str, list[tuple[str, str]]]] = {}
    if cases.empty:
        return {}
    for case in cases.dropna(subset=["index"]).itertuples():
        column = by_row.setdefault(int(case.index), {}).setdefault(str(case.column), [])
        column.append((str(case.check), str(case.failure_case)))
    return {
        row: "; ".join(_column_reason(name, found) for name, found in columns.items())
        for row, columns in by_row.items()
    }


def _column_reason(column: str, found: list[tuple[str, str]]) -> str:
    """Why a row's value in `column` is invalid. A value that could not be read, or that is
    missing where the schema wants one, is said once: not again as the dtype and checks it
    then fails."""
    for check, value in found:
        if check in UNREADABLE:
            return f"{column}: {value!r} {UNREADABLE[check]}"
    if any(check == "not_nullable" for check, _ in found):
        return f"{column}: missing, and the schema requires a value"
    return "; ".join(
        f"{column}: {value!r} fails "
        + ("not in the schema's vocabulary" if check.startswith("isin(") else check)
        for check, value in found
    )


def apply_policy(
    frame: pd.DataFrame,
    *,
    validated: pd.DataFrame | None,
    cases: pd.DataFrame,
    report: dict[str, Any],
    schema,
    policy: ValidateParams,
    columns: tuple[str, str],
    source: str,
) -> tuple[pd.DataFrame | None, pd.DataFrame, PipelineError | None]:
    """validate.on_invalid applied: (the valid rows, the quarantined rows with their reason,
    the error that stops the stage). A table-level failure (a missing column, a wrong
    dtype) always stops it; so do more invalid rows than validate.max_invalid_fraction.
    `columns` names the row-number and reason columns of the quarantine."""
    row_id, reason = columns
    reasons = row_reasons(cases)
    quarantine = pd.DataFrame(columns=[row_id, *frame.columns, reason])
    if validated is not None:
        return validated, quarantine, None
    if cases["index"].isna().any() or policy.on_invalid == "fail":
        return None, quarantine, failure_message(report, source=source)
    if len(reasons) > policy.max_invalid_fraction * len(frame):
        error = failure_message(report, source=source)
        error.details.insert(
            0,
            f"{len(reasons) / len(frame):.2%} of rows are invalid, more than "
            f"validate.max_invalid_fraction ({policy.max_invalid_fraction:.2%}) allows",
        )
        return None, quarantine, error
    invalid = sorted(reasons)  # in row order
    quarantine = frame.loc[invalid].assign(**{reason: [reasons[row] for row in invalid]})
    quarantine.insert(0, row_id, invalid)
    validated, _ = validate_frame(frame.drop(index=invalid), schema=schema)
    return validated, quarantine, None


def too_few_classes(count: int, *, target: str, rows: int) -> PipelineError | None:
    """The two-classes error when the `rows` valid rows hold fewer than two classes (their
    `count`), else None."""
    try:
        require_two_classes(count, where=f"target column '{target}' in {rows:,} valid rows")
    except PipelineError as exc:
        return exc
    return None


def validation_metrics(
    report: dict[str, Any], *, rows: int, valid_rows: int | None, quarantined: int
) -> dict[str, Any]:
    """reports/validate/metrics.json: counts, and failures per `column:check` for
    `dvc metrics show`."""
    return {
        "rows": rows,
        "valid_rows": valid_rows or 0,
        "invalid_rows": report["invalid_rows"],
        "quarantined_rows": quarantined,
        "unlabelled_rows": report["unlabelled_rows"],
        "failures": {f"{i['column']}:{i['check']}": i["failures"] for i in report["failures"]},
    }
