"""The row transform, in one place: validate, prepare and predict all call it.

- `clean_frame` runs before the schema judges any value: it trims text, turns missing-value
  tokens into missing values, and parses the columns the schema declares as dates or
  numbers; `unparsed_values` names each value it could not read.
- `encode_features` turns clean, validated rows into the on-disk encoding of the spec.

Both are pure functions of (row, schema or spec): a row gives the same result alone or in
a batch, in training or at prediction time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError
from stages.data.encoding import DATE_PARTS, EncodingSpec, part_column, value_column
from stages.data.schema import date_formats

if TYPE_CHECKING:
    import pandera.pandas as pa


def is_datetime_dtype(dtype) -> bool:
    return pd.api.types.is_datetime64_any_dtype(dtype)


def parse_dates(values: pd.Series, *, date_format: str | None = None) -> pd.Series:
    """Dates and timestamps in any common written form (or in `date_format`, a strptime
    format, when the schema gives one), as naive UTC datetime64; a value that is not a
    date becomes missing (the schema's nullability then judges it)."""
    if is_datetime_dtype(values.dtype):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format=date_format or "mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def clean_frame(
    frame: pd.DataFrame, *, missing_tokens: list[str], schema: pa.DataFrameSchema | None = None
) -> pd.DataFrame:
    """Trim every text value, turn missing-value tokens into NA, and parse the columns
    `schema` declares as dates or numbers (a value that is not one becomes missing, as
    does a fraction in a whole-number column). Returns a new frame."""
    out = frame.copy()
    tokens = set(missing_tokens)
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_string_dtype(column) and not holds_nested(column):
            out[name] = _trimmed(column, tokens).astype(column.dtype)
    formats = date_formats(schema) if schema is not None else {}
    for name in _date_columns(out, schema):
        out[name] = parse_dates(out[name], date_format=formats.get(name))
    for name, whole in _number_columns(out, schema).items():
        out[name] = _parse_numbers(out[name], whole=whole)
    return out


def _parse_numbers(values: pd.Series, *, whole: bool) -> pd.Series:
    """Numbers from text (or a mix of numbers and text, as JSON may bring); with `whole`, a
    fraction becomes missing too, instead of being cut to its whole part."""
    numbers = values if _is_number_dtype(values.dtype) else pd.to_numeric(values, errors="coerce")
    if whole and pd.api.types.is_float_dtype(numbers):
        numbers = numbers.where(numbers.isna() | (numbers % 1 == 0))
    return numbers


def unparsed_values(
    raw: pd.DataFrame,
    clean: pd.DataFrame,
    *,
    missing_tokens: list[str],
    schema: pa.DataFrameSchema,
) -> pd.DataFrame:
    """Failure cases (column, check, failure_case, index) of the values of the schema's
    date and number columns that are present in `raw` but that `clean_frame` could not read
    (it made them missing, in `clean`): validation reports them with these. The checks:
    `parses as a date`, `parses as a number`, `is a whole number`."""
    tokens = set(missing_tokens)
    cases = []
    numbers = _number_columns(raw, schema)
    for name in [*_date_columns(raw, schema), *numbers]:
        if is_datetime_dtype(raw[name].dtype):
            continue
        text = _trimmed(raw[name], tokens)
        bad = (text.notna() & clean[name].isna()).to_numpy()
        if not bad.any():
            continue
        if name in numbers:
            parsed = pd.to_numeric(text[bad], errors="coerce").notna().to_numpy()
            checks = np.where(parsed, "is a whole number", "parses as a number")
        else:
            checks = np.full(int(bad.sum()), "parses as a date")
        for index, check in zip(np.flatnonzero(bad), checks, strict=True):
            cases.append((name, str(check), str(text.iloc[index]), raw.index[index]))
    return pd.DataFrame(cases, columns=["column", "check", "failure_case", "index"])


def _trimmed(column: pd.Series, tokens: set[str]) -> pd.Series:
    """Text trimmed, missing-value tokens made missing. A text column is trimmed by Arrow
    directly (what pandas's `str.strip` calls for Arrow-backed text, without a few pandas
    steps' fixed cost, which dominates a request of a few rows)."""
    if isinstance(column.dtype, pd.StringDtype):
        import pyarrow
        import pyarrow.compute

        trimmed = pyarrow.compute.utf8_trim_whitespace(
            pyarrow.array(column, type=pyarrow.string(), from_pandas=True)
        )
        found = pyarrow.compute.is_in(
            trimmed, value_set=pyarrow.array(sorted(tokens), pyarrow.string())
        )
        kept = pyarrow.compute.if_else(found, pyarrow.scalar(None, pyarrow.string()), trimmed)
        return pd.Series(pd.array(kept, dtype=column.dtype), index=column.index, name=column.name)
    trimmed = column.astype("string").str.strip()
    return trimmed.mask(trimmed.isin(tokens))


