"""Scoring raw rows with the trained network: one code path for `stages predict` and
`stages serve`.

A batch of raw rows (any column order, the target column optional) is cleaned, validated
against the schema without the target and without its vocabularies, encoded as prepare
encodes, and scored; each row gets its prediction, or the reason it is invalid, and a
warning for a category outside the model's vocabulary (treated as unknown). `Predictor`
holds what that needs, loaded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa

from stages.common import paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.data.encoding import EncodingSpec, to_inputs, value_column
from stages.data.schema import load_schema
from stages.data.transform import clean_frame, encode_features, unparsed_values
from stages.data.validation import passes_quickly, row_reasons, validate_frame
from stages.model.build import model_vocabularies
from stages.model.calibration import decide
from stages.model.files import load_model
from stages.model.head import decision_threshold
from stages.model.inference import class_probabilities, predict_values


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
        feature.name: clean[feature.name].notna().to_numpy()
        & (encoded[value_column(feature.name)].to_numpy() < 0)
        for feature in spec.features
        if feature.kind == "categorical"
    }
    for name, values in vocabularies.items():
        column = clean[name]
        masks[name] = (column.notna() & ~column.astype("string").isin(values)).to_numpy()
    counts = {name: int(mask.sum()) for name, mask in masks.items() if mask.any()}
    notes: dict = {}
    for name in counts:
        unseen = clean.loc[masks[name], name]
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
    unreadable = unparsed_values(raw, clean, missing_tokens=missing_tokens, schema=schema)
    if unreadable.empty and passes_quickly(clean, schema):
        validated, cases = clean, unreadable
    else:
        validated, cases = validate_frame(clean, schema=schema, earlier=unreadable)
    table_cases = cases[cases["index"].isna()]
    if not table_cases.empty:
        absent = table_cases.loc[table_cases["check"] == "column_in_dataframe", "failure_case"]
        if len(absent):
            raise PipelineError(
                f"the rows lack {len(absent)} column(s) the model needs: " + ", ".join(absent)
            )
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


def invalid_rows(table: pd.DataFrame, *, first: int = 0) -> list[str]:
    """Each invalid row of a predictions table with its reason, `row <n>: <reason>`, the
    rows numbered from `first`."""
    errors = table["error"]
    bad = errors.notna().to_numpy()
    return [
        f"row {first + index}: {reason}"
        for index, reason in zip(np.flatnonzero(bad), errors[bad], strict=True)
    ]


@dataclass(frozen=True)
class Predictor:
    """What scoring raw rows needs, loaded once: the encoding spec, the schema the rows
    are checked against (`feature_schema`), the declared columns, the network (which
    cleans and encodes nothing itself) and the missing-value tokens."""

    spec: EncodingSpec
    schema: pa.DataFrameSchema
    columns: list[str]  # the declared schema's columns, the target among them
    model: object
    missing_tokens: list[str]

    @classmethod
    def load(cls, params: Params, *, network: str | Path = paths.NETWORK) -> Predictor:
        """The predictor of the trained project: models/encoding.json, the schema in
        params and `network` (models/network.keras)."""
        spec = EncodingSpec.load(paths.ENCODING_SPEC)
        declared = load_schema(params.dataset.schema_path)
        return cls(
            spec=spec,
            schema=feature_schema(declared, target=spec.target),
            columns=list(declared.columns),
            model=load_model(network),
            missing_tokens=list(params.prepare.missing_tokens),
        )

    def empty_predictions(self) -> pd.DataFrame:
        """The predictions' columns and dtypes, without rows."""
        predicted = "string" if self.spec.classes else "float64"
        columns = {"predicted": pd.Series(dtype=predicted)}
        for label in self.spec.classes:
            columns[f"probability_{label}"] = pd.Series(dtype="float64")
        columns["error"] = pd.Series(dtype="string")
        columns["warning"] = pd.Series(dtype="string")
        return pd.DataFrame(columns)

    def warm_up(self) -> None:
        """Score one row of zeros, so the network's first request (and several at once) finds
        its predict functions built."""
        zeros = [
            np.zeros((1, *tensor.shape[1:]), dtype=tensor.dtype) for tensor in self.model.inputs
        ]
        features = zeros[0] if len(zeros) == 1 else zeros
        if self.spec.classes:
            class_probabilities(self.model, features)
        else:
            predict_values(self.model, features)

    def predict(self, raw: pd.DataFrame) -> Predictions:
        """`predict_frame` with this predictor's schema, spec, network and tokens."""
        return predict_frame(
            raw,
            schema=self.schema,
            spec=self.spec,
            model=self.model,
            missing_tokens=self.missing_tokens,
        )
