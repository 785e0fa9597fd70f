"""Metrics added up partition by partition equal scikit-learn's on the whole arrays."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from stages.evaluation.metrics import classification_metrics, regression_metrics
from stages.evaluation.tally import ClassTally, ValueTally, rounded


def predictions(rows: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    logits = rng.normal(size=(rows, classes)) + 1.5 * np.eye(classes)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba.astype("float32")


@pytest.mark.parametrize("classes", [2, 3])
def test_a_tally_of_parts_gives_the_metrics_of_the_whole(classes):
    y, proba = predictions(30_000, classes)
    labels = (proba[:, -1] > 0.3).astype(int) * (classes - 1)  # decided otherwise
    tally = ClassTally(classes)
    for part in np.array_split(np.arange(len(y)), 7):
        tally.add(y[part], proba[part], labels[part])
    whole = classification_metrics(y, proba, labels)
    added = rounded(tally.metrics())
    assert abs(added.pop("roc_auc") - whole.pop("roc_auc")) < 1e-4
    assert added == pytest.approx(whole, abs=2e-6)
    likeliest = classification_metrics(y, proba)
    assert rounded(tally.metrics(decided=False))["accuracy"] == likeliest["accuracy"]
    assert tally.rows == len(y)


def test_the_curves_from_histograms_follow_the_scores():
    y, proba = predictions(20_000, 2, seed=1)
    tally = ClassTally(2)
    tally.add(y, proba)
    pooled = tally.pooled()
    roc = pooled.roc()
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(pooled.auc(), abs=1e-6)
    curve = pooled.precision_recall()
    assert curve["recall"].iloc[0] == 1.0 and curve["threshold"].is_monotonic_increasing
    bins = pooled.reliability()
    observed, predicted = calibration_curve(y, proba[:, 1], n_bins=10, strategy="quantile")
    assert np.allclose(bins["observed_frequency"], observed, atol=0.01)
    assert np.allclose(bins["predicted_probability"], predicted, atol=0.01)


def test_a_regression_tally_gives_the_metrics_of_the_whole():
    rng = np.random.default_rng(2)
    y = rng.normal(1e4, 3, 50_000)  # a large mean: the spread must be merged with care
    predicted = y + rng.normal(0, 1, y.size)
    tally = ValueTally()
    for part in np.array_split(np.arange(y.size), 9):
        tally.add(y[part], predicted[part])
    assert rounded(tally.metrics()) == pytest.approx(regression_metrics(y, predicted), abs=2e-6)
    constant = ValueTally()
    constant.add(np.ones(5), np.ones(5))
    assert constant.metrics()["r2"] == 1.0
