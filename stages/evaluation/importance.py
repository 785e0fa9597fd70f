"""Permutation importance per raw column, and metrics per slice of the test rows.

Importance (Breiman, 2001; scikit-learn's `permutation_importance`, here per raw column):
shuffle one column of the test rows, seeded, and measure how much the model's score
falls; every encoded column made from that raw column (a category's one-hot columns, a
date's parts, a number's missing indicator, an embedded category's codes) is shuffled
together, with the same row order. The score is ROC AUC (one-vs-rest for several classes)
or R2 for regression.

Slices: the test rows grouped by the values of a feature column (a number in quartiles of
the test rows, a date by year), with the model's accuracy (mean absolute error for
regression) per group and its bootstrap interval, and the largest gap between groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from stages.data.encoding import DATE_PARTS, EncodingSpec, part_column, value_column
from stages.evaluation.metrics import interval, mean_samples

# A group with fewer test rows is reported but not ranked: its metric is mostly noise.
MIN_SLICE_ROWS = 30
MISSING = "(missing)"


def column_groups(spec: EncodingSpec) -> dict[str, tuple[list[int], list[int]]]:
    """Per raw feature column: its positions in the model's input matrix and in the codes
    of embedded categories."""
    matrix: dict[str, list[int]] = {}
    for index, column in enumerate(spec.columns):
        matrix.setdefault(column.source, []).append(index)
    codes = {feature.name: index for index, feature in enumerate(spec.embedded)}
    return {
        feature.name: (
            matrix.get(feature.name, []),
            [codes[feature.name]] if feature.name in codes else [],
        )
        for feature in spec.features
    }


def score(y_true: np.ndarray, predicted: np.ndarray, *, task: str) -> float:
    """The importance score: R2 for regression, else ROC AUC of the probabilities."""
    if task == "regression":
        return float(skm.r2_score(np.ravel(y_true), np.ravel(predicted)))
    if predicted.shape[1] == 2:
        return float(skm.roc_auc_score(y_true, predicted[:, 1]))
    labels = list(range(predicted.shape[1]))
    return float(
        skm.roc_auc_score(y_true, predicted, multi_class="ovr", average="macro", labels=labels)
    )


def permutation_importance(
    predict: Callable,
    inputs,
    y_true: np.ndarray,
    *,
    spec: EncodingSpec,
    repeats: int,
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    """Mean and standard deviation over `repeats` shuffles of the score lost when each raw
    column is shuffled, most important first. `inputs` is the matrix or (matrix, codes);
    `predict` maps inputs like them to probabilities (or values)."""
    rng = np.random.default_rng(seed)
    arrays = inputs if isinstance(inputs, tuple) else (inputs,)
    rows = len(y_true)
    if rows > max_rows:
        keep = np.sort(rng.choice(rows, size=max_rows, replace=False))
        arrays, y_true, rows = tuple(a[keep] for a in arrays), y_true[keep], max_rows

    def as_inputs(parts):
        return parts if len(parts) > 1 else parts[0]

    reference = score(y_true, predict(as_inputs(arrays)), task=spec.task)
    table = []
    for name, places in column_groups(spec).items():
        if not any(places):
            continue
        stacked = [np.concatenate([array] * repeats) for array in arrays]
        for repeat in range(repeats):
            order = rng.permutation(rows)
            block = slice(repeat * rows, (repeat + 1) * rows)
            for array, columns in zip(stacked, places, strict=False):
                if columns:
                    array[block, columns] = array[block][order][:, columns]
        predicted = predict(as_inputs(stacked))
        losses = [
            reference
            - score(y_true, predicted[repeat * rows : (repeat + 1) * rows], task=spec.task)
            for repeat in range(repeats)
        ]
        table.append(
            {
                "column": name,
                "importance": round(float(np.mean(losses)), 6),
                "std": round(float(np.std(losses)), 6),
            }
        )
    frame = pd.DataFrame(table, columns=["column", "importance", "std"])
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def slice_columns(spec: EncodingSpec, names: list[str]) -> list[str]:
    """The encoded columns `slice_labels` reads for these feature columns."""
    columns: list[str] = []
    for feature in spec.features:
        if feature.name in names:
            columns.extend(feature.numeric_parts() or [value_column(feature.name)])
            columns.extend([feature.indicator] if feature.indicator else [])
    return columns


def _numbers(rows: pd.DataFrame, feature) -> pd.Series:
    """A number column's values, missing where its indicator says so."""
    values = rows[value_column(feature.name)].astype("float64")
    return values.where(rows[feature.indicator] == 0) if feature.indicator else values


