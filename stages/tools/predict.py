"""predict: use the trained model on new raw rows.

predict reads raw rows in any format collect reads, on their own terms (`new_rows_params`:
format, encoding, delimiter, header and number marks from the file itself), with or
without the target column, in any column order, `predict.batch_rows` rows at a time so
memory stays bounded (CSV, Parquet and JSON alike).
Each batch goes through the training path (stages/data/transform.py): clean, validate against
the schema without the target and without its vocabularies, encode, then the network in
models/network.keras, on Keras's numpy backend (no TensorFlow start). Columns the model
does not use are ignored; a category outside a vocabulary is predicted as unknown with a
warning on its row; invalid rows get their reason instead of a prediction
(`predict.on_invalid: skip`) or stop the command with every reason and no output (`fail`).
The output is written to a temporary file and renamed into place: one row per input row,
in input order; beside it, `<stem>.drift.json` compares the batch with the train split
(stages/data/drift.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from stages.common import paths
from stages.common.config import CollectParams, Params
from stages.common.errors import PipelineError
from stages.common.io import atomic_path, read_json, say, write_json
from stages.data.drift import DriftCounter
from stages.data.encoding import EncodingSpec, to_inputs, value_column
from stages.data.schema import load_schema
from stages.data.sniff import open_sample, sniff_text
from stages.data.sources import file_format, read_batches
from stages.data.transform import clean_frame, encode_features, unparsed_dates
from stages.data.validation import row_reasons, validate_frame
from stages.model.build import model_vocabularies
from stages.model.calibration import decide
from stages.model.files import load_model
from stages.model.head import decision_threshold
from stages.model.inference import class_probabilities, predict_values

MAX_REASONS_SHOWN = 10


def feature_schema(schema: pa.DataFrameSchema, *, target: str) -> pa.DataFrameSchema:
    """The schema of rows to predict: the training schema without its target column, and
    without the vocabularies (`isin`) of the categories: an unseen category is not an
    invalid row but takes the out-of-vocabulary path, with a warning."""
    schema = schema.remove_columns([target]) if target in schema.columns else schema
    updates = {
        name: {"checks": [check for check in column.checks if check.name != "isin"]}
        for name, column in schema.columns.items()
        if any(check.name == "isin" for check in column.checks)
    }
    return schema.update_columns(updates) if updates else schema


def unseen_warnings(
    clean: pd.DataFrame,
    encoded: pd.DataFrame,
    *,
    spec: EncodingSpec,
    vocabularies: dict[str, list[str]],
) -> tuple[dict, dict[str, int]]:
    """For each row (by index label) with a category outside the model's vocabulary (the
    schema's for a listed category, the one learned from train rows for an embedded one),
    a warning naming each; and the count of such values per column."""
    masks = {  # a listed category outside the schema's vocabulary encodes to -1
        feature.name: clean[feature.name].notna() & (encoded[value_column(feature.name)] < 0)
        for feature in spec.features
        if feature.kind == "categorical"
    }
    for name, values in vocabularies.items():
        column = clean[name]
        masks[name] = column.notna() & ~column.astype("string").isin(values)
    counts = {name: int(mask.sum()) for name, mask in masks.items() if mask.any()}
    notes: dict = {}
    for name in counts:
        unseen = clean.loc[masks[name].to_numpy(), name]
        for row, value in unseen.items():
            note = f"{name}: unseen category {str(value)!r}, treated as unknown"
            notes[row] = f"{notes[row]}; {note}" if row in notes else note
    return notes, counts


def _sparse_text(texts: dict, rows: int) -> pd.arrays.StringArray:
    """A text column of `rows` rows, missing except at the positions `texts` gives."""
    column = np.full(rows, None, dtype=object)
    if texts:
        column[np.fromiter(texts.keys(), dtype="int64")] = list(texts.values())
    return pd.array(column, dtype="string")


class Predictions(NamedTuple):
    table: pd.DataFrame  # one row per input row: predicted, probabilities, error, warning
    unseen: dict[str, int]  # values outside the model's vocabulary, per column
    encoded: pd.DataFrame  # the valid rows, encoded as prepare does (for drift)


def predict_frame(
    raw: pd.DataFrame,
    *,
    schema: pa.DataFrameSchema,
    spec: EncodingSpec,
    model,
    missing_tokens: list[str],
) -> Predictions:
    """Predictions for raw rows, one output row per input row in the same order, the
    count of unseen category values per column, and the valid rows encoded.

    `schema` is the feature schema (`feature_schema`); a target column in `raw` and any
    column the schema lacks are ignored; the columns may come in any order.
    """
    raw = raw.drop(columns=[spec.target], errors="ignore").reset_index(drop=True)
    raw = raw.drop(columns=[name for name in raw.columns if name not in schema.columns])
    clean = clean_frame(raw, missing_tokens=missing_tokens, schema=schema)
    bad_dates = unparsed_dates(raw, clean, missing_tokens=missing_tokens, schema=schema)
    validated, cases = validate_frame(clean, schema=schema, earlier=bad_dates)
    table_cases = cases[cases["index"].isna()]
    if not table_cases.empty:
        details = [
            f"{row.column}: {row.check} ({row.failure_case})" for row in table_cases.itertuples()
        ]
        raise PipelineError("the rows do not have the schema's columns", details)
    reasons = row_reasons(cases)
    if reasons:
        validated, _ = validate_frame(clean.drop(index=list(reasons)), schema=schema)
    vocabularies = model_vocabularies(model)
    features = encode_features(validated, spec=spec)
    warnings, unseen = unseen_warnings(validated, features, spec=spec, vocabularies=vocabularies)
    inputs = to_inputs(features, spec, vocabularies) if len(features) else None
    if spec.task == "regression":  # one predicted number per row
        values = np.full(len(raw), np.nan)
        if inputs is not None:
            values[features.index.to_numpy()] = predict_values(model, inputs)
        out = pd.DataFrame({"predicted": values})
    else:
        out = _class_predictions(model, features, inputs, spec=spec, rows=len(raw))
    out["error"] = _sparse_text(reasons, len(raw))
    out["warning"] = _sparse_text(warnings, len(raw))
    return Predictions(out, unseen, features)


def _class_predictions(model, features: pd.DataFrame, inputs, *, spec: EncodingSpec, rows: int):
    """Predicted class (at the model's decision threshold, for two classes) and class
    probabilities; NaN and no class for a row not in `features` (an invalid row)."""
    proba = np.full((rows, len(spec.classes)), np.nan)
    if inputs is not None:
        proba[features.index.to_numpy()] = class_probabilities(model, inputs)[0]
    names = np.asarray(spec.classes, dtype=object)
    labels = decide(np.nan_to_num(proba), decision_threshold(model))
    predicted = np.where(np.isnan(proba[:, 0]), None, names[labels])
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
        fields += [("error", pa_arrow.string()), ("warning", pa_arrow.string())]
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


def new_rows_params(
    path: str | Path,
    training: CollectParams,
    *,
    columns: list[str],
    header: bool | None = None,
) -> CollectParams:
    """How to read a file of new rows: on its own terms, not the training source's. The
    format comes from its name (else as collect.format says); a text file's encoding,
    delimiter, spaces and number marks are sniffed as infer-schema sniffs them, and its
    first line is a header when it names the schema's `columns` (`header` True or False
    overrides); a file without one has the training columns in their order."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        kind = file_format(path, "auto")
    except PipelineError:
        kind = file_format(path, training.format)
    base = training.model_copy(update={"max_rows": None, "format": kind})
    if kind != "csv":
        return base.model_copy(update={"header": True, "names": None})
    sniffed = sniff_text(open_sample(path))
    if header is None:
        named = sum(field in columns for field in sniffed["first_row"])
        header = named >= max(1, len(sniffed["first_row"]) // 2)
    names = None if header else (training.names or columns)
    na_values = sorted(set(training.na_values) | set(sniffed["na_values"]))
    return base.model_copy(
        update={
            "header": header,
            "names": names,
            "delimiter": sniffed["delimiter"],
            "encoding": sniffed["encoding"],
            "skip_initial_space": sniffed["skip_initial_space"],
            "na_values": na_values,
            "decimal": sniffed["decimal"],
            "thousands": sniffed["thousands"],
        }
    )


@dataclass
class _Tally:
    """What the batches predicted so far add up to; drift is None without a train profile."""

    drift: DriftCounter | None
    rows: int = 0
    invalid: int = 0
    unseen: Counter[str] = dataclasses.field(default_factory=Counter)
    extra: list[str] | None = None  # the columns the model does not use, from the first batch

    def add(self, predictions: Predictions, invalid: int) -> None:
        self.rows += len(predictions.table)
        self.invalid += invalid
        self.unseen.update(predictions.unseen)
        if self.drift is not None:
            self.drift.add(predictions.encoded)


def run(params: Params, *, input_path: str, output_path: str, header: bool | None = None) -> None:
    """The predict command."""
    start = time.perf_counter()
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    declared = load_schema(params.dataset.schema_path)
    schema = feature_schema(declared, target=spec.target)
    read_params = new_rows_params(
        input_path, params.collect, columns=list(declared.columns), header=header
    )
    model = load_model(paths.NETWORK)  # the rows are cleaned and encoded here
    profile = Path(paths.PROFILE)
    tally = _Tally(DriftCounter(read_json(profile)) if profile.is_file() else None)
    output = Path(output_path)
    suffix = ".csv" if output.suffix.lower() == ".csv" else ".parquet"
    with atomic_path(output, suffix=suffix) as tmp:
        writer = _PredictionWriter(tmp, classes=spec.classes)
        try:
            for chunk in read_batches(
                input_path,
                params=read_params,
                chunk_rows=params.predict.batch_rows,
                optional_column=spec.target,
            ):
                if tally.extra is None:
                    tally.extra = [
                        str(name)
                        for name in chunk.columns
                        if name not in schema.columns and name != spec.target
                    ]
                    if tally.extra:
                        names = ", ".join(tally.extra)
                        say("predict", f"ignoring column(s) the model does not use: {names}")
                try:
                    predictions = predict_frame(
                        chunk,
                        schema=schema,
                        spec=spec,
                        model=model,
                        missing_tokens=params.prepare.missing_tokens,
                    )
                except PipelineError as exc:
                    hint = _header_hint(read_params) if tally.rows == 0 else []
                    raise PipelineError(
                        f"{input_path}: {exc.message}", [*exc.details, *hint]
                    ) from None
                bad = _checked_errors(predictions.table, params, input_path, first=tally.rows)
                batch = predictions.table
                batch.insert(
                    0, "row", np.arange(tally.rows, tally.rows + len(batch), dtype="int64")
                )
                writer.write(batch)
                tally.add(predictions, invalid=bad)
        finally:
            writer.close()
    _report(tally, params, output=output, seconds=time.perf_counter() - start)


def _header_hint(read_params: CollectParams) -> list[str]:
    """What to try when a CSV's first batch fails: the other reading of its first line."""
    if read_params.format != "csv":
        return []
    if read_params.header:
        return ["the first line was read as a header: --no-header if it holds data"]
    return ["the first line was read as data: --header if it names the columns"]


def _checked_errors(table: pd.DataFrame, params: Params, input_path: str, *, first: int) -> int:
    """The batch's invalid rows; with predict.on_invalid fail, a PipelineError that gives
    each one's reason (rows numbered from `first`)."""
    bad = table["error"].notna().to_numpy()
    if bad.any() and params.predict.on_invalid == "fail":
        reasons = [
            f"row {first + i}: {reason}"
            for i, reason in zip(np.flatnonzero(bad), table["error"][bad], strict=True)
        ]
        shown = reasons[:MAX_REASONS_SHOWN]
        if len(reasons) > len(shown):
            shown.append(f"... and {len(reasons) - len(shown)} more")
        raise PipelineError(
            f"{input_path}: {len(reasons)} invalid row(s) and predict.on_invalid "
            "is fail; nothing written",
            shown,
        )
    return int(bad.sum())


def _report(tally: _Tally, params: Params, *, output: Path, seconds: float) -> None:
    """The drift report beside the output, the warnings, and the closing line."""
    if tally.drift is not None:
        threshold = params.predict.drift_threshold
        report = tally.drift.summary(threshold=threshold, unseen=dict(tally.unseen))
        report_path = output.with_name(f"{output.stem}.drift.json")
        write_json(report, report_path)
        for name in report["drifted"]:
            say(
                "predict",
                f"warning: column '{name}' drifted from the train split (PSI "
                f"{report['columns'][name]['psi']:.3f} > predict.drift_threshold {threshold})",
            )
        say("predict", f"drift against the train split -> {report_path}")
    if tally.unseen:
        counts = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.unseen.items()))
        say(
            "predict",
            f"warning: unseen categories, predicted as unknown (see the warning column): {counts}",
        )
    rows, invalid = tally.rows, tally.invalid
    say(
        "predict",
        f"{rows:,} rows ({rows - invalid:,} predicted, {invalid:,} invalid) in {seconds:.1f} s, "
        f"{rows / max(seconds, 1e-9):,.0f} rows/s -> {output}",
    )
