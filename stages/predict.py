"""predict and export: use the trained model on new raw rows, or hand it to TF Serving.

predict reads raw rows in the format collect reads (`collect.*` read options), with or
without the target column, `predict.batch_rows` rows at a time so memory stays bounded.
Each batch goes through the training path: validate against the schema without the target,
normalise_text and encode_features from prepare, then models/model.keras. Invalid rows get
their reason instead of a prediction (`predict.on_invalid: skip`) or stop the command with
every reason and no output (`fail`). The output is written to a temporary file and renamed
into place: one row per input row, in input order.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from stages import paths
from stages.collect import read_chunks
from stages.config import Params
from stages.encoding import EncodingSpec, model_inputs
from stages.errors import PipelineError
from stages.io import atomic_path, say
from stages.model import load_model, predict_proba, predict_values
from stages.prepare import encode_features, normalise_text
from stages.schema import load_schema
from stages.validate import row_reasons, validate_frame

MAX_REASONS_SHOWN = 10


def feature_schema(schema: pa.DataFrameSchema, *, target: str) -> pa.DataFrameSchema:
    """The schema of rows to predict: the training schema without its target column."""
    return schema.remove_columns([target]) if target in schema.columns else schema


def predict_frame(
    raw: pd.DataFrame,
    *,
    schema: pa.DataFrameSchema,
    spec: EncodingSpec,
    model,
    missing_tokens: list[str],
) -> pd.DataFrame:
    """Predictions for raw rows, one output row per input row in the same order.

    `schema` is the feature schema (no target); a target column in `raw` is ignored.
    """
    raw = raw.drop(columns=[spec.target], errors="ignore").reset_index(drop=True)
    validated, cases = validate_frame(raw, schema=schema)
    table_cases = cases[cases["index"].isna()]
    if not table_cases.empty:
        details = [
            f"{row.column}: {row.check} ({row.failure_case})" for row in table_cases.itertuples()
        ]
        raise PipelineError("the rows do not have the schema's columns", details)
    reasons = row_reasons(cases)
    if reasons:
        validated, _ = validate_frame(raw.drop(index=list(reasons)), schema=schema)
    features = encode_features(normalise_text(validated, missing_tokens=missing_tokens), spec=spec)
    if spec.task == "regression":  # one predicted number per row
        values = np.full(len(raw), np.nan)
        if len(features):
            values[features.index.to_numpy()] = predict_values(model, model_inputs(features, spec))
        out = pd.DataFrame({"predicted": values})
    else:
        out = _class_predictions(model, features, spec=spec, rows=len(raw))
    out["error"] = pd.array([reasons.get(row) for row in range(len(raw))], dtype="string")
    return out


def _class_predictions(model, features: pd.DataFrame, *, spec: EncodingSpec, rows: int):
    """Predicted class and class probabilities; NaN and no class for a row not in
    `features` (an invalid row)."""
    proba = np.full((rows, len(spec.classes)), np.nan)
    if len(features):
        proba[features.index.to_numpy()] = predict_proba(model, model_inputs(features, spec))
    names = np.asarray(spec.classes, dtype=object)
    predicted = np.where(np.isnan(proba[:, 0]), None, names[np.nan_to_num(proba).argmax(axis=1)])
    out = pd.DataFrame({"predicted": pd.array(predicted, dtype="string")})
    for index, label in enumerate(spec.classes):
        out[f"probability_{label}"] = proba[:, index]
    return out


class _PredictionWriter:
    """Appends prediction batches to a Parquet or CSV file."""

    def __init__(self, path: Path, *, classes: list[str]) -> None:
        """`classes` empty: regression, a predicted number and no probabilities."""
        self.path = path
        self.parquet = path.suffix.lower() != ".csv"
        predicted = pa_arrow.string() if classes else pa_arrow.float64()
        fields = [("row", pa_arrow.int64()), ("predicted", predicted)]
        fields += [(f"probability_{label}", pa_arrow.float64()) for label in classes]
        fields += [("error", pa_arrow.string())]
        self.schema = pa_arrow.schema(fields)
        self.writer = pq.ParquetWriter(path, self.schema) if self.parquet else None
        self.first = True

    def write(self, batch: pd.DataFrame) -> None:
        if self.writer is not None:
            self.writer.write_table(
                pa_arrow.Table.from_pandas(batch, schema=self.schema, preserve_index=False)
            )
        else:
            batch.to_csv(self.path, mode="w" if self.first else "a", header=self.first, index=False)
        self.first = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run(params: Params, *, input_path: str, output_path: str) -> None:
    """The predict command."""
    start = time.perf_counter()
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    schema = feature_schema(load_schema(params.dataset.schema_path), target=spec.target)
    model = load_model(paths.MODEL)
    rows = invalid = 0
    output = Path(output_path)
    suffix = ".csv" if output.suffix.lower() == ".csv" else ".parquet"
    with atomic_path(output, suffix=suffix) as tmp:
        writer = _PredictionWriter(tmp, classes=spec.classes)
        try:
            for chunk in read_chunks(
                input_path,
                params=params.collect.model_copy(update={"max_rows": None}),
                chunk_rows=params.predict.batch_rows,
                optional_column=spec.target,
            ):
                try:
                    batch = predict_frame(
                        chunk,
                        schema=schema,
                        spec=spec,
                        model=model,
                        missing_tokens=params.prepare.missing_tokens,
                    )
                except PipelineError as exc:
                    raise PipelineError(f"{input_path}: {exc.message}", exc.details) from None
                bad = batch["error"].notna().to_numpy()
                if bad.any() and params.predict.on_invalid == "fail":
                    reasons = [
                        f"row {rows + i}: {reason}"
                        for i, reason in zip(np.flatnonzero(bad), batch["error"][bad], strict=True)
                    ]
                    shown = reasons[:MAX_REASONS_SHOWN]
                    if len(reasons) > len(shown):
                        shown.append(f"... and {len(reasons) - len(shown)} more")
                    raise PipelineError(
                        f"{input_path}: {len(reasons)} invalid row(s) and predict.on_invalid "
                        "is fail; nothing written",
                        shown,
                    )
                batch.insert(0, "row", np.arange(rows, rows + len(batch), dtype="int64"))
                writer.write(batch)
                rows += len(batch)
                invalid += int(bad.sum())
        finally:
            writer.close()
    seconds = time.perf_counter() - start
    say(
        "predict",
        f"{rows:,} rows ({rows - invalid:,} predicted, {invalid:,} invalid) in {seconds:.1f} s, "
        f"{rows / max(seconds, 1e-9):,.0f} rows/s -> {output}",
    )


def export_saved_model(model_path: str | Path, output: str | Path) -> None:
    """Write the model as a TensorFlow SavedModel (signature `serve`: features -> probability)."""
    import shutil

    model = load_model(model_path)
    output = Path(output)
    tmp = output.with_name(f".tmp-{output.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        if output.exists():
            shutil.rmtree(output)
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say("export", f"SavedModel of {model_path} -> {output}")