def quartile_edges(rows: pd.DataFrame, spec: EncodingSpec, column: str) -> np.ndarray | None:
    """The quartiles of a number column on these rows (None for a column of another kind):
    what `slice_labels` cuts by when it labels rows a part at a time."""
    feature = next(feature for feature in spec.features if feature.name == column)
    if feature.kind != "numeric" or not len(rows):
        return None
    values = _numbers(rows, feature)
    if values.notna().sum() == 0:
        return None
    return pd.qcut(values, 4, duplicates="drop", retbins=True)[1]


def slice_labels(
    rows: pd.DataFrame, spec: EncodingSpec, column: str, edges: np.ndarray | None = None
) -> pd.Series:
    """The group of each encoded test row by one feature column, as text; a number by
    its quartiles on these rows, or by `edges` (`quartile_edges` of a sample, the ends
    holding every value beyond them)."""
    feature = next(feature for feature in spec.features if feature.name == column)
    if feature.kind == "categorical":
        names = np.asarray([*(feature.vocabulary or []), MISSING], dtype=object)
        codes = rows[value_column(column)].to_numpy()
        return pd.Series(names[np.where(codes < 0, len(names) - 1, codes)], index=rows.index)
    if feature.kind == "embedded":
        return rows[value_column(column)].astype("object").fillna(MISSING).astype(str)
    if feature.kind == "datetime":
        years = rows[part_column(column, DATE_PARTS[0])]
        labels = years.round().astype("Int64").astype("string")
    else:
        values = _numbers(rows, feature)
        if edges is None:
            bins = pd.qcut(values, 4, duplicates="drop")
        else:
            inside = values.clip(edges[0], edges[-1])
            bins = pd.cut(inside, edges, include_lowest=True, duplicates="drop")
        labels = bins.map(lambda b: f"{b.left:.4g} to {b.right:.4g}", na_action="ignore")
        labels = labels.astype("string")
    if feature.indicator:
        labels = labels.where(rows[feature.indicator] == 0)
    return labels.astype("object").fillna(MISSING).astype(str)


def slice_metrics(
    groups: pd.Series,
    per_row: np.ndarray,
    *,
    metric: str,
    lower_is_better: bool,
    resamples: int,
    level: float,
    seed: int,
    max_rows: int | None = None,
) -> dict:
    """Per group: rows, the mean of `per_row` (1/0 for a right/wrong prediction, or an
    absolute error) and its bootstrap interval; and the largest gap between two groups
    of at least MIN_SLICE_ROWS rows."""
    found = {}
    for value in sorted(groups.unique()):
        mask = (groups == value).to_numpy()
        part = per_row[mask]
        samples = mean_samples(part, resamples=resamples, seed=seed, max_rows=max_rows)
        found[value] = (int(mask.sum()), float(part.mean()), samples)
    overall = float(per_row.mean()) if per_row.size else float("nan")
    return slice_table(found, overall, metric=metric, lower_is_better=lower_is_better, level=level)


def slice_table(
    found: dict[str, tuple[int, float, np.ndarray]],
    overall: float,
    *,
    metric: str,
    lower_is_better: bool,
    level: float,
) -> dict:
    """`slice_metrics`'s result from each group's (rows, mean, resampled means)."""
    table = [
        {
            "value": value,
            "rows": rows,
            metric: round(mean, 6),
            "interval": interval(samples, level),
            "ranked": bool(rows >= MIN_SLICE_ROWS),
        }
        for value, (rows, mean, samples) in sorted(found.items())
    ]
    ranked = [group for group in table if group["ranked"]]
    gap = None
    if len(ranked) > 1:
        ordered = sorted(ranked, key=lambda group: group[metric], reverse=lower_is_better)
        worst, best = ordered[0], ordered[-1]
        gap = {
            "worst": worst["value"],
            "best": best["value"],
            "gap": round(abs(best[metric] - worst[metric]), 6),
        }
    overall = round(overall, 6) if np.isfinite(overall) else float("nan")
    return {"metric": metric, "overall": overall, "groups": table, "largest_gap": gap}
