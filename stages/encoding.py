"""The encoding spec: how each raw column becomes numbers, on disk and at the model's input.

prepare derives it from the schema alone (never from data) and writes it as JSON; train and
evaluate read it to know the task, which columns are features, which of them to scale, and
the classes (none for regression, where the target stays a number).

On disk (the prepared table and the splits) each categorical column stays one integer
column of codes (the position in the schema's vocabulary; -1 for a missing or unknown
category), so a wide vocabulary costs one column, not one per category. `model_inputs`
expands the codes to one-hot columns when the rows are handed to the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from stages.errors import PipelineError
from stages.io import read_json, write_json

ROW_ID = "row_id"


class EncodedColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    kind: Literal["numeric", "missing", "onehot"]
    value: str | None = None


class FeatureSpec(BaseModel):
    """One raw feature column as the schema declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["numeric", "categorical"]
    nullable: bool
    vocabulary: list[str] | None = None


class EncodingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    task: Literal["classification", "regression"] = "classification"
    classes: list[str]
    features: list[FeatureSpec]
    excluded: dict[str, str] = {}

    @property
    def columns(self) -> list[EncodedColumn]:
        """Encoded columns in table order: per feature, its value then its indicators."""
        out: list[EncodedColumn] = []
        for feature in self.features:
            if feature.kind == "numeric":
                out.append(EncodedColumn(name=feature.name, source=feature.name, kind="numeric"))
                if feature.nullable:
                    out.append(
                        EncodedColumn(
                            name=f"{feature.name}__missing", source=feature.name, kind="missing"
                        )
                    )
            else:
                out.extend(
                    EncodedColumn(
                        name=f"{feature.name}={value}",
                        source=feature.name,
                        kind="onehot",
                        value=value,
                    )
                    for value in feature.vocabulary or []
                )
        return out

    @property
    def feature_columns(self) -> list[str]:
        """The model's input columns, in order: numbers, indicators, one-hot categories."""
        return [column.name for column in self.columns]

    @property
    def table_columns(self) -> list[str]:
        """The encoded feature columns on disk: a category is one column of codes."""
        names: list[str] = []
        for feature in self.features:
            names.append(feature.name)
            if feature.kind == "numeric" and feature.nullable:
                names.append(f"{feature.name}__missing")
        return names

    @property
    def numeric_columns(self) -> list[str]:
        """The encoded columns whose scale is learned (from train rows only)."""
        return [column.name for column in self.columns if column.kind == "numeric"]

    def save(self, path: str | Path) -> None:
        payload = self.model_dump()
        payload["encoded_columns"] = [column.model_dump() for column in self.columns]
        write_json(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> EncodingSpec:
        payload = read_json(path)
        payload.pop("encoded_columns", None)
        return cls.model_validate(payload)


def model_inputs(frame: pd.DataFrame, spec: EncodingSpec) -> np.ndarray:
    """The encoded table's feature columns as the model's float32 input matrix, each
    category's codes expanded to one-hot columns (a code of -1 to all zeros)."""
    missing = [name for name in spec.table_columns if name not in frame.columns]
    if missing:
        raise PipelineError(
            f"the table lacks {len(missing)} encoded column(s) of the spec, e.g. {missing[:3]}; "
            "re-run prepare"
        )
    matrix = np.zeros((len(frame), len(spec.feature_columns)), dtype=np.float32)
    position = 0
    for feature in spec.features:
        if feature.kind == "numeric":
            names = [feature.name] + ([f"{feature.name}__missing"] if feature.nullable else [])
            matrix[:, position : position + len(names)] = frame[names].to_numpy(np.float32)
            position += len(names)
        else:
            codes = frame[feature.name].to_numpy()
            rows = np.flatnonzero(codes >= 0)
            matrix[rows, position + codes[rows]] = 1.0
            position += len(feature.vocabulary or [])
    return matrix


def to_arrays(frame: pd.DataFrame, spec: EncodingSpec) -> tuple[np.ndarray, np.ndarray]:
    """The prepared table as (float32 model inputs, targets) for Keras: int class indices,
    or for regression float32 values of shape (rows, 1)."""
    if spec.target not in frame.columns:
        raise PipelineError(f"the table lacks the target column '{spec.target}'; re-run prepare")
    if spec.task == "regression":
        return model_inputs(frame, spec), frame[spec.target].to_numpy(np.float32).reshape(-1, 1)
    return model_inputs(frame, spec), frame[spec.target].to_numpy(dtype=np.int32)
