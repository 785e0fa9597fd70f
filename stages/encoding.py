"""The encoding spec: how each raw column becomes numeric feature columns.

prepare derives it from the schema alone (never from data) and writes it as JSON; train and
evaluate read it to know which columns are features, which of them to scale, and the classes.
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
        return [column.name for column in self.columns]

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


def to_arrays(frame: pd.DataFrame, spec: EncodingSpec) -> tuple[np.ndarray, np.ndarray]:
    """The prepared table as (float32 features, int class indices) for Keras."""
    missing = [name for name in [*spec.feature_columns, spec.target] if name not in frame.columns]
    if missing:
        raise PipelineError(
            f"the table lacks {len(missing)} encoded column(s) of the spec, e.g. {missing[:3]}; "
            "re-run prepare"
        )
    features = frame[spec.feature_columns].to_numpy(dtype=np.float32)
    target = frame[spec.target].to_numpy(dtype=np.int32)
    return features, target
