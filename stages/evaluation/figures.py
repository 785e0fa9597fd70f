"""The data of `dvc plots` (confusion, ROC, precision-recall, calibration) and the PNG
figures of reports/report.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from stages.common import paths
from stages.data.encoding import EncodingSpec
from stages.evaluation.report import (
    Findings,
    plot_confusion,
    plot_curves,
    plot_history,
    plot_importance,
    plot_predicted_vs_actual,
    plot_reliability,
    plot_slices,
)


def _scores_against_truth(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary truth and scores: the positive class for two classes, else one-vs-rest pooled."""
    if proba.shape[1] == 2:
        return (y_true == 1).astype(int), proba[:, 1]
    truth = label_binarize(y_true, classes=list(range(proba.shape[1])))
    return truth.ravel(), proba.ravel()


def plot_tables(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    classes: list[str],
    labels: np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables `dvc plots` draws: confusion rows (of `labels`, the model's decisions;
    default the most probable class), ROC, precision-recall, calibration.

    With more than two classes, ROC, precision-recall and calibration pool every class
    one-vs-rest (micro-average).
    """
    if labels is None:
        labels = proba.argmax(axis=1)
    names = np.asarray(classes, dtype=object)
    truth, scores = _scores_against_truth(y_true, proba)
    fpr, tpr, roc_thresholds = skm.roc_curve(truth, scores)
    precision, recall, pr_thresholds = skm.precision_recall_curve(truth, scores)
    return {
        "confusion": pd.DataFrame({"actual": names[y_true], "predicted": names[labels]}),
        "roc": thinned(
            pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)})
        ),
        "precision_recall": thinned(
            pd.DataFrame(
                {
                    "recall": recall[:-1],
                    "precision": precision[:-1],
                    "threshold": pr_thresholds,
                }
            )
        ),
        "calibration": reliability(y_true, proba),
    }


# A curve's points in the plots' data: more than a plot can show (a curve over millions of
# test rows has a point per distinct score) are thinned to evenly spaced ones.
MAX_CURVE_POINTS = 10_000


def thinned(curve: pd.DataFrame, limit: int = MAX_CURVE_POINTS) -> pd.DataFrame:
    """At most `limit` of a curve's points, evenly spaced along it, its ends kept."""
    if len(curve) <= limit:
        return curve
    keep = np.unique(np.linspace(0, len(curve) - 1, limit).round().astype(int))
    return curve.iloc[keep].reset_index(drop=True)


def reliability(y_true: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """Observed frequency against mean predicted probability in ten quantile bins (the
    positive class, or every class one-vs-rest)."""
    truth, scores = _scores_against_truth(y_true, proba)
    observed, predicted = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
    return pd.DataFrame({"predicted_probability": predicted, "observed_frequency": observed})


def confusion_counts(y_true: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Test rows per actual (rows) and decided (columns) class."""
    cells = np.bincount(y_true * n_classes + labels, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def write_figures(
    *,
    training: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    found: Findings,
    spec: EncodingSpec,
    drawn: dict[str, Any],
) -> dict[str, str]:
    """Every figure of the report as a PNG; returns their paths relative to the report.
    `drawn` holds what the tables do not: for a classifier the confusion counts, the
    reliability table before calibration and the threshold; for a regressor the rows of
    the scatter plot."""
    folder = Path(paths.FIGURES)
    written = {"curves": folder / "training_curves.png"}
    plot_history(
        training["history"],
        best_epoch=training["best_epoch"],
        score=training.get("overfit_score", "accuracy"),
        target=written["curves"],
    )
    if spec.task == "regression":
        written["scatter"] = folder / "predicted_vs_actual.png"
        plot_predicted_vs_actual(drawn["scatter"], target=written["scatter"])
    else:
        written |= _classifier_figures(tables, drawn, found, spec=spec, folder=folder)
    if found.importance is not None and len(found.importance):
        written["importance"] = folder / "importance.png"
        score = "R2" if spec.task == "regression" else "ROC AUC"
        plot_importance(found.importance, score=score, target=written["importance"])
    if found.slices:
        written["slices"] = folder / "slices.png"
        plot_slices(found.slices, target=written["slices"])
    base = Path(paths.REPORT).parent
    return {name: str(path.relative_to(base)) for name, path in written.items()}


def _classifier_figures(tables, drawn, found, *, spec, folder: Path) -> dict:
    """The confusion matrix, ROC and precision-recall curves, and the reliability diagram."""
    written = {
        "confusion": folder / "confusion.png",
        "roc_pr": folder / "roc_pr.png",
        "calibration": folder / "calibration.png",
    }
    plot_confusion(
        drawn["confusion"],
        classes=spec.classes,
        target=written["confusion"],
        threshold=drawn["threshold"],
    )
    plot_curves(
        tables["roc"],
        tables["precision_recall"],
        auc=found.metrics["roc_auc"],
        target=written["roc_pr"],
        threshold=drawn["threshold"],
    )
    test = found.decision["test"]
    plot_reliability(
        drawn["before"],
        tables["calibration"],
        errors=(test["calibration_error_before"], test["calibration_error_after"]),
        target=written["calibration"],
    )
    return written
