"""Calibration and the decision threshold, both fitted on the validation split.

A classifier's probabilities come from its logits z as sigmoid (one logit, two classes) or
softmax (more classes) of `scale * z + shift`. Temperature scaling (Guo et al., 2017) fits
one number, scale = 1 / T, that minimises the validation log loss; it never changes which
class is most probable, so accuracy at 0.5 and ROC AUC stay as they were. Platt scaling
(two classes only) also fits the shift, a logistic regression on the logit. The model
saves both numbers in its head (stages/model/), so evaluate, predict and an exported
model give the calibrated probabilities.

A two-class model then predicts its positive class (the second in the encoding spec) when
that class's probability reaches the threshold: fixed, or chosen on the validation split
for F1, balanced accuracy or the least cost of errors.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from stages.common.config import ThresholdParams

# Temperatures searched: from sharpening 20x to softening 20x.
LOG_TEMPERATURE_BOUNDS = (-np.log(20.0), np.log(20.0))


def probabilities(logits: np.ndarray, *, scale: float = 1.0, shift=0.0) -> np.ndarray:
    """Class probabilities (rows x classes) from logits, after `scale * z + shift`."""
    z = np.asarray(logits, dtype="float64") * scale + np.asarray(shift, dtype="float64")
    if z.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    return softmax(z, axis=1)


def _log_loss(z: np.ndarray, y_true: np.ndarray) -> float:
    if z.shape[1] == 1:  # two classes from one logit: log sigmoid of the signed logit
        signed = np.where(y_true == 1, z[:, 0], -z[:, 0])
        return float(np.mean(np.logaddexp(0.0, -signed)))
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y_true)), y_true]))


def fit_calibration(logits: np.ndarray, y_true: np.ndarray, *, method: str) -> tuple[float, list]:
    """(scale, shift) that calibrate these logits against the true classes."""
    logits = np.asarray(logits, dtype="float64")
    units = logits.shape[1]
    if method == "none":
        return 1.0, [0.0] * units
    if method == "platt":
        if units != 1:
            raise ValueError("Platt scaling needs two classes")
        fitted = LogisticRegression(C=1e6, max_iter=1000).fit(logits, y_true)
        return float(fitted.coef_[0, 0]), [float(fitted.intercept_[0])]
    result = minimize_scalar(
        lambda log_t: _log_loss(logits / np.exp(log_t), y_true),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(-result.x)), [0.0] * units


def choose_threshold(y_true: np.ndarray, positive: np.ndarray, params: ThresholdParams) -> float:
    """The threshold on the positive class's probability that `params.rule` picks on these
    rows (the validation split): the fixed value, or the best for F1, balanced accuracy or
    the total cost of false positives and false negatives."""
    if params.rule == "fixed":
        return float(params.value)
    truth = np.asarray(y_true) == 1
    if params.rule == "f1":
        precision, recall, thresholds = skm.precision_recall_curve(truth, positive)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
        return float(thresholds[int(np.argmax(f1))])
    fpr, tpr, thresholds = skm.roc_curve(truth, positive, drop_intermediate=False)
    if params.rule == "balanced_accuracy":
        score = (tpr + 1.0 - fpr) / 2.0
    else:  # cost: the fewest weighted errors
        score = -(
            params.false_positive_cost * fpr * (~truth).sum()
            + params.false_negative_cost * (1.0 - tpr) * truth.sum()
        )
    finite = np.isfinite(thresholds)  # roc_curve's first threshold is +inf: nothing positive
    best = int(np.flatnonzero(finite)[np.argmax(score[finite])])
    return float(min(thresholds[best], 1.0))


def decide(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted class per row: with a threshold (two classes), the positive class when its
    probability reaches it; without, the most probable class."""
    if threshold is None or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    return (proba[:, 1] >= threshold).astype(int)
