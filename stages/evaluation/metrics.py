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

# Bins of the expected calibration error (Guo et al., 2017: equal-width bins of the
# predicted class's probability).
CALIBRATION_BINS = 15
# Most resample x row cells held at once. Small enough that each chunk's arrays (8 MB at
# 8 bytes a cell) reuse the memory the chunk before freed: a fresh large array costs page
# faults, and numpy asks for huge pages on it, which the kernel may compact memory to give
# (Adult's 1,000 resamples of 6,508 rows: 1.0-2.2 s in one chunk, 0.17 s in chunks of 1M).
CHUNK_CELLS = 1_000_000


def calibration_sums(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per equal-width bin of the predicted class's probability: the rows whose predicted
    class is right, and the sum of that probability (sums: they add over row ranges)."""
    bins, right, confidence = _calibration_rows(y_true, proba)
    return (
        np.bincount(bins, weights=right, minlength=CALIBRATION_BINS),
        np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS),
    )


def _calibration_rows(y_true: np.ndarray, proba: np.ndarray):
    """Each row's calibration bin (of the predicted class's probability), whether its
    predicted class is right, and that probability."""
    confidence = proba.max(axis=1)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    return bins, proba.argmax(axis=1) == y_true, confidence


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray) -> float:
    """How far the predicted class's probability is from how often that class is right,
    averaged over 15 equal-width bins weighted by their rows (0: perfectly calibrated)."""
    right, sure = calibration_sums(y_true, proba)
    return float(np.abs(right - sure).sum() / len(y_true))


def surprises(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each row's log loss: minus the log of its true class's probability (normalised and
    clipped as scikit-learn's log_loss does)."""
    normalized = proba / proba.sum(axis=1, keepdims=True)
    eps = np.finfo(normalized.dtype).eps
    return -np.log(np.clip(normalized[np.arange(len(y_true)), y_true], eps, 1 - eps))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, y_pred: np.ndarray | None = None
) -> dict[str, float]:
    """Test metrics from true class indices and predicted probabilities (rows x classes);
    the labels are `y_pred`, or the most probable class."""
    from sklearn import metrics as skm  # not at import: the stages that only add up skip it

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
    from sklearn import metrics as skm

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
    max_rows: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each metric of each prediction set on the same `resamples` bootstrap resamples of
    the rows: {name: {metric: values, shape (resamples,)}}.

    `predictions` maps a name to (probabilities, labels) for classification (labels None:
    the most probable class) or to (predicted values, None) for regression.

    With more rows than `max_rows`, the resamples are drawn from a seeded sample of
    `max_rows` rows, and each resampled value's distance from the sample's own value is
    narrowed by sqrt(max_rows / rows) around the value on every row: these metrics are
    smooth in the rows' shares (asymptotically normal), so their spread falls as one over
    the square root of the rows. The cost then stops growing with the test split.
    """
    rows = len(y_true)
    if max_rows is None or rows <= max_rows:
        return _resampled(y_true, predictions, task=task, resamples=resamples, seed=seed)
    keep = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    sampled = {
        name: (scores[keep], None if labels is None else labels[keep])
        for name, (scores, labels) in predictions.items()
    }
    on_all = _resampled(y_true, predictions, task=task, resamples=0, seed=seed)
    return narrowed_bootstrap(
        y_true[keep], sampled, on_all, rows=rows, task=task, resamples=resamples, seed=seed
    )


def narrowed_bootstrap(
    y_sample: np.ndarray,
    sampled: dict[str, tuple[np.ndarray, np.ndarray | None]],
    on_all: dict[str, dict[str, float]],
    *,
    rows: int,
    task: str,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """`bootstrap` on a seeded sample of `rows` rows: the sample's resampled values, their
    distance from the sample's own value narrowed by sqrt(sample / rows), around the
    metrics on every row (`on_all`, per prediction set)."""
    spread = _resampled(y_sample, sampled, task=task, resamples=resamples, seed=seed)
    at_sample = _resampled(y_sample, sampled, task=task, resamples=0, seed=seed)
    shrink = np.sqrt(len(y_sample) / rows)
    return {
        name: {
            metric: on_all[name][metric] + (values - at_sample[name][metric]) * shrink
            for metric, values in metrics.items()
        }
        for name, metrics in spread.items()
    }


def _resampled(
    y_true: np.ndarray,
    predictions: dict[str, tuple[np.ndarray, np.ndarray | None]],
    *,
    task: str,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """The metrics on each resample; `resamples` 0: once, on every row once."""
    scorers = {
        name: _regression_scorer(y_true, scores)
        if task == "regression"
        else _classification_scorer(y_true, scores, labels)
        for name, (scores, labels) in predictions.items()
    }
    if resamples:
        chunks = resample_counts(len(y_true), resamples, seed)
    else:
        chunks = iter([np.ones((1, len(y_true)), dtype=np.int16)])
    samples: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in predictions}
    for counts in chunks:
        weights = counts.astype("float64")  # for the matrix products
        for name, scorer in scorers.items():
            for metric, values in scorer(weights, counts).items():
                samples[name].setdefault(metric, []).append(values)
    return {
        name: {metric: np.concatenate(parts) for metric, parts in metrics.items()}
        for name, metrics in samples.items()
    }


def mean_samples(
    values: np.ndarray, *, resamples: int, seed: int, max_rows: int | None = None
) -> np.ndarray:
    """The mean of `values` on each bootstrap resample (on more than `max_rows` values, from
    a sample of them, narrowed as `bootstrap` does)."""
    rows = values.size
    if max_rows is not None and rows > max_rows:
        sample = values[np.random.default_rng(seed).choice(rows, size=max_rows, replace=False)]
        return narrowed_means(sample, values.mean(), rows=rows, resamples=resamples, seed=seed)
    return np.concatenate(
        [
            counts.astype("float64") @ values / counts.sum(axis=1)
            for counts in resample_counts(rows, resamples, seed)
        ]
    )


def narrowed_means(
    sample: np.ndarray, mean: float, *, rows: int, resamples: int, seed: int
) -> np.ndarray:
    """`mean_samples` of `rows` values from a sample of them: the sample's resampled means,
    their distance from its mean narrowed by sqrt(sample / rows), around `mean` (the mean
    of every value). No value in the sample: no interval (NaN)."""
    if not sample.size:
        return np.full(1, np.nan)
    spread = mean_samples(sample, resamples=resamples, seed=seed)
    return mean + (spread - sample.mean()) * np.sqrt(sample.size / rows)


def interval(values: np.ndarray, level: float) -> list[float]:
    """The percentile interval holding `level` of the resampled values."""
    tail = (1 - level) / 2 * 100
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [float("nan"), float("nan")]
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _members(keys: np.ndarray, groups: int, values: np.ndarray | None = None):
    """A sparse (rows x groups) matrix: each row's value (default 1) in its group's column,
    so weights @ it sums the weighted values per group."""
    from scipy import sparse

    data = np.ones(len(keys)) if values is None else np.asarray(values, dtype="float64")
    return sparse.csr_array((data, (np.arange(len(keys)), keys)), shape=(len(keys), groups))


def _sums(weights: np.ndarray, members) -> np.ndarray:
    return np.asarray((members.T @ weights.T).T)


def _classification_scorer(y_true: np.ndarray, proba: np.ndarray, labels: np.ndarray | None):
    """Every classification metric per resample, as a function of the resamples' counts
    (and the same as floats): what does not depend on them is computed once, here."""
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1) if labels is None else labels
    cells = _members(y_true * n_classes + y_pred, n_classes * n_classes)
    if n_classes == 2:
        rankings = [_ranking(y_true == 1, proba[:, 1])]
    else:
        rankings = [_ranking(y_true == c, proba[:, c]) for c in range(n_classes)]
    surprise = surprises(y_true, proba)
    bins, hit, confidence = _calibration_rows(y_true, proba)
    right = _members(bins, CALIBRATION_BINS, hit)
    sure = _members(bins, CALIBRATION_BINS, confidence)

    def score(weights: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(axis=1)
        confusion = _sums(weights, cells).reshape(-1, n_classes, n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs = np.stack([_weighted_auc(counts, *ranking) for ranking in rankings], axis=1)
            # The mean over the classes a resample has both sides of; NaN when it has none
            # (np.nanmean's value, without its warning on a tiny test split).
            present = (~np.isnan(aucs)).sum(axis=1)
            roc_auc = np.where(present > 0, np.nansum(aucs, axis=1) / present, np.nan)
        calibration = np.abs(_sums(weights, right) - _sums(weights, sure)).sum(axis=1)
        return {
            **confusion_scores(confusion),
            "roc_auc": roc_auc,
            "log_loss": weights @ surprise / total,
            "calibration_error": calibration / total,
        }

    return score


def confusion_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro precision, recall and F1 of confusion
    matrices (resamples x actual x predicted), as scikit-learn gives them (a class never
    predicted has precision 0, one never present recall 0; balanced accuracy averages the
    classes present)."""
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    actual, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(actual > 0, hits / actual, 0.0)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1_denominator = 2 * hits + (predicted - hits) + (actual - hits)
        f1 = np.where(f1_denominator > 0, 2 * hits / f1_denominator, 0.0)
        balanced = np.nanmean(np.where(actual > 0, hits / actual, np.nan), axis=1)
    return {
        "accuracy": hits.sum(axis=1) / actual.sum(axis=1),
        "balanced_accuracy": balanced,
        "precision_macro": precision.mean(axis=1),
        "recall_macro": recall.mean(axis=1),
        "f1_macro": f1.mean(axis=1),
    }


