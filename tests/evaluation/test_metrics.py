"""Bootstrap intervals: weighted metrics equal scikit-learn's, intervals hold and narrow."""

import numpy as np
import pytest

from stages.evaluation.metrics import (
    bootstrap,
    classification_metrics,
    expected_calibration_error,
    interval,
    regression_metrics,
    resample_counts,
)


def _classes(rows: int, n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, rows)
    logits = np.round(rng.normal(size=(rows, n_classes)) + 1.5 * np.eye(n_classes)[y], 1)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("n_classes", [2, 4])
def test_one_resample_of_every_row_once_equals_scikit_learn(n_classes, monkeypatch):
    y, proba = _classes(3000, n_classes)
    monkeypatch.setattr(
        "stages.evaluation.metrics.resample_counts",
        lambda rows, resamples, seed: iter([np.ones((1, rows), dtype=np.int16)]),
    )
    samples = bootstrap(y, {"m": (proba, None)}, task="classification", resamples=1, seed=0)
    expected = classification_metrics(y, proba)
    assert set(samples["m"]) == set(expected)
    for name, values in samples["m"].items():
        assert values[0] == pytest.approx(expected[name], abs=1e-6), name


def test_regression_resample_equals_scikit_learn(monkeypatch):
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    predicted = y + rng.normal(scale=0.5, size=500)
    monkeypatch.setattr(
        "stages.evaluation.metrics.resample_counts",
        lambda rows, resamples, seed: iter([np.ones((1, rows), dtype=np.int16)]),
    )
    samples = bootstrap(y, {"m": (predicted, None)}, task="regression", resamples=1, seed=0)
    for name, value in regression_metrics(y, predicted).items():
        assert samples["m"][name][0] == pytest.approx(value, abs=1e-6), name


def test_resamples_draw_every_row_count_with_replacement():
    chunks = list(resample_counts(50, 1000, seed=3))
    counts = np.concatenate(chunks)
    assert counts.shape == (1000, 50) and (counts.sum(axis=1) == 50).all()
    assert counts.mean() == pytest.approx(1.0) and counts.max() > 1  # with replacement
    again = np.concatenate(list(resample_counts(50, 1000, seed=3)))
    np.testing.assert_array_equal(counts, again)  # seeded


def test_interval_on_a_known_prediction_set_holds_the_value_and_narrows_with_rows():
    """Accuracy of a classifier right on 80% of rows: the 95% interval holds 0.8 and its
    width shrinks about as 1/sqrt(rows) (the binomial standard error)."""
    widths = {}
    for rows in (500, 8000):
        y = np.zeros(rows, dtype=int)
        right = np.arange(rows) % 5 != 0  # exactly 80% right
        proba = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
        samples = bootstrap(y, {"m": (proba, None)}, task="classification", resamples=1000, seed=0)
        low, high = interval(samples["m"]["accuracy"], 0.95)
        assert low < 0.8 < high
        expected = 2 * 1.96 * np.sqrt(0.8 * 0.2 / rows)
        assert high - low == pytest.approx(expected, rel=0.15)
        widths[rows] = high - low
    assert widths[8000] < widths[500] / 3


def test_paired_resamples_give_the_difference_between_two_models_its_own_interval():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 2000)
    p = 1 / (1 + np.exp(-(rng.normal(size=2000) + 2 * y - 1)))
    proba = np.column_stack([1 - p, p])
    worse = 0.5 * proba + 0.25  # the same ranking, less sure: a higher log loss
    samples = bootstrap(
        y, {"a": (proba, None), "b": (worse, None)}, task="classification", resamples=500, seed=0
    )
    np.testing.assert_allclose(samples["a"]["roc_auc"], samples["b"]["roc_auc"])
    low, high = interval(samples["b"]["log_loss"] - samples["a"]["log_loss"], 0.95)
    assert 0 < low < high


def test_calibration_error_of_honest_and_overconfident_probabilities():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.5, 1.0, 20000)
    y = (rng.uniform(size=p.size) > p).astype(int)  # class 0 happens with probability p
    honest = np.column_stack([p, 1 - p])
    assert expected_calibration_error(y, honest) < 0.02
    sure = np.column_stack([np.full(p.size, 0.99), np.full(p.size, 0.01)])
    assert expected_calibration_error(y, sure) == pytest.approx(0.99 - (y == 0).mean(), abs=1e-9)


def test_a_large_split_is_resampled_from_a_sample_and_narrowed_to_its_size():
    """400,000 rows, 80% right: resampling 20,000 of them and narrowing by sqrt(1/20) gives
    the interval of all 400,000 rows, centred on their value."""
    rows = 400_000
    y = np.zeros(rows, dtype=int)
    right = np.arange(rows) % 5 != 0
    proba = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    samples = bootstrap(
        y, {"m": (proba, None)}, task="classification", resamples=1000, seed=0, max_rows=20_000
    )
    low, high = interval(samples["m"]["accuracy"], 0.95)
    assert low < 0.8 < high
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.8 * 0.2 / rows), rel=0.15)
    assert np.median(samples["m"]["accuracy"]) == pytest.approx(0.8, abs=2e-4)


def test_slices_of_many_rows_are_narrowed_the_same_way():
    from stages.evaluation.metrics import mean_samples

    values = (np.arange(300_000) % 4 == 0).astype(float)  # a mean of 0.25
    samples = mean_samples(values, resamples=1000, seed=0, max_rows=10_000)
    low, high = interval(samples, 0.95)
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.25 * 0.75 / 300_000), rel=0.15)
    assert low < 0.25 < high
