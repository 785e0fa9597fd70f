"""The reference models (scikit-learn) and their predictions on encoded rows.

Fitted on train rows only by the baselines stage; evaluate reads their predictions back
(`read_predictions`) and scores them on the same resamples as the network (`scores_of`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError
from stages.common.io import read_table
from stages.data.encoding import ROW_ID


def baseline_estimator(name: str, *, seed: int, task: str = "classification"):
    """An unfitted scikit-learn baseline for the task."""
    # scikit-learn loads only when a baseline is fitted (about 1 s of imports).
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "majority":
        return DummyClassifier(strategy="prior")
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if name == "mean":
        return DummyRegressor(strategy="mean")
    if name == "linear":
        return make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    if name == "hist_gradient_boosting" and task == "regression":
        return HistGradientBoostingRegressor(random_state=seed)
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    raise ValueError(f"unknown baseline {name}")


def flat_inputs(inputs) -> np.ndarray:
    """The model's inputs as one float matrix for scikit-learn: the numbers, then the
    embedded categories' codes (ordered by frequency in train rows)."""
    if isinstance(inputs, tuple):
        return np.hstack([inputs[0], inputs[1].astype(np.float32)])
    return inputs


def baseline_predictions(
    names: list[str],
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Fit each baseline on the train rows; its class probabilities (rows x classes) on
    the test rows, or its predicted values (`n_classes` 0: regression)."""
    predictions = {}
    for name in names:
        if n_classes == 0:
            estimator = baseline_estimator(name, seed=seed, task="regression")
            estimator.fit(x_train, np.ravel(y_train))
            predictions[name] = estimator.predict(x_test).astype("float64")
            continue
        estimator = baseline_estimator(name, seed=seed).fit(x_train, y_train)
        proba = np.zeros((len(x_test), n_classes))
        classes = np.asarray(estimator.classes_, dtype=int)
        proba[:, classes] = estimator.predict_proba(x_test)  # a class absent from train stays 0
        predictions[name] = proba
    return predictions


def scores_of(
    y_true: np.ndarray, predicted: np.ndarray, *, task: str, labels: np.ndarray | None = None
) -> dict[str, float]:
    """The test metrics of one prediction set (probabilities, or values for regression),
    with the classes decided as `labels` (None: the most probable class)."""
    from stages.evaluation.metrics import classification_metrics, regression_metrics

    if task == "regression":
        return regression_metrics(y_true, predicted)
    return classification_metrics(y_true, predicted, labels)


def prediction_frame(row_ids: pd.Series, predictions: dict[str, np.ndarray]) -> pd.DataFrame:
    """The predictions file: `row_id`, then `<name>:<class>` probabilities or `<name>`."""
    columns: dict[str, np.ndarray] = {ROW_ID: row_ids.to_numpy()}
    for name, values in predictions.items():
        if values.ndim == 1:
            columns[name] = values
        else:
            columns.update({f"{name}:{k}": values[:, k] for k in range(values.shape[1])})
    return pd.DataFrame(columns)


def read_predictions(
    path: str, *, names: list[str], row_ids: pd.Series, n_classes: int
) -> dict[str, np.ndarray]:
    """Each named baseline's test predictions from the file, in the order of `row_ids`."""
    frame = read_table(path)
    if not frame[ROW_ID].equals(row_ids.reset_index(drop=True)):
        raise PipelineError(f"{path}: not the test split's rows; re-run the baselines stage")
    predictions = {}
    for name in names:
        wanted = [name] if n_classes == 0 else [f"{name}:{k}" for k in range(n_classes)]
        if not set(wanted) <= set(frame.columns):
            raise PipelineError(f"{path}: no predictions of baseline '{name}'; re-run baselines")
        values = frame[wanted].to_numpy(dtype="float64")
        predictions[name] = values[:, 0] if n_classes == 0 else values
    return predictions
