"""Test metrics in one pass over a test split too large to hold: running sums per partition.

A `ClassTally` keeps, for a classifier's predictions, the confusion counts (of the decided
classes and of the most probable ones), the log loss's sum, the calibration error's bins,
and per class a histogram of its scores among the rows of that class and among the others.
Every metric but ROC AUC is then the one scikit-learn computes on the whole arrays (the same
sums); ROC AUC, the curves and the reliability bins come from the histograms, whose bins
keep a score's float32 value to 12 significant bits (a bin is at most 2**-11 of its
scores wide): pairs whose scores share a bin count as ties. A `ValueTally` keeps a
regressor's error sums and the targets' mean and spread (merged partition by partition,
Chan et al.), which give MAE, RMSE and R2 exactly. Memory is a few megabytes per class,
whatever the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.evaluation.metrics import (
    CALIBRATION_BINS,
    calibration_sums,
    confusion_scores,
    surprises,
)

# float32 bits dropped from a score to make its bin: 23 - 12 = 11 mantissa bits kept.
SCORE_SHIFT = 12
SCORE_BINS = int(np.float32(1.0).view(np.uint32) >> SCORE_SHIFT) + 1
RELIABILITY_BINS = 10


def score_bins(scores: np.ndarray) -> np.ndarray:
    """Each score's bin (scores in [0, 1]; the bins are in the scores' order)."""
    bits = np.clip(scores, 0.0, 1.0).astype(np.float32).view(np.uint32)
    return (bits >> SCORE_SHIFT).astype(np.intp)


def bin_floor(bins: np.ndarray) -> np.ndarray:
    """The lowest score of each bin."""
    return (bins.astype(np.uint32) << SCORE_SHIFT).view(np.float32).astype("float64")


class Ranking:
    """Histograms of one class's scores: among the rows of that class (positive), among
    the others (negative), and the scores' sums per bin."""

    def __init__(self) -> None:
        self.positive = np.zeros(SCORE_BINS, dtype=np.int64)
        self.negative = np.zeros(SCORE_BINS, dtype=np.int64)
        self.sums = np.zeros(SCORE_BINS, dtype="float64")

    def add(self, positive: np.ndarray, scores: np.ndarray) -> None:
        bins = score_bins(scores)
        self.positive += np.bincount(bins[positive], minlength=SCORE_BINS)
        self.negative += np.bincount(bins[~positive], minlength=SCORE_BINS)
        self.sums += np.bincount(bins, weights=scores, minlength=SCORE_BINS)

    def merged(self, other: Ranking) -> Ranking:
        pooled = Ranking()
        pooled.positive = self.positive + other.positive
        pooled.negative = self.negative + other.negative
        pooled.sums = self.sums + other.sums
        return pooled

    def auc(self) -> float:
        """The chance that a positive row outscores a negative one, ties counting half."""
        below = np.cumsum(self.negative) - self.negative
        pairs = float(self.positive.sum()) * float(self.negative.sum())
        if pairs == 0:
            return float("nan")
        return float((self.positive * (2.0 * below + self.negative)).sum() / (2.0 * pairs))

    def roc(self) -> pd.DataFrame:
        """False and true positive rates at each bin's lowest score, highest first."""
        kept = np.flatnonzero(self.positive + self.negative)[::-1]
        true = np.r_[0, np.cumsum(self.positive[kept])] / max(self.positive.sum(), 1)
        false = np.r_[0, np.cumsum(self.negative[kept])] / max(self.negative.sum(), 1)
        threshold = np.r_[1.0, bin_floor(kept)]
        return pd.DataFrame({"fpr": false, "tpr": true, "threshold": threshold})

    def precision_recall(self) -> pd.DataFrame:
        """Recall and precision of deciding positive from each bin's lowest score, lowest
        first (as scikit-learn's precision_recall_curve)."""
        kept = np.flatnonzero(self.positive + self.negative)
        hits = self.positive[kept][::-1].cumsum()[::-1]
        misses = self.negative[kept][::-1].cumsum()[::-1]
        recall = hits / max(self.positive.sum(), 1)
        precision = hits / np.maximum(hits + misses, 1)
        return pd.DataFrame(
            {"recall": recall, "precision": precision, "threshold": bin_floor(kept)}
        )

    def reliability(self, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
        """Observed frequency against mean score in `bins` quantile bins of the rows (as
        scikit-learn's calibration_curve with strategy="quantile", at the bins' grain)."""
        counts = self.positive + self.negative
        before = np.cumsum(counts) - counts
        group = np.minimum(before * bins // max(counts.sum(), 1), bins - 1)
        rows = np.bincount(group, weights=counts, minlength=bins)
        hits = np.bincount(group, weights=self.positive, minlength=bins)
        sums = np.bincount(group, weights=self.sums, minlength=bins)
        kept = rows > 0
        return pd.DataFrame(
            {
                "predicted_probability": sums[kept] / rows[kept],
                "observed_frequency": hits[kept] / rows[kept],
            }
        )


class ClassTally:
    """A classifier's test metrics, added up partition by partition."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.decided = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.likeliest = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.surprise = 0.0
        self.right = np.zeros(CALIBRATION_BINS)
        self.sure = np.zeros(CALIBRATION_BINS)
        self.rankings = [Ranking() for _ in range(1 if n_classes == 2 else n_classes)]

    def add(self, y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray | None = None) -> None:
        """One partition's true classes, probabilities and decided classes (None: the most
        probable)."""
        k = self.n_classes
        likeliest = proba.argmax(axis=1)
        decided = likeliest if labels is None else labels
        self.decided += np.bincount(y_true * k + decided, minlength=k * k).reshape(k, k)
        self.likeliest += np.bincount(y_true * k + likeliest, minlength=k * k).reshape(k, k)
        self.surprise += float(surprises(y_true, proba).sum())
        right, sure = calibration_sums(y_true, proba)
        self.right += right
        self.sure += sure
        if k == 2:
            self.rankings[0].add(y_true == 1, proba[:, 1])
        else:
            for c, ranking in enumerate(self.rankings):
                ranking.add(y_true == c, proba[:, c])

    @property
    def rows(self) -> int:
        return int(self.likeliest.sum())

    def metrics(self, *, decided: bool = True) -> dict[str, float]:
        """The metrics `classification_metrics` gives, at the decided classes (else at the
        most probable ones), unrounded."""
        confusion = self.decided if decided else self.likeliest
        values = {name: float(v[0]) for name, v in confusion_scores(confusion[None]).items()}
        aucs = [ranking.auc() for ranking in self.rankings]
        rows = max(self.rows, 1)
        return {
            **values,
            "roc_auc": float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan"),
            "log_loss": self.surprise / rows,
            "calibration_error": float(np.abs(self.right - self.sure).sum() / rows),
        }

    def pooled(self) -> Ranking:
        """Every class's ranking one-vs-rest, pooled (the positive class's for two)."""
        pooled = self.rankings[0]
        for ranking in self.rankings[1:]:
            pooled = pooled.merged(ranking)
        return pooled


class ValueTally:
    """A regressor's test metrics, added up partition by partition."""

    def __init__(self) -> None:
        self.rows = 0
        self.absolute = 0.0
        self.squared = 0.0
        self.mean = 0.0
        self.spread = 0.0  # sum of squared distances of the targets from their mean

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        y_true = np.ravel(y_true).astype("float64")
        error = np.ravel(y_pred).astype("float64") - y_true
        self.absolute += float(np.abs(error).sum())
        self.squared += float((error**2).sum())
        rows, mean = len(y_true), float(y_true.mean()) if len(y_true) else 0.0
        spread = float(((y_true - mean) ** 2).sum())
        total = self.rows + rows
        if total:
            delta = mean - self.mean
            self.spread += spread + delta**2 * self.rows * rows / total
            self.mean += delta * rows / total
        self.rows = total

    def metrics(self) -> dict[str, float]:
        rows = max(self.rows, 1)
        if self.spread > 0:
            r2 = 1 - self.squared / self.spread
        else:  # scikit-learn's r2_score on constant targets
            r2 = 1.0 if self.squared == 0 else 0.0
        return {
            "mae": self.absolute / rows,
            "rmse": float(np.sqrt(self.squared / rows)),
            "r2": r2,
        }


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics as the files give them: six decimals."""
    return {name: round(float(value), 6) for name, value in metrics.items()}
