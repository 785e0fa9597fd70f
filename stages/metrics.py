"""Test metrics, their bootstrap intervals and the calibration error.

`classification_metrics` and `regression_metrics` score one prediction set with
scikit-learn. `bootstrap` rescores it on resamples of the rows, all at once: a resample is
a row of counts (how often each row was drawn), every metric is computed as a weighted
metric under those counts, and each model scored on the same rows shares the same
resamples, so the difference between two models has an interval of its own (a paired
bootstrap). With every count 1 the weighted metrics equal scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn import metrics as skm

# Bins of the expected calibration error (Guo et al., 2017: equal-width bins of the
# predicted class's probability).
CALIBRATION_BINS = 15
# Most resample x row cells held at once (bounds memory on a large test split).
CHUNK_CELLS = 4_000_000


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray) -> float:
    """How far the predicted class's probability is from how often that class is right,
    averaged over 15 equal-width bins weighted by their rows (0: perfectly calibrated)."""
    weights = np.ones((1, len(y_true)))
    return float(_calibration_error(weights, y_true, proba)[0])


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, y_pred: np.ndarray | None = None
) -> dict[str, float]:
    """Test metrics from true class indices and predicted probabilities (rows x classes);
    the labels are `y_pred`, or the most probable class."""
    n_classes = proba.shape[1]
    if y_pred is None:
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
        "log_loss": skm.log_loss(y_true, proba / proba.sum(axis=1, keepdims=True), labels=labels),
        "calibration_error": expected_calibration_error(y_true, proba),
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Test metrics of predicted against actual values."""
    y_true, y_pred = np.ravel(y_true), np.ravel(y_pred)
    values = {
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": skm.r2_score(y_true, y_pred),
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def resample_counts(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of `rows` rows as int16 counts, (resamples, rows), a chunk at a
    time (no row is drawn 32,768 times in one resample)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_CELLS // max(rows, 1))
    for start in range(0, resamples, per_chunk):
        size = min(per_chunk, resamples - start)
        drawn = rng.integers(0, rows, size=(size, rows)) + rows * np.arange(size)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * rows).reshape(size, rows)
        yield counts.astype(np.int16)


def bootstrap(
    y_true: np.ndarray,
    predictions: dict[str, tuple[np.ndarray, np.ndarray | None]],
    *,
    task: str,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Each metric of each prediction set on the same `resamples` bootstrap resamples of
    the rows: {name: {metric: values, shape (resamples,)}}.

    `predictions` maps a name to (probabilities, labels) for classification (labels None:
    the most probable class) or to (predicted values, None) for regression.
    """
    samples: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in predictions}
    for counts in resample_counts(len(y_true), resamples, seed):
        weights = counts.astype("float64")  # for the matrix products
        for name, (scores, labels) in predictions.items():
            if task == "regression":
                chunk = _weighted_regression(weights, y_true, scores)
            else:
                chunk = _weighted_classification(weights, counts, y_true, scores, labels)
            for metric, values in chunk.items():
                samples[name].setdefault(metric, []).append(values)
    return {
        name: {metric: np.concatenate(parts) for metric, parts in metrics.items()}
        for name, metrics in samples.items()
    }


def interval(values: np.ndarray, level: float) -> list[float]:
    """The percentile interval holding `level` of the resampled values."""
    tail = (1 - level) / 2 * 100
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [float("nan"), float("nan")]
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _group_sums(counts: np.ndarray, keys: np.ndarray, groups: int) -> np.ndarray:
    """Per resample, the summed counts of the rows in each group (key 0..groups-1)."""
    members = np.zeros((len(keys), groups))
    members[np.arange(len(keys)), keys] = 1.0
    return counts @ members


def _weighted_classification(
    weights: np.ndarray,
    counts: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    labels: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Every classification metric per resample; `weights` are the int16 `counts` as floats."""
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1) if labels is None else labels
    total = weights.sum(axis=1)
    cells = _group_sums(weights, y_true * n_classes + y_pred, n_classes * n_classes)
    confusion = cells.reshape(-1, n_classes, n_classes)  # [resample, actual, predicted]
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    actual, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(actual > 0, hits / actual, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1_denominator = 2 * hits + (predicted - hits) + (actual - hits)
        f1 = np.where(f1_denominator > 0, 2 * hits / f1_denominator, 0.0)
        balanced = np.nanmean(np.where(actual > 0, hits / actual, np.nan), axis=1)
    if n_classes == 2:
        roc_auc = _weighted_auc(counts, y_true == 1, proba[:, 1])
    else:
        with np.errstate(invalid="ignore"):
            roc_auc = np.nanmean(
                np.stack(
                    [_weighted_auc(counts, y_true == c, proba[:, c]) for c in range(n_classes)],
                    axis=1,
                ),
                axis=1,
            )
    normalized = proba / proba.sum(axis=1, keepdims=True)
    eps = np.finfo(normalized.dtype).eps
    chosen = np.clip(normalized[np.arange(len(y_true)), y_true], eps, 1 - eps)
    return {
        "accuracy": hits.sum(axis=1) / total,
        "balanced_accuracy": balanced,
        "precision_macro": precision.mean(axis=1),
        "recall_macro": recall.mean(axis=1),
        "f1_macro": f1.mean(axis=1),
        "roc_auc": roc_auc,
        "log_loss": weights @ -np.log(chosen) / total,
        "calibration_error": _calibration_error(weights, y_true, proba),
    }


def _weighted_auc(counts: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC per resample: the chance that a positive row outscores a negative one,
    ties counting half. In integers (int16 counts, int32 sums): exact, and light on
    memory traffic, which is what it costs."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sorted_counts = counts[:, order]
    pos = sorted_counts * positive[order]
    neg = sorted_counts - pos
    if starts.size < ranked.size:  # tied scores: one group each
        pos = np.add.reduceat(pos, starts, axis=1, dtype=np.int32)
        neg = np.add.reduceat(neg, starts, axis=1, dtype=np.int32)
    below = np.cumsum(neg, axis=1, dtype=np.int32)
    below -= neg
    ranked_pairs = (pos.astype(np.int64) * (2 * below + neg)).sum(axis=1)
    pairs = 2.0 * pos.sum(axis=1, dtype=np.int64) * neg.sum(axis=1, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranked_pairs / pairs


def _calibration_error(counts: np.ndarray, y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype("float64")
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    members = np.zeros((len(bins), CALIBRATION_BINS))
    members[np.arange(len(bins)), bins] = 1.0
    right = counts @ (members * correct[:, None])
    sure = counts @ (members * confidence[:, None])
    return np.abs(right - sure).sum(axis=1) / counts.sum(axis=1)


def _weighted_regression(
    counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, np.ndarray]:
    y_true, y_pred = np.ravel(y_true).astype("float64"), np.ravel(y_pred).astype("float64")
    total = counts.sum(axis=1)
    error = y_pred - y_true
    squared = counts @ error**2
    mean = counts @ y_true / total
    spread = counts @ y_true**2 - total * mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(spread > 0, 1 - squared / spread, np.nan)
    return {
        "mae": counts @ np.abs(error) / total,
        "rmse": np.sqrt(squared / total),
        "r2": r2,
    }
