"""Permutation importance per raw column, and metrics per slice."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from stages.data.encoding import EncodingSpec, FeatureSpec, to_inputs
from stages.data.transform import encode_features
from stages.evaluation.importance import (
    MIN_SLICE_ROWS,
    column_groups,
    permutation_importance,
    slice_labels,
    slice_metrics,
)

SPEC = EncodingSpec(
    target="label",
    classes=["no", "yes"],
    features=[
        FeatureSpec(name="signal", kind="numeric", nullable=True),
        FeatureSpec(name="noise", kind="categorical", nullable=False, vocabulary=["a", "b", "c"]),
        FeatureSpec(name="when", kind="datetime", nullable=False),
    ],
)


def _table(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "signal": signal,
            "noise": rng.choice(["a", "b", "c"], size=rows),
            "when": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 1500, rows), unit="D"),
        }
    )
    return frame, (signal > 0).astype(int)  # the label is decided by `signal` alone


def test_groups_hold_every_encoded_column_of_a_raw_column():
    groups = column_groups(SPEC)
    assert groups["signal"] == ([0, 1], [])  # the value and its missing indicator
    assert groups["noise"] == ([2, 3, 4], [])  # the one-hot group
    assert groups["when"] == ([5, 6, 7, 8, 9], [])  # the date's parts


def test_the_deciding_column_matters_and_the_noise_does_not():
    train, y_train = _table(2000, seed=0)
    test, y_test = _table(1000, seed=1)
    x_train = to_inputs(encode_features(train, spec=SPEC), SPEC, {})
    x_test = to_inputs(encode_features(test, spec=SPEC), SPEC, {})
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    table = permutation_importance(
        model.predict_proba, x_test, y_test, spec=SPEC, repeats=5, max_rows=800, seed=0
    )
    assert table["column"].tolist()[0] == "signal"
    importance = table.set_index("column")["importance"]
    assert importance["signal"] > 0.3  # ROC AUC falls from about 1 towards 0.5
    assert abs(importance["noise"]) < 0.01 and abs(importance["when"]) < 0.01
    again = permutation_importance(
        model.predict_proba, x_test, y_test, spec=SPEC, repeats=5, max_rows=800, seed=0
    )
    pd.testing.assert_frame_equal(table, again)  # seeded


def test_a_slice_the_model_gets_wrong_is_the_weakest():
    frame, _ = _table(600, seed=2)
    frame.loc[:5, "signal"] = np.nan
    encoded = encode_features(frame, spec=SPEC)
    groups = slice_labels(encoded, SPEC, "noise")
    right = (groups != "c").to_numpy().astype(float)  # the model fails every `c` row
    result = slice_metrics(
        groups, right, metric="accuracy", lower_is_better=False, resamples=500, level=0.95, seed=0
    )
    by_value = {group["value"]: group for group in result["groups"]}
    assert by_value["c"]["accuracy"] == 0 and by_value["a"]["accuracy"] == 1
    assert sum(group["rows"] for group in result["groups"]) == 600
    gap = result["largest_gap"]
    assert gap["worst"] == "c" and gap["best"] in {"a", "b"} and gap["gap"] == 1.0
    numbers = slice_labels(encoded, SPEC, "signal")
    assert (numbers == "(missing)").sum() == 6 and numbers.nunique() == 5  # quartiles + missing
    years = slice_labels(encoded, SPEC, "when")
    assert set(years) == {"2020", "2021", "2022", "2023", "2024"}


def test_a_group_too_small_is_shown_but_not_ranked():
    groups = pd.Series(["big"] * 100 + ["tiny"] * (MIN_SLICE_ROWS - 1))
    right = np.r_[np.ones(100), np.zeros(MIN_SLICE_ROWS - 1)]
    result = slice_metrics(
        groups, right, metric="accuracy", lower_is_better=False, resamples=200, level=0.95, seed=0
    )
    assert [group["ranked"] for group in result["groups"]] == [True, False]
    assert result["largest_gap"] is None


def test_errors_rank_the_other_way():
    groups = pd.Series(["a"] * 50 + ["b"] * 50)
    errors = np.r_[np.full(50, 1.0), np.full(50, 3.0)]
    result = slice_metrics(
        groups, errors, metric="mae", lower_is_better=True, resamples=200, level=0.95, seed=0
    )
    assert result["largest_gap"] == {"worst": "b", "best": "a", "gap": pytest.approx(2.0)}