def _date_columns(frame: pd.DataFrame, schema: pa.DataFrameSchema | None) -> list[str]:
    """The columns of `frame` that `schema` declares as dates."""
    if schema is None:
        return []
    return [
        name
        for name, declared in schema.columns.items()
        if name in frame.columns
        and declared.dtype is not None
        and is_datetime_dtype(declared.dtype.type)
    ]


def _is_number_dtype(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _number_columns(frame: pd.DataFrame, schema: pa.DataFrameSchema | None) -> dict[str, bool]:
    """The columns of `frame` that `schema` declares as numbers and that need parsing (they
    hold text, or fractions where the schema wants whole numbers): name -> whole."""
    if schema is None:
        return {}
    found = {}
    for name, declared in schema.columns.items():
        if name not in frame.columns or declared.dtype is None:
            continue
        wanted = declared.dtype.type
        if not _is_number_dtype(wanted) or holds_nested(frame[name]):
            continue
        whole = pd.api.types.is_integer_dtype(wanted)
        given = frame[name].dtype
        if not _is_number_dtype(given) or (whole and pd.api.types.is_float_dtype(given)):
            found[name] = whole
    return found


def holds_nested(column: pd.Series) -> bool:
    """A column of lists, maps or arrays (nested Parquet or JSON values)."""
    if column.dtype != object:
        return False
    present = column.dropna()
    return any(
        isinstance(value, (list, dict, tuple, set, np.ndarray)) for value in present.iloc[:1000]
    )


def _codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value (as text) in `vocabulary`; -1 for a missing or unlisted
    value. Arrow's hash lookup: a tenth of the time of a pandas index lookup."""
    import pyarrow
    import pyarrow.compute

    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("str")
    found = pyarrow.compute.index_in(
        pyarrow.array(text, type=pyarrow.string(), from_pandas=True),
        value_set=pyarrow.array(vocabulary, pyarrow.string()),
    )
    return found.fill_null(-1).to_numpy(zero_copy_only=False)


def _float_values(column: pd.Series) -> np.ndarray:
    """A number column as float64, NaN where missing or not a number."""
    if _is_number_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()


def encode_features(frame: pd.DataFrame, *, spec: EncodingSpec) -> pd.DataFrame:
    """Encode the feature columns of `frame` into the table layout of the spec: a number as
    float32 (0 when missing, plus a 1 in its missing indicator), a category as its code in
    the schema's vocabulary (-1 when missing or unknown), an embedded category as its text,
    a date as its parts. `encoding.model_inputs` expands it for the model."""
    encoded: dict[str, np.ndarray] = {}
    for feature in spec.features:
        if feature.name not in frame.columns:
            raise PipelineError(f"missing feature column '{feature.name}'")
        column = frame[feature.name]
        if feature.kind == "numeric":
            values = _float_values(column)
            absent = np.isnan(values)
            encoded[value_column(feature.name)] = np.where(absent, 0.0, values).astype("float32")
        elif feature.kind == "datetime":
            stamps = parse_dates(column)
            absent = stamps.isna().to_numpy()
            parts = {
                "year": stamps.dt.year,
                "month": stamps.dt.month,
                "day": stamps.dt.day,
                "weekday": stamps.dt.day_of_week,
                "hour": stamps.dt.hour + stamps.dt.minute / 60,
            }
            for part in DATE_PARTS:
                values = parts[part].astype("float64").to_numpy()
                encoded[part_column(feature.name, part)] = np.nan_to_num(values).astype("float32")
        elif feature.kind == "categorical":
            encoded[value_column(feature.name)] = _codes(column, feature.vocabulary or []).astype(
                "int32"
            )
            continue
        else:  # embedded: the text itself; train learns its vocabulary from train rows
            encoded[value_column(feature.name)] = column.astype("string").to_numpy()
            continue
        if feature.indicator:
            encoded[feature.indicator] = absent.astype("float32")
    return pd.DataFrame(encoded, index=frame.index, columns=spec.table_columns)
