"""baselines: fit the reference models on the train split and predict the test split.

Reads data/split/{train,test}.parquet and data/prepared/encoding.json. Fits each model in
`evaluate.baselines` (scikit-learn: majority or mean, logistic or ridge regression,
histogram gradient boosting) on the train rows only, on the same encoded columns as the
network (an embedded category as its code in the vocabulary train learns, from the same
train rows and `train.max_vocabulary` / `train.min_category_rows`). Writes each one's
test-row predictions (reports/baselines/predictions.parquet: `row_id`, then per baseline
one probability column per class, `<name>:<class index>`, or its predicted value) and
test metrics (reports/baselines/metrics.json).

A stage of its own, after split: changing the network's params re-runs train and evaluate,
never these fits. evaluate reads both files to put the network beside the baselines, on
the same resamples of the same test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages import paths
from stages.config import BASELINES_FOR_TASK, Params
from stages.encoding import ROW_ID, EncodingSpec, learn_vocabulary, to_arrays, value_column
from stages.errors import PipelineError
from stages.io import read_table, say, write_json, write_table


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
    from stages.metrics import classification_metrics, regression_metrics

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


def run(params: Params) -> None:
    """The baselines command: fit on the train split, predict and score the test split."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    names = params.evaluate.baselines
    wrong = [name for name in names if name not in BASELINES_FOR_TASK[spec.task]]
    if wrong:
        raise PipelineError(
            f"evaluate.baselines: {', '.join(wrong)} cannot fit a {spec.task} task; "
            f"use {', '.join(BASELINES_FOR_TASK[spec.task])}"
        )
    if not names:  # nothing to fit: the test rows' ids only
        row_ids = read_table(paths.split_table("test"), columns=[ROW_ID])[ROW_ID]
        write_table(prediction_frame(row_ids, {}), paths.BASELINES_PREDICTIONS)
        write_json({}, paths.BASELINES_METRICS)
        say("baselines", f"none listed (evaluate.baselines) -> {paths.BASELINES_METRICS}")
        return
    train_rows = read_table(paths.split_table("train"))
    test_rows = read_table(paths.split_table("test"))
    vocabularies = {  # as train learns them, so an embedded category has the same codes
        feature.name: learn_vocabulary(
            train_rows[value_column(feature.name)],
            max_size=params.train.max_vocabulary,
            min_count=params.train.min_category_rows,
        )
        for feature in spec.embedded
    }
    x_train, y_train = to_arrays(train_rows, spec, vocabularies)
    x_test, y_test = to_arrays(test_rows, spec, vocabularies)
    predictions = baseline_predictions(
        names,
        x_train=flat_inputs(x_train),
        y_train=y_train,
        x_test=flat_inputs(x_test),
        n_classes=len(spec.classes),  # none for regression
        seed=params.dataset.seed,
    )
    scores = {
        name: scores_of(y_test, values, task=spec.task) for name, values in predictions.items()
    }
    write_table(prediction_frame(test_rows[ROW_ID], predictions), paths.BASELINES_PREDICTIONS)
    write_json(scores, paths.BASELINES_METRICS)
    headline = "r2" if spec.task == "regression" else "accuracy"
    shown = ", ".join(f"{name} {values[headline]:.4f}" for name, values in scores.items())
    say(
        "baselines",
        f"{len(train_rows):,} train rows, {len(test_rows):,} test rows: test {headline} "
        f"{shown or 'none listed'} -> {paths.BASELINES_METRICS}",
    )
