"""The row transform, in one place: validate, prepare and predict all call it.

- `clean_frame` runs before the schema judges any value: it trims text, turns missing-value
  tokens into missing values, and parses the columns the schema declares as dates.
- `encode_features` turns clean, validated rows into the on-disk encoding of the spec.

Both are pure functions of (row, schema or spec): a row gives the same result alone or in
a batch, in training or at prediction time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from stages.encoding import (
    DATE_PARTS,
    EncodingSpec,
    missing_column,
    part_column,
    value_column,
)
from stages.errors import PipelineError


def is_datetime_dtype(dtype) -> bool:
    return pd.api.types.is_datetime64_any_dtype(dtype)


def parse_dates(values: pd.Series) -> pd.Series:
    """Dates and timestamps in any common written form, as naive UTC datetime64; a value
    that is not a date becomes missing (the schema's nullability then judges it)."""
    if is_datetime_dtype(values.dtype):
        parsed = values
    else:
        text = values.astype("string")
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def clean_frame(
    frame: pd.DataFrame, *, missing_tokens: list[str], schema: pa.DataFrameSchema | None = None
) -> pd.DataFrame:
    """Trim every text value, turn missing-value tokens into NA, and parse the columns
    `schema` declares as dates. Returns a new frame."""
    out = frame.copy()
    tokens = set(missing_tokens)
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_string_dtype(column) and not _holds_lists(column):
            trimmed = column.astype("string").str.strip()
            out[name] = trimmed.mask(trimmed.isin(tokens)).astype(column.dtype)
    if schema is not None:
        for name, declared in schema.columns.items():
            dtype = declared.dtype.type if declared.dtype is not None else None
            if name in out.columns and dtype is not None and is_datetime_dtype(dtype):
                out[name] = parse_dates(out[name])
    return out


def unparsed_dates(
    frame: pd.DataFrame, *, missing_tokens: list[str], schema: pa.DataFrameSchema
) -> pd.DataFrame:
    """Failure cases (column, check, failure_case, index) of the values of the schema's
    date columns that are present but do not read as a date: `clean_frame` makes them
    missing, and validation reports them with these."""
    tokens = set(missing_tokens)
    cases = []
    for name, declared in schema.columns.items():
        dtype = declared.dtype.type if declared.dtype is not None else None
        if name not in frame.columns or dtype is None or not is_datetime_dtype(dtype):
            continue
        column = frame[name]
        if is_datetime_dtype(column.dtype):
            continue
        text = column.astype("string").str.strip()
        present = text.notna() & ~text.isin(tokens)
        bad = present & parse_dates(text).isna()
        for index in np.flatnonzero(bad.to_numpy()):
            cases.append((name, "parses as a date", str(text.iloc[index]), frame.index[index]))
    return pd.DataFrame(cases, columns=["column", "check", "failure_case", "index"])


def _holds_lists(column: pd.Series) -> bool:
    """An object column of lists, dicts or arrays (a nested Parquet column)."""
    if column.dtype != object:
        return False
    present = column.dropna()
    return bool(len(present)) and not isinstance(present.iloc[0], str)


def _codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in `vocabulary`; -1 for a missing or unlisted value."""
    return pd.Index(vocabulary).get_indexer(values.astype("string"))


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
            values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
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
        if feature.nullable:
            encoded[missing_column(feature.name)] = absent.astype("float32")
    return pd.DataFrame(encoded, index=frame.index, columns=spec.table_columns)
