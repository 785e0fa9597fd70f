"""Statistics of the numbers, fitted on train rows only: robust scaling and bin edges."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.data.encoding import EncodingSpec

# A bin holds at least this share of the train rows, so edges do not chase noise.
MIN_BIN_SHARE = 0.0025


def _present_values(features: pd.DataFrame, indicator: str | None) -> np.ndarray:
    """Mask of the rows where a numeric column is not missing, from its indicator."""
    if indicator is not None and indicator in features.columns:
        return features[indicator].to_numpy() == 0
    return np.ones(len(features), dtype=bool)


def scaling_statistics(
    features: pd.DataFrame, *, spec: EncodingSpec, robust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance for the model's Normalization layer.

    Computed from the rows given (the train split only). Numeric columns are scaled over
    their non-missing rows; indicator and one-hot columns pass through unchanged (mean 0,
    variance 1), so a category unseen in train cannot blow up at prediction time.

    `robust` gives RealMLP's robust scaling instead (Holzmueller et al., 2024): centre
    the median, divide by the interquartile range, or where that is 0 by half the range.
    """
    mean = np.zeros(len(spec.feature_columns), dtype="float64")
    variance = np.ones(len(spec.feature_columns), dtype="float64")
    position = {name: index for index, name in enumerate(spec.feature_columns)}
    for name, indicator in spec.indicators.items():
        values = features[name].to_numpy(dtype="float64")
        values = values[_present_values(features, indicator)]
        if not values.size:
            continue
        index = position[name]
        if robust:
            low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
            spread = high - low if high > low else (values.max() - values.min()) / 2
            mean[index], variance[index] = median, spread**2 if spread > 0 else 1.0
        else:
            mean[index] = values.mean()
            spread = values.var()
            variance[index] = spread if spread > 0 else 1.0
    return mean, variance


def bin_edges(
    features: pd.DataFrame, labels: np.ndarray, *, spec: EncodingSpec, max_bins: int, seed: int
) -> tuple[list[int], list[list[float]]]:
    """Target-aware bin edges per numeric column, for piecewise-linear encoding.

    For each numeric column, a decision tree (a regression tree for a numeric target) of at
    most `max_bins` leaves fitted on that column alone (train rows only) places the edges
    where the label changes most; the
    column's train minimum and maximum close the outer bins. Returns the position of each
    numeric column among the encoded columns and its sorted edges.
    """
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # only for bins

    indices, edges = [], []
    tree_type = DecisionTreeRegressor if spec.task == "regression" else DecisionTreeClassifier
    min_rows = max(1, round(MIN_BIN_SHARE * len(features)))
    indicators = spec.indicators
    for index, name in enumerate(spec.feature_columns):
        if name not in indicators:  # an indicator or a one-hot column: not binned
            continue
        present = _present_values(features, indicators[name])
        values = features[name].to_numpy(dtype="float64")[present]
        if values.size == 0:
            continue
        tree = tree_type(
            max_leaf_nodes=max(max_bins, 2), min_samples_leaf=min_rows, random_state=seed
        ).fit(values[:, None], np.ravel(labels)[present])
        thresholds = tree.tree_.threshold[tree.tree_.feature >= 0]
        column_edges = np.unique(np.concatenate([[values.min(), values.max()], thresholds]))
        if column_edges.size < 2:  # a constant column: one bin of width 1
            column_edges = np.array([column_edges[0], column_edges[0] + 1.0])
        indices.append(index)
        edges.append([float(edge) for edge in column_edges])
    return indices, edges
