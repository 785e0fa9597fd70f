"""prepare: clean the validated rows and encode every feature to numbers.

Reads data/validated/table.parquet and the schema. Writes data/prepared/table.parquet
(a `row_id`, the encoded feature columns and the target: a class index, or for
regression the number itself),
data/prepared/encoding.json (the encoding spec) and reports/prepare/report.json.

Nothing here is learned from data: the encoding is a pure function of (row, schema), so a
row encodes the same whether it is alone, in a batch, in training or at prediction time.
Categories come from the vocabulary the schema declares: each is stored as its code, and
an unknown or missing category (code -1) reaches the model as all zeros; a missing number
becomes 0 plus a 1 in its `__missing` column.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pandera.pandas as pa

from stages import paths
from stages.config import Params
from stages.encoding import ROW_ID, EncodingSpec, FeatureSpec
from stages.errors import PipelineError
from stages.io import TableWriter, read_table_batches, say, write_json
from stages.schema import load_schema, non_features


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
    dtype = column.dtype.type
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    return "regression" if numeric and _vocabulary(column) is None else "classification"


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
        if len(classes) < 2:
            raise PipelineError(
                f"schema column '{target}' (the target) needs an isin check listing "
                "at least two classes",
                ["for a numeric target to predict as a number, set dataset.task: regression"],
            )
    elif not pd.api.types.is_numeric_dtype(column.dtype.type):
        raise PipelineError(
            f"schema column '{target}' (the target) has dtype {column.dtype}; regression "
            "needs a numeric target (params: dataset.task)"
        )
    excluded = non_features(schema)
    features = []
    for name, column in schema.columns.items():
        if name == target or name in excluded:
            continue
        dtype = column.dtype.type
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            features.append(FeatureSpec(name=name, kind="numeric", nullable=column.nullable))
        elif pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            vocabulary = _vocabulary(column)
            if not vocabulary:
                raise PipelineError(
                    f"schema column '{name}' is text without an isin vocabulary: declare its "
                    "categories, or list it under metadata.non_features with a reason"
                )
            features.append(
                FeatureSpec(
                    name=name, kind="categorical", nullable=column.nullable, vocabulary=vocabulary
                )
            )
        else:
            raise PipelineError(
                f"schema column '{name}' has dtype {column.dtype}, which cannot be encoded: "
                "list it under metadata.non_features with a reason"
            )
    if not features:
        raise PipelineError("the schema declares no feature columns besides the target")
    return EncodingSpec(
        target=target, task=task, classes=classes, features=features, excluded=excluded
    )


def normalise_text(frame: pd.DataFrame, *, missing_tokens: list[str]) -> pd.DataFrame:
    """Trim every text value and turn missing-value tokens into NA, row by row."""
    out = frame.copy()
    tokens = set(missing_tokens)
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_string_dtype(column):
            trimmed = column.str.strip()
            out[name] = trimmed.mask(trimmed.isin(tokens))
    return out


class SeenRows:
    """Hashes of the rows kept so far, so duplicates are found across batches too.

    Rows are compared by a 64-bit hash of all their values: two different rows collide
    with probability about n^2 / 2^65 (below 3e-6 for 10 million rows). The hashes of
    each batch are kept sorted, apart, and searched by bisection.
    """

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def keep_first(self, frame: pd.DataFrame) -> np.ndarray:
        """Mask of the rows of `frame` not seen before, in this frame or an earlier one."""
        hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        keep = ~pd.Series(hashes).duplicated().to_numpy()
        for earlier in self.batches:
            if earlier.size:
                found = earlier[np.minimum(np.searchsorted(earlier, hashes), earlier.size - 1)]
                keep &= found != hashes
        self.batches.append(np.sort(hashes[keep]))
        return keep


def clean_frame(
    frame: pd.DataFrame,
    *,
    spec: EncodingSpec,
    missing_tokens: list[str],
    drop_duplicates: bool,
    seen: SeenRows | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Trim text, turn missing-value tokens into NA, drop duplicates and unlabelled rows.

    `seen` carries the rows of earlier batches, when a table is cleaned batch by batch.
    """
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    if spec.target not in frame.columns:
        missing.append(spec.target)
    if missing:
        raise PipelineError(f"missing columns: {', '.join(missing)}")
    out = normalise_text(frame, missing_tokens=missing_tokens)
    if ROW_ID not in out.columns:
        out.insert(0, ROW_ID, np.arange(len(out), dtype="int64"))
    counts = {"rows_in": len(out)}
    data_columns = [name for name in out.columns if name != ROW_ID]
    before = len(out)
    if drop_duplicates:
        out = out[(seen or SeenRows()).keep_first(out[data_columns])]
    counts["duplicates_dropped"] = before - len(out)
    before = len(out)
    out = out[out[spec.target].notna()]
    counts["unlabelled_dropped"] = before - len(out)
    counts["rows_out"] = len(out)
    return out.reset_index(drop=True), counts


