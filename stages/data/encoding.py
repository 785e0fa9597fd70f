"""The encoding spec: how each raw column becomes numbers, on disk and at the model's input.

prepare derives it from the schema alone (never from data) and writes it as JSON; train and
evaluate read it to know the task, which columns are features and of which kind, and the
classes (none for regression, where the target stays a number).

Names on disk never collide with the user's: in the prepared table and the splits every
column made from a user's column carries a prefix (`x:` its value, `m:` its missing
indicator, `x:<part>:` a part of a date), and the pipeline's own columns (`row_id`,
`target`) have none. Feature kinds:

- numeric: the number as float32, plus a missing indicator when the schema allows missing;
- categorical: a vocabulary the schema declares (`isin`); one integer column of codes on
  disk (-1 for missing or unknown), expanded to one-hot columns at the model's input;
- embedded: a high-cardinality category without a declared vocabulary; the cleaned text on
  disk, a frequency-capped vocabulary learned by train from train rows only (saved inside
  the model, with an out-of-vocabulary code 0) and a learned embedding;
- datetime: its year, month, day, weekday and hour as numbers (plus a missing indicator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from stages.common.errors import PipelineError
from stages.common.io import read_json, write_json

ROW_ID = "row_id"
TARGET = "target"
DATE_PARTS = ("year", "month", "day", "weekday", "hour")
# How infer-schema's reason for setting a column aside as a leak begins.
LEAK_REASON = "suspected target leak"


def value_column(name: str) -> str:
    """The on-disk column of a user's feature column."""
    return f"x:{name}"


def missing_column(name: str) -> str:
    """The on-disk missing indicator of a user's feature column."""
    return f"m:{name}"


def part_column(name: str, part: str) -> str:
    """The on-disk column of one part (year, month, ...) of a user's date column."""
    return f"x:{part}:{name}"


def free_name(base: str, taken) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first that is not among `taken`, so a
    column the pipeline adds beside the user's columns never takes one of their names."""
    taken = set(map(str, taken))
    name, number = base, 0
    while name in taken:
        number += 1
        name = f"{base}_{number}"
    return name


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
    kind: Literal["numeric", "categorical", "embedded", "datetime"]
    nullable: bool
    vocabulary: list[str] | None = None
    date_format: str | None = None  # a date written in a fixed strptime format

    @property
    def indicator(self) -> str | None:
        """The on-disk missing indicator of a number or date that may be missing; None
        otherwise (a category's missing value has its own code)."""
        if self.kind in ("numeric", "datetime") and self.nullable:
            return missing_column(self.name)
        return None

    def numeric_parts(self) -> list[str]:
        """The on-disk float columns of a numeric or date feature (no indicator)."""
        if self.kind == "numeric":
            return [value_column(self.name)]
        if self.kind == "datetime":
            return [part_column(self.name, part) for part in DATE_PARTS]
        return []


class EncodingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    task: Literal["classification", "regression"] = "classification"
    classes: list[str]
    features: list[FeatureSpec]
    excluded: dict[str, str] = {}

    @property
    def columns(self) -> list[EncodedColumn]:
        """The model's numeric input columns in order: per feature, its numbers then its
        indicator, or its one-hot columns. Embedded categories are a second input."""
        out: list[EncodedColumn] = []
        for feature in self.features:
            for name in feature.numeric_parts():
                out.append(EncodedColumn(name=name, source=feature.name, kind="numeric"))
            if feature.indicator:
                out.append(
                    EncodedColumn(name=feature.indicator, source=feature.name, kind="missing")
                )
            if feature.kind == "categorical":
                out.extend(
                    EncodedColumn(
                        name=f"{value_column(feature.name)}={value}",
                        source=feature.name,
                        kind="onehot",
                        value=value,
                    )
                    for value in feature.vocabulary or []
                )
        return out

    @property
    def feature_columns(self) -> list[str]:
        """The model's numeric input columns, in order."""
        return [column.name for column in self.columns]

    @property
    def table_columns(self) -> list[str]:
        """The encoded feature columns on disk: a category is one column of codes, an
        embedded category one column of text."""
        names: list[str] = []
        for feature in self.features:
            names.extend(feature.numeric_parts() or [value_column(feature.name)])
            if feature.indicator:
                names.append(feature.indicator)
        return names

    @property
    def numeric_columns(self) -> list[str]:
        """The encoded columns whose scale is learned (from train rows only)."""
        return [column.name for column in self.columns if column.kind == "numeric"]

    @property
    def indicators(self) -> dict[str, str | None]:
        """Each numeric encoded column (a number, a part of a date) and the missing
        indicator of its feature (None when it cannot be missing)."""
        return {
            name: feature.indicator for feature in self.features for name in feature.numeric_parts()
        }

    @property
    def embedded(self) -> list[FeatureSpec]:
        """The high-cardinality categories, in order: the model's second input."""
        return [feature for feature in self.features if feature.kind == "embedded"]

    def save(self, path: str | Path) -> None:
        payload = self.model_dump()
        for feature in payload["features"]:
            if feature["date_format"] is None:
                del feature["date_format"]
        payload["encoded_columns"] = [column.model_dump() for column in self.columns]
        write_json(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> EncodingSpec:
        payload = read_json(path)
        payload.pop("encoded_columns", None)
        return cls.model_validate(payload)


def suspected_leaks(spec: EncodingSpec) -> dict[str, str]:
    """The columns set aside as suspected target leaks, with the reason."""
    return {name: why for name, why in spec.excluded.items() if why.startswith(LEAK_REASON)}


def _require(frame: pd.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise PipelineError(
            f"the table lacks {len(missing)} encoded column(s) of the spec, e.g. {missing[:3]}; "
            "re-run prepare"
        )


def model_inputs(frame: pd.DataFrame, spec: EncodingSpec) -> np.ndarray:
    """The encoded table's numeric feature columns as the model's float32 input matrix,
    each category's codes expanded to one-hot columns (a code of -1 to all zeros)."""
    _require(frame, spec.table_columns)
    matrix = np.zeros((len(frame), len(spec.feature_columns)), dtype=np.float32)
    position = 0
    for feature in spec.features:
        if feature.kind in ("numeric", "datetime"):
            names = feature.numeric_parts() + ([feature.indicator] if feature.indicator else [])
            for name in names:  # column by column: no intermediate frame
                matrix[:, position] = frame[name].to_numpy(np.float32)
                position += 1
        elif feature.kind == "categorical":
            codes = frame[value_column(feature.name)].to_numpy()
            rows = np.flatnonzero(codes >= 0)
            matrix[rows, position + codes[rows]] = 1.0
            position += len(feature.vocabulary or [])
    return matrix


def learn_vocabulary(values: pd.Series, *, max_size: int, min_count: int) -> list[str]:
    """The most frequent values (at least `min_count` rows each), at most `max_size`, most
    frequent first (ties by value): the vocabulary of an embedded category. Learned from
    train rows only; every other value shares the out-of-vocabulary code 0."""
    counts = values.dropna().astype(str).value_counts()
    counts = counts[counts >= min_count]
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [value for value, _ in ordered[:max_size]]


def category_codes(
    frame: pd.DataFrame, spec: EncodingSpec, vocabularies: dict[str, list[str]]
) -> np.ndarray:
    """The embedded categories as int32 codes, one column each: 1 + the position in the
    learned vocabulary, 0 for a missing or out-of-vocabulary value."""
    names = [value_column(feature.name) for feature in spec.embedded]
    _require(frame, names)
    codes = np.zeros((len(frame), len(names)), dtype=np.int32)
    for index, feature in enumerate(spec.embedded):
        values = frame[value_column(feature.name)].astype("string")
        codes[:, index] = pd.Index(vocabularies[feature.name]).get_indexer(values) + 1
    return codes


def to_inputs(frame: pd.DataFrame, spec: EncodingSpec, vocabularies: dict[str, list[str]]):
    """What the model takes: the float32 matrix, or with embedded categories the pair
    (matrix, int32 codes)."""
    matrix = model_inputs(frame, spec)
    if not spec.embedded:
        return matrix
    return matrix, category_codes(frame, spec, vocabularies)


def take_rows(inputs, rows: np.ndarray):
    """The given rows of what `to_inputs` returns (a matrix, or a pair of them)."""
    if isinstance(inputs, tuple):
        return tuple(part[rows] for part in inputs)
    return inputs[rows]


def concat_inputs(parts: list):
    """Model inputs of several row ranges, one after another."""
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(group) for group in zip(*parts, strict=True))
    return np.concatenate(parts)


def targets(frame: pd.DataFrame, spec: EncodingSpec) -> np.ndarray:
    """Int class indices, or for regression float32 values of shape (rows, 1)."""
    if TARGET not in frame.columns:
        raise PipelineError(f"the table lacks the target column '{spec.target}'; re-run prepare")
    if spec.task == "regression":
        return frame[TARGET].to_numpy(np.float32).reshape(-1, 1)
    return frame[TARGET].to_numpy(dtype=np.int32)


def to_arrays(
    frame: pd.DataFrame, spec: EncodingSpec, vocabularies: dict[str, list[str]] | None = None
):
    """The prepared table as (model inputs, targets) for Keras."""
    return to_inputs(frame, spec, vocabularies or {}), targets(frame, spec)


def row_id_name(schema_columns) -> str:
    """The name of the row-number column validate adds and prepare reads: `row_id`, or a
    variant the schema does not use."""
    return free_name(ROW_ID, schema_columns)


def embedded_vocabularies(
    train: pd.DataFrame, spec: EncodingSpec, *, max_size: int, min_count: int
) -> dict[str, list[str]]:
    """The vocabulary of each embedded category, learned from train rows (train.max_vocabulary,
    train.min_category_rows): the network and the baselines code categories alike."""
    return {
        feature.name: learn_vocabulary(
            train[value_column(feature.name)], max_size=max_size, min_count=min_count
        )
        for feature in spec.embedded
    }
