"""The encoding spec from the schema alone, and the encoding of validated rows to numbers.

Used by the prepare stage and by tests and benchmarks that build a spec: categories the
schema lists become their code (unknown: -1), numbers get a missing indicator, the target
becomes a class index (or stays a number for regression), repeated rows are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from stages.common.errors import PipelineError
from stages.common.tasks import require_two_classes
from stages.data.encoding import ROW_ID, TARGET, EncodingSpec, FeatureSpec
from stages.data.schema import date_formats, embedded_categories, non_features
from stages.data.transform import encode_features, is_datetime_dtype


def _vocabulary(column: pa.Column) -> list[str] | None:
    for check in column.checks:
        if check.name == "isin":
            return [str(value) for value in check.statistics["allowed_values"]]
    return None


def target_task(column: pa.Column, *, task: str) -> str:
    """The task for this target column: as params say, or for `auto`, classification when
    the schema lists the target's classes or the target is not a number, else regression."""
    if task != "auto":
        return task
    dtype = column.dtype.type if column.dtype is not None else object
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    return "regression" if numeric and _vocabulary(column) is None else "classification"


def feature_spec(name: str, column, *, embedded: bool, date_format: str | None) -> FeatureSpec:
    """How one schema column is encoded, from its dtype, vocabulary and metadata."""
    dtype = column.dtype.type if column.dtype is not None else None
    if dtype is None:
        raise PipelineError(
            f"schema column '{name}' has no dtype, so it cannot be encoded: give it one, "
            "or list it under metadata.non_features with a reason"
        )
    nullable = column.nullable
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return FeatureSpec(name=name, kind="numeric", nullable=nullable)
    if is_datetime_dtype(dtype):
        return FeatureSpec(name=name, kind="datetime", nullable=nullable, date_format=date_format)
    if embedded:
        return FeatureSpec(name=name, kind="embedded", nullable=nullable)
    if pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        vocabulary = _vocabulary(column)
        if not vocabulary:
            raise PipelineError(
                f"schema column '{name}' is text without an isin vocabulary: declare its "
                "categories, list it under metadata.embedded_categories (a vocabulary "
                "learned from train rows), or under metadata.non_features with a reason"
            )
        return FeatureSpec(name=name, kind="categorical", nullable=nullable, vocabulary=vocabulary)
    raise PipelineError(
        f"schema column '{name}' has dtype {column.dtype}, which cannot be encoded: "
        "list it under metadata.non_features with a reason"
    )


def spec_from_schema(
    schema: pa.DataFrameSchema, *, target: str, task: str = "auto"
) -> EncodingSpec:
    """Derive the encoding from the schema alone: task, kinds, nullability, vocabularies."""
    if target not in schema.columns:
        raise PipelineError(f"target column '{target}' is not in the schema")
    column = schema.columns[target]
    task = target_task(column, task=task)
    classes: list[str] = []
    if task == "classification":
        classes = _vocabulary(column) or []
        require_two_classes(
            len(classes),
            where=f"schema column '{target}' (the target), in its isin check,",
            hints=["for a numeric target to predict as a number, set dataset.task: regression"],
        )
    elif column.dtype is None or not pd.api.types.is_numeric_dtype(column.dtype.type):
        raise PipelineError(
            f"schema column '{target}' (the target) has dtype {column.dtype}; regression "
            "needs a numeric target (params: dataset.task)"
        )
    excluded = non_features(schema)
    embedded = embedded_categories(schema)
    formats = date_formats(schema)
    features = [
        feature_spec(name, column, embedded=name in embedded, date_format=formats.get(name))
        for name, column in schema.columns.items()
        if name != target and name not in excluded
    ]
    if not features:
        raise PipelineError("the schema declares no feature columns besides the target")
    return EncodingSpec(
        target=target, task=task, classes=classes, features=features, excluded=excluded
    )


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (uint64). Two different rows collide with
    probability about n^2 / 2^65 for n rows (below 1e-4 for 50 million rows)."""
    # Object columns may hold nested values (lists, maps), which are not hashable: they are
    # hashed by their text. Other columns are hashed as they are, uncopied.
    objects = {name: frame[name].map(repr) for name in frame if frame[name].dtype == object}
    hashable = frame.assign(**objects) if objects else frame
    return pd.util.hash_pandas_object(hashable, index=False).to_numpy()


def later_copies(hashes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The row numbers whose hash an earlier row (a smaller number) has too: every copy of
    a row but the first, in order."""
    order = np.lexsort((rows, hashes))
    sorted_hashes = hashes[order]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] = sorted_hashes[1:] == sorted_hashes[:-1]
    return np.sort(rows[order[repeated]])


def drop_rows(
    frame: pd.DataFrame,
    *,
    spec: EncodingSpec,
    row_id: str,
    drop_duplicates: bool,
    copies: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop duplicate rows and rows without a label; `row_id` names the column that holds
    each row's number in the raw table. With `copies` (sorted row numbers: the later copies
    of rows, found over the whole table by the prepare stage) those rows are the duplicates;
    without, the copies within `frame`."""
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    if spec.target not in frame.columns:
        missing.append(spec.target)
    if missing:
        raise PipelineError(f"missing columns: {', '.join(missing)}")
    out = frame
    if row_id not in out.columns:
        out = out.assign(**{row_id: np.arange(len(out), dtype="int64")})
    counts = {"rows_in": len(out)}
    data_columns = [name for name in out.columns if name != row_id]
    before = len(out)
    if drop_duplicates:
        ids = out[row_id].to_numpy()
        if copies is None:
            copies = later_copies(row_hashes(out[data_columns]), ids)
        out = out[~np.isin(ids, copies)]
    counts["duplicates_dropped"] = before - len(out)
    before = len(out)
    out = out[out[spec.target].notna()]
    counts["unlabelled_dropped"] = before - len(out)
    counts["rows_out"] = len(out)
    return out.reset_index(drop=True), counts


def encode_target(labels: pd.Series, *, classes: list[str]) -> np.ndarray:
    """Class index of each label; a label outside `classes` is an error. With no classes
    (regression) the values themselves, as float64."""
    if not classes:
        return pd.to_numeric(labels, errors="raise").astype("float64").to_numpy()
    codes = pd.Index(classes).get_indexer(labels.astype("string"))
    unknown = codes < 0
    if unknown.any():
        examples = sorted(set(labels[unknown].astype(str)))[:5]
        raise PipelineError(
            f"target column '{labels.name}' has labels outside the schema's classes: {examples}"
        )
    return codes.astype("int32")


def prepare_frame(
    frame: pd.DataFrame,
    *,
    spec: EncodingSpec,
    drop_duplicates: bool,
    row_id: str = ROW_ID,
    copies: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop duplicate and unlabelled rows, then encode. Returns the prepared table (its
    columns `row_id`, the spec's table columns, `target`) and the row counts."""
    kept, counts = drop_rows(
        frame, spec=spec, row_id=row_id, drop_duplicates=drop_duplicates, copies=copies
    )
    features = encode_features(kept, spec=spec)
    features.insert(0, ROW_ID, kept[row_id].to_numpy())
    features[TARGET] = encode_target(kept[spec.target], classes=spec.classes)
    return features, counts
