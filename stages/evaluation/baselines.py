"""The reference models (scikit-learn) and their predictions on encoded rows.

Fitted on train rows only by the baselines stage; evaluate reads their predictions back
(`read_predictions`) and scores them on the same resamples as the network (`scores_of`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError
from stages.common.io import BATCH_ROWS, read_table
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


TUNED = "tuned_gradient_boosting"


def tune_boosting(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    task: str,
    n_classes: int,
    trials: int,
    seed: int,
) -> dict:
    """Histogram gradient boosting's params chosen by a seeded Optuna TPE study of `trials`
    fits on the train rows, each scored on the validation rows by the task's headline
    metric: learning rate, leaf nodes, minimum leaf size, L2 and feature fraction. Returns
    {"params", "validation", "trials"}."""
    import optuna

    from stages.common.tasks import LOWER_IS_BETTER, headline_metric

    metric = headline_metric(task)
    train = (train[0], np.ravel(train[1]))  # a regression target comes as one column
    validation = (validation[0], np.ravel(validation[1]))

    def objective(trial) -> float:
        chosen = {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 128, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
            "max_features": trial.suggest_float("max_features", 0.3, 1.0),
        }
        estimator = boosting(task=task, seed=seed, **chosen).fit(*train)
        predicted = _predicted(estimator, validation[0], task=task, n_classes=n_classes)
        return scores_of(validation[1], predicted, task=task)[metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return {
        "params": study.best_params,
        "validation": {metric: round(float(study.best_value), 6)},
        "trials": trials,
    }


def boosting(*, task: str, seed: int, **params):
    """scikit-learn's histogram gradient boosting for the task, with `params`."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return kind(random_state=seed, **params)


def _predicted(estimator, x: np.ndarray, *, task: str, n_classes: int) -> np.ndarray:
    """A fitted baseline's values, or its probabilities of every class (a class absent from
    its train rows: 0)."""
    if task == "regression":
        return estimator.predict(x).astype("float64")
    proba = np.zeros((len(x), n_classes))
    proba[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(x)
    return proba


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
    tuned: dict | None = None,
) -> dict[str, np.ndarray]:
    """Fit each baseline on the train rows; its class probabilities (rows x classes) on
    the test rows, or its predicted values (`n_classes` 0: regression). `tuned`:
    tuned_gradient_boosting's study (`tune_boosting`), whose params it is fitted with."""
    fitted = fit_baselines(
        names, x_train=x_train, y_train=y_train, n_classes=n_classes, seed=seed, tuned=tuned
    )
    return predict_baselines(fitted, x_test, n_classes=n_classes)


def fit_baselines(
    names: list[str],
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    seed: int,
    tuned: dict | None = None,
) -> dict[str, Any]:
    """Each baseline fitted on the train rows, by name (see `baseline_predictions`)."""
    task = "classification" if n_classes else "regression"
    fitted = {}
    for name in names:
        if name == TUNED:
            if tuned is None:
                raise ValueError(f"{TUNED} needs its study (tune_boosting)")
            estimator = boosting(task=task, seed=seed, **tuned["params"])
        else:
            estimator = baseline_estimator(name, seed=seed, task=task)
        fitted[name] = estimator.fit(x_train, np.ravel(y_train) if n_classes == 0 else y_train)
    return fitted


def predict_baselines(
    fitted: dict[str, Any], x_test: np.ndarray, *, n_classes: int
) -> dict[str, np.ndarray]:
    """The fitted baselines' predictions on some test rows."""
    task = "classification" if n_classes else "regression"
    return {
        name: _predicted(estimator, x_test, task=task, n_classes=n_classes)
        for name, estimator in fitted.items()
    }


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


def _prediction_columns(path: str, found: list[str], *, names: list[str], n_classes: int):
    """Each named baseline's columns in the predictions file (which has `found`)."""
    columns = {}
    for name in names:
        wanted = [name] if n_classes == 0 else [f"{name}:{k}" for k in range(n_classes)]
        if not set(wanted) <= set(found):
            raise PipelineError(f"{path}: no predictions of baseline '{name}'; re-run baselines")
        columns[name] = wanted
    return columns


def _values(frame: pd.DataFrame, columns: dict[str, list[str]], n_classes: int) -> dict:
    values = {name: frame[wanted].to_numpy(dtype="float64") for name, wanted in columns.items()}
    return {name: v[:, 0] if n_classes == 0 else v for name, v in values.items()}


def read_predictions(
    path: str, *, names: list[str], row_ids: pd.Series, n_classes: int
) -> dict[str, np.ndarray]:
    """Each named baseline's test predictions from the file, in the order of `row_ids`."""
    frame = read_table(path)
    if not frame[ROW_ID].equals(row_ids.reset_index(drop=True)):
        raise PipelineError(f"{path}: not the test split's rows; re-run the baselines stage")
    columns = _prediction_columns(path, list(frame.columns), names=names, n_classes=n_classes)
    return _values(frame, columns, n_classes)


class PredictionRows:
    """The baselines' predictions file read alongside the test split, a partition's rows
    at a time (`take`), checked against the partition's row ids; `finish` checks that no
    row is left over."""

    def __init__(self, path: str, *, names: list[str], n_classes: int) -> None:
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise PipelineError(f"{path}: not a readable Parquet file ({exc})") from None
        self.path, self.n_classes = path, n_classes
        found = table.schema_arrow.names
        self.columns = _prediction_columns(path, found, names=names, n_classes=n_classes)
        read = [ROW_ID, *(column for wanted in self.columns.values() for column in wanted)]
        self.batches = table.iter_batches(batch_size=BATCH_ROWS, columns=read)
        self.held: pd.DataFrame | None = None  # read but not yet taken

    def _mismatch(self) -> PipelineError:
        return PipelineError(f"{self.path}: not the test split's rows; re-run the baselines stage")

    def take(self, row_ids: pd.Series) -> dict[str, np.ndarray]:
        """The predictions of the next rows, which must be `row_ids`."""
        wanted = len(row_ids)
        while self.held is None or len(self.held) < wanted:
            batch = next(self.batches, None)
            if batch is None:
                raise self._mismatch()
            more = batch.to_pandas()
            self.held = (
                more if self.held is None else pd.concat([self.held, more], ignore_index=True)
            )
        chunk = self.held.iloc[:wanted]
        self.held = self.held.iloc[wanted:].reset_index(drop=True)
        if not np.array_equal(chunk[ROW_ID].to_numpy(), row_ids.to_numpy()):
            raise self._mismatch()
        return _values(chunk, self.columns, self.n_classes)

    def finish(self) -> None:
        if (self.held is not None and len(self.held)) or next(self.batches, None) is not None:
            raise self._mismatch()