def _ranking(positive: np.ndarray, scores: np.ndarray) -> tuple:
    """The rows in score order, where each run of tied scores starts (None: no ties), and
    which sorted rows are positive."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    return order, (starts if starts.size < ranked.size else None), positive[order]


def _weighted_auc(
    counts: np.ndarray, order: np.ndarray, starts: np.ndarray | None, positive: np.ndarray
) -> np.ndarray:
    """ROC AUC per resample: the chance that a positive row outscores a negative one,
    ties counting half. In integers: exact, and light on memory traffic, which is what it
    costs (int32 while no product can pass 2**31, as on any test split held whole)."""
    rows, most = counts.shape[1], int(counts.max(initial=0))
    wide = np.int64 if 2 * rows * max(most, 1) >= 2**31 else np.int32
    sorted_counts = counts[:, order].astype(wide)
    pos = sorted_counts * positive
    neg = sorted_counts - pos
    if starts is not None:  # tied scores: one group each
        pos = np.add.reduceat(pos, starts, axis=1)
        neg = np.add.reduceat(neg, starts, axis=1)
    ranked = np.cumsum(neg, axis=1)  # negatives below each group, then 2 * that + ties
    ranked -= neg
    ranked *= 2
    ranked += neg
    ranked *= pos
    ranked_pairs = ranked.sum(axis=1, dtype=np.int64)
    pairs = 2.0 * pos.sum(axis=1, dtype=np.int64) * neg.sum(axis=1, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranked_pairs / pairs


def _regression_scorer(y_true: np.ndarray, y_pred: np.ndarray):
    """MAE, RMSE and R2 per resample, as a function of the resamples' counts."""
    y_true, y_pred = np.ravel(y_true).astype("float64"), np.ravel(y_pred).astype("float64")
    error = y_pred - y_true

    def score(weights: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(axis=1)
        squared = weights @ error**2
        mean = weights @ y_true / total
        spread = weights @ y_true**2 - total * mean**2
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(spread > 0, 1 - squared / spread, np.nan)
        return {
            "mae": weights @ np.abs(error) / total,
            "rmse": np.sqrt(squared / total),
            "r2": r2,
        }

    return score
