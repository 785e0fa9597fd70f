"""Shared fixtures: a tiny schema and tiny in-memory tables shaped like the Adult data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stages.data.preparation import spec_from_schema
from stages.data.schema import load_schema

# The pipeline's stages, in the order dvc.yaml runs them.
STAGES = ["collect", "validate", "prepare", "split", "baselines", "train", "evaluate"]
REPO = Path(__file__).resolve().parents[1]

TINY_SCHEMA = """
schema_type: dataframe
columns:
  age:
    dtype: int64
    nullable: false
    checks:
      in_range: {min_value: 0, max_value: 120}
  hours:
    dtype: float64
    nullable: true
    checks:
      greater_than_or_equal_to: 0
  color:
    dtype: str
    nullable: true
    checks:
      isin: [red, green, blue]
  id:
    dtype: str
    nullable: false
  label:
    dtype: str
    nullable: false
    checks:
      isin: ["no", "yes"]
coerce: true
strict: true
metadata:
  non_features:
    id: an identifier, not a property of the row
"""


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(TINY_SCHEMA, encoding="utf-8")
    return path


@pytest.fixture
def schema(schema_file: Path):
    return load_schema(schema_file)


@pytest.fixture
def spec(schema):
    return spec_from_schema(schema, target="label")


@pytest.fixture
def raw_frame() -> pd.DataFrame:
    """Five rows as collect would read them: one missing number, one missing category."""
    return pd.DataFrame(
        {
            "age": [25, 40, 33, 58, 19],
            "hours": [40.0, None, 20.5, 60.0, 10.0],
            "color": ["red", "blue", None, "green", "red"],
            "id": ["a", "b", "c", "d", "e"],
            "label": ["no", "yes", "no", "yes", "no"],
        }
    )


def labelled_frame(rows: int, *, positive_every: int = 4, seed: int = 0) -> pd.DataFrame:
    """A prepared-looking table: row_id, two features and a 0/1 target."""
    import numpy as np

    rng = np.random.default_rng(seed)
    label = (np.arange(rows) % positive_every == 0).astype("int32")
    return pd.DataFrame(
        {
            "row_id": np.arange(rows, dtype="int64"),
            "x1": rng.normal(size=rows).astype("float32") + label,
            "x2": rng.normal(size=rows).astype("float32"),
            "label": label,
        }
    )
