"""Tables of one kind of feature only (categories, numbers, dates, embedded categories)
train, export and predict: the numeric core and the raw-column model take an empty
numeric or code input where a table has none."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .helpers import run, shrunk_copy

pytestmark = pytest.mark.slow
ROWS = 600


def shape_table(shape: str, seed: int = 0) -> pd.DataFrame:
    """ROWS rows of one kind of feature, each a noisy sign of a yes/no label."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, ROWS)
    noise = rng.random((3, ROWS)) < 0.3
    if shape == "categories":
        columns = {
            f"c{i}": np.where(
                noise[i], rng.choice(["a", "b", "c"], ROWS), np.where(label, "a", "b")
            )
            for i in range(3)
        }
    elif shape == "numbers":
        columns = {f"n{i}": rng.normal(size=ROWS) + label for i in range(3)}
    elif shape == "dates":
        days = rng.integers(0, 700, ROWS) + np.where(noise[0], 0, label * 300)
        stamps = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
        columns = {"when": stamps.strftime("%Y-%m-%d"), "logged": stamps.strftime("%d.%m.%Y")}
    else:  # embedded: 60 values a column, more than infer-schema lists as categories
        codes = rng.integers(0, 30, (2, ROWS)) * 2 + np.where(
            noise[:2], rng.integers(0, 2, (2, ROWS)), label
        )
        columns = {f"e{i}": [f"v{code}" for code in codes[i]] for i in range(2)}
    return pd.DataFrame({**columns, "label": np.where(label, "yes", "no")})


@pytest.mark.parametrize("shape", ["categories", "numbers", "dates", "embedded"])
def test_a_table_of_one_kind_of_feature_trains_exports_and_predicts(tmp_path: Path, shape):
    repo = shrunk_copy(tmp_path / "repo")
    shape_table(shape).to_csv(repo / "table.csv", index=False)
    command = [sys.executable, "-m", "stages"]
    run(
        [
            *command,
            "infer-schema",
            "table.csv",
            "--target",
            "label",
            "--out",
            "schemas/t.yaml",
            "--update-params",
        ],
        repo,
    )
    schema = yaml.safe_load((repo / "schemas/t.yaml").read_text())
    kinds = {
        "categories": lambda column: "isin" in (column.get("checks") or {}),
        "numbers": lambda column: column["dtype"] == "float64",
        "dates": lambda column: column["dtype"] == "datetime64[ns]",
        "embedded": lambda column: column["dtype"] == "str" and not column.get("checks"),
    }
    features = {name: column for name, column in schema["columns"].items() if name != "label"}
    assert all(kinds[shape](column) for column in features.values()), features
    if shape == "dates":
        assert schema["metadata"]["date_formats"] == {"logged": "%d.%m.%Y"}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    params["evaluate"]["gates"] = {}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    run([*command, "export", "--output", "models/served"], repo)
    assert (repo / "models/served/saved_model.pb").is_file()
    shape_table(shape, seed=1).drop(columns=["label"]).to_csv(repo / "new.csv", index=False)
    run([*command, "predict", "new.csv", "--output", "predicted.csv"], repo)
    predicted = pd.read_csv(repo / "predicted.csv")
    assert len(predicted) == ROWS and predicted["error"].isna().all()
    assert set(predicted["predicted"]) <= {"yes", "no"}
    assert predicted["probability_yes"].between(0, 1).all()
