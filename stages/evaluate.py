"""evaluate: judge the trained model on the unseen test split.

Reads models/model.keras, data/split/test.parquet and data/prepared/encoding.json.
Writes reports/evaluate/metrics.json (accuracy, balanced accuracy, macro precision,
recall and F1, ROC AUC, log loss) and the data of `dvc plots`: reports/evaluate/plots/
confusion.csv (one row per test row), roc.csv, precision_recall.csv and calibration.csv.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Test metrics from true class indices and predicted probabilities (rows x classes)."""
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    if n_classes == 2:
        roc_auc = skm.roc_auc_score(y_true, proba[:, 1])
    else:
        roc_auc = skm.roc_auc_score(
            y_true, proba, multi_class="ovr", average="macro", labels=labels
        )
    values = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "roc_auc": roc_auc,
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-7, 1 - 1e-7), labels=labels),
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def _scores_against_truth(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary truth and scores: the positive class for two classes, else one-vs-rest pooled."""
    if proba.shape[1] == 2:
        return (y_true == 1).astype(int), proba[:, 1]
    truth = label_binarize(y_true, classes=list(range(proba.shape[1])))
    return truth.ravel(), proba.ravel()


def plot_tables(
    y_true: np.ndarray, proba: np.ndarray, *, classes: list[str]
) -> dict[str, pd.DataFrame]:
    """The tables `dvc plots` draws: confusion rows, ROC, precision-recall, calibration.

    With more than two classes, ROC, precision-recall and calibration pool every class
    one-vs-rest (micro-average).
    """
    names = np.asarray(classes, dtype=object)
    truth, scores = _scores_against_truth(y_true, proba)
    fpr, tpr, roc_thresholds = skm.roc_curve(truth, scores)
    precision, recall, pr_thresholds = skm.precision_recall_curve(truth, scores)
    observed, predicted = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
    return {
        "confusion": pd.DataFrame(
            {"actual": names[y_true], "predicted": names[proba.argmax(axis=1)]}
        ),
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)}),
        "precision_recall": pd.DataFrame(
            {
                "recall": recall[:-1],
                "precision": precision[:-1],
                "threshold": pr_thresholds,
            }
        ),
        "calibration": pd.DataFrame(
            {"predicted_probability": predicted, "observed_frequency": observed}
        ),
    }
