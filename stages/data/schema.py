"""Loading the pandera schema that declares the raw table.

The schema file is pandera's own YAML. Its top-level `metadata.non_features` maps a column
to the reason it is not a model input (an identifier, a sampling weight, free text, a
suspected leak); `metadata.embedded_categories` maps a high-cardinality text column to the
reason it is encoded through a vocabulary learned from train rows and an embedding;
`metadata.date_formats` maps a date column to its strptime format when it has a fixed one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError

if TYPE_CHECKING:  # pandera loads where a schema is read: train and evaluate never read one
    import pandera.pandas as pa

FINITE_CHECK = "finite"


def _finite(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    return pd.Series(np.isfinite(values) | series.isna(), index=series.index)


def load_schema(path: str | Path) -> pa.DataFrameSchema:
    """Read a pandera YAML schema; float columns also get a check that rejects inf."""
    import pandera.pandas as pa

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: schema file not found (params: dataset.schema)")
    try:
        schema = pa.DataFrameSchema.from_yaml(path)
    except Exception as exc:  # pandera raises many types for a malformed file
        raise PipelineError(f"{path}: not a valid pandera schema ({exc})") from None
    if not schema.columns:
        raise PipelineError(f"{path}: the schema declares no columns")
    finite = pa.Check(_finite, name=FINITE_CHECK, error="finite")
    updates = {
        name: {"checks": [*column.checks, finite]}
        for name, column in schema.columns.items()
        if column.dtype is not None and pd.api.types.is_float_dtype(column.dtype.type)
    }
    return schema.update_columns(updates) if updates else schema


def _reasons(schema: pa.DataFrameSchema, key: str) -> dict[str, str]:
    """The `metadata.<key>` map of column names to reasons, checked against the columns."""
    declared = (schema.metadata or {}).get(key) or {}
    if not isinstance(declared, dict):
        raise PipelineError(f"schema metadata.{key} must map column names to reasons")
    unknown = sorted(set(declared) - set(schema.columns))
    if unknown:
        raise PipelineError(
            f"schema metadata.{key} names columns the schema lacks: {', '.join(unknown)}"
        )
    return {str(name): str(reason) for name, reason in declared.items()}


def non_features(schema: pa.DataFrameSchema) -> dict[str, str]:
    """Columns the schema marks as not model inputs, with the reason for each."""
    return _reasons(schema, "non_features")


def embedded_categories(schema: pa.DataFrameSchema) -> dict[str, str]:
    """Text columns the schema marks as high-cardinality categories (a vocabulary learned
    from train rows and an embedding, instead of a declared `isin` list), with the reason."""
    return _reasons(schema, "embedded_categories")


def date_formats(schema: pa.DataFrameSchema) -> dict[str, str]:
    """Date columns written in a fixed format (`31.12.2024`: `%d.%m.%Y`), by name: the
    strptime format infer-schema found for dates that read only day first."""
    return _reasons(schema, "date_formats")


def require_target(schema: pa.DataFrameSchema, target: str, schema_path: str | Path) -> None:
    if target not in schema.columns:
        raise PipelineError(
            f"{schema_path}: target column '{target}' (params: dataset.target) is not in the schema"
        )