def _codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in `vocabulary`; -1 for a missing or unlisted value."""
    return pd.Index(vocabulary).get_indexer(values)


def encode_features(frame: pd.DataFrame, *, spec: EncodingSpec) -> pd.DataFrame:
    """Encode the feature columns of `frame` into the table layout of the spec: a number as
    float32 (0 when missing, plus a 1 in its `__missing` column), a category as its code
    in the schema's vocabulary (-1 when missing or unknown). `model_inputs` expands it."""
    encoded: dict[str, np.ndarray] = {}
    for feature in spec.features:
        if feature.name not in frame.columns:
            raise PipelineError(f"missing feature column '{feature.name}'")
        column = frame[feature.name]
        if feature.kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
            absent = np.isnan(values)
            encoded[feature.name] = np.where(absent, 0.0, values).astype("float32")
            if feature.nullable:
                encoded[f"{feature.name}__missing"] = absent.astype("float32")
        else:
            encoded[feature.name] = _codes(column, feature.vocabulary or []).astype("int32")
    return pd.DataFrame(encoded, index=frame.index, columns=spec.table_columns)


def encode_target(labels: pd.Series, *, classes: list[str]) -> np.ndarray:
    """Class index of each label; a label outside `classes` is an error. With no classes
    (regression) the values themselves, as float64."""
    if not classes:
        return pd.to_numeric(labels, errors="raise").astype("float64").to_numpy()
    codes = _codes(labels, classes)
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
    missing_tokens: list[str],
    drop_duplicates: bool,
    seen: SeenRows | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean then encode. Returns the prepared table and the row counts."""
    clean, counts = clean_frame(
        frame,
        spec=spec,
        missing_tokens=missing_tokens,
        drop_duplicates=drop_duplicates,
        seen=seen,
    )
    features = encode_features(clean, spec=spec)
    features.insert(0, ROW_ID, clean[ROW_ID].to_numpy())
    features[spec.target] = encode_target(clean[spec.target], classes=spec.classes)
    return features, counts


def run(params: Params) -> None:
    """The prepare command: clean and encode the validated table batch by batch (memory
    stays bounded whatever the table's size), write the table, the spec and the report."""
    spec = spec_from_schema(
        load_schema(params.dataset.schema_path),
        target=params.dataset.target,
        task=params.dataset.task,
    )
    seen = SeenRows()
    totals: Counter[str] = Counter()
    with TableWriter(paths.PREPARED_TABLE) as writer:
        for batch in read_table_batches(paths.VALIDATED_TABLE):
            prepared, counts = prepare_frame(
                batch,
                spec=spec,
                missing_tokens=params.prepare.missing_tokens,
                drop_duplicates=params.prepare.drop_duplicates,
                seen=seen,
            )
            writer.write(prepared)
            totals.update(counts)
    report = {
        **dict(totals),
        "task": spec.task,
        "features_in": len(spec.features),
        "features_out": len(spec.feature_columns),
        "excluded_columns": spec.excluded,
    }
    spec.save(paths.ENCODING_SPEC)
    write_json(report, paths.PREPARE_REPORT)
    say(
        "prepare",
        f"{report['rows_out']:,} rows ({report['duplicates_dropped']} duplicates, "
        f"{report['unlabelled_dropped']} unlabelled dropped), {report['features_out']} "
        f"encoded columns -> {paths.PREPARED_TABLE}",
    )
