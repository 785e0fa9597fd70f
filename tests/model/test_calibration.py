"""Temperature and Platt scaling, the decision threshold, and the model head that holds them."""

import numpy as np
import pytest

from stages.common.config import ThresholdParams
from stages.evaluation.metrics import classification_metrics
from stages.model.calibration import choose_threshold, decide, fit_calibration, probabilities


def _overconfident(rows: int = 20000, sharpness: float = 3.0, seed: int = 0):
    """Logits `sharpness` times too large for the true probabilities they came from."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(scale=1.5, size=rows)
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-true_logit))).astype(int)
    return (sharpness * true_logit)[:, None], y


def test_temperature_scaling_recovers_the_temperature_and_lowers_the_calibration_error():
    logits, y = _overconfident(sharpness=3.0)
    scale, shift = fit_calibration(logits, y, method="temperature")
    assert 1 / scale == pytest.approx(3.0, rel=0.05) and shift == [0.0]
    before = classification_metrics(y, probabilities(logits))
    after = classification_metrics(y, probabilities(logits, scale=scale, shift=shift))
    assert after["calibration_error"] < before["calibration_error"] / 3
    assert after["log_loss"] < before["log_loss"]
    assert after["roc_auc"] == before["roc_auc"] and after["accuracy"] == before["accuracy"]


def test_temperature_scaling_of_several_classes_keeps_the_most_probable_class():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    logits = 4 * (rng.normal(size=(3000, 3)) + np.eye(3)[y])
    scale, shift = fit_calibration(logits, y, method="temperature")
    assert scale < 1 and shift == [0.0, 0.0, 0.0]
    calibrated = probabilities(logits, scale=scale, shift=shift)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), logits.argmax(axis=1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)


def test_platt_scaling_also_fits_a_shift():
    logits, y = _overconfident(sharpness=2.0)
    scale, shift = fit_calibration(logits + 1.0, y, method="platt")  # logits shifted by 1
    assert scale == pytest.approx(0.5, rel=0.1)
    assert shift[0] == pytest.approx(-0.5, abs=0.1)
    with pytest.raises(ValueError, match="two classes"):
        fit_calibration(np.zeros((4, 3)), np.array([0, 1, 2, 0]), method="platt")


def test_none_leaves_the_logits_as_they_are():
    logits, y = _overconfident(rows=100)
    assert fit_calibration(logits, y, method="none") == (1.0, [0.0])


Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.6, 0.4, 0.55, 0.7, 0.9])


def test_threshold_rules_on_a_known_set():
    assert choose_threshold(Y, P, ThresholdParams()) == 0.5
    assert choose_threshold(Y, P, ThresholdParams(rule="fixed", value=0.3)) == 0.3
    # From 0.4: all 4 positives and 1 false positive: F1 8/9, balanced accuracy 0.917.
    assert choose_threshold(Y, P, ThresholdParams(rule="f1")) == pytest.approx(0.4)
    assert choose_threshold(Y, P, ThresholdParams(rule="balanced_accuracy")) == pytest.approx(0.4)
    # A false positive costing 10 times a false negative: only the surest positives.
    costly = ThresholdParams(rule="cost", false_positive_cost=10.0)
    assert choose_threshold(Y, P, costly) == pytest.approx(0.7)


def test_decide_at_a_threshold_or_by_the_most_probable_class():
    proba = np.column_stack([1 - P, P])
    assert decide(proba, 0.4).tolist() == (P >= 0.4).astype(int).tolist()
    assert decide(proba, None).tolist() == (P > 0.5).astype(int).tolist()
    three = np.array([[0.2, 0.5, 0.3]])
    assert decide(three, 0.1).tolist() == [1]  # a threshold is for two classes only
