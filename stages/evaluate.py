"""evaluate: judge the trained model on the unseen test split, against baselines and gates.

Reads models/model.keras, data/split/{train,test}.parquet and data/prepared/encoding.json.
Fits the baselines in `evaluate.baselines` on the train split (never on test rows) and
scores them on the same test split as the model. Writes reports/evaluate/metrics.json
(accuracy, balanced accuracy, macro precision, recall and F1, ROC AUC, log loss for the
model; the same under `baseline.<name>` for each baseline), the data of `dvc plots` in
reports/evaluate/plots/ (confusion.csv with one row per test row, roc.csv,
precision_recall.csv, calibration.csv), the test predictions
(reports/evaluate/predictions.parquet) and, when every gate in `evaluate.gates` passes,
reports/evaluate/verdict.json; a missed gate fails the stage naming metric, value and gate.

For regression the metrics are MAE, RMSE and R2, the plot is predicted against actual
(reports/evaluate/plots/predicted_vs_actual.csv) and the baselines are regressors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, label_binarize

from stages import paths
from stages.config import (
    BASELINES_FOR_TASK,
    LOWER_IS_BETTER,
    METRICS_FOR_TASK,
    EvaluateParams,
    GateParams,
    Params,
)
from stages.encoding import ROW_ID, EncodingSpec, to_arrays
from stages.errors import PipelineError
from stages.io import atomic_path, read_json, read_table, say, write_csv, write_json, write_table
from stages.model import load_model, model_vocabularies, predict_proba, predict_values
from stages.report import plot_history, plot_predicted_vs_actual, render_report
from stages.serving import core_model


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
        "log_loss": skm.log_loss(y_true, proba / proba.sum(axis=1, keepdims=True), labels=labels),
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


def baseline_estimator(name: str, *, seed: int, task: str = "classification"):
    """An unfitted scikit-learn baseline for the task."""
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


def check_task_params(params: EvaluateParams, task: str) -> None:
    """Baselines and gates must suit the task: a clear error naming the key, before work."""
    allowed = BASELINES_FOR_TASK[task]
    wrong = [name for name in params.baselines if name not in allowed]
    if wrong:
        raise PipelineError(
            f"evaluate.baselines: {', '.join(wrong)} cannot fit a {task} task; "
            f"use {', '.join(allowed)}"
        )
    metrics = METRICS_FOR_TASK[task]
    gates = params.gates
    for key, bounds in (
        ("minimum", gates.minimum),
        ("maximum", gates.maximum),
        ("max_shortfall", gates.max_shortfall),
        *((f"must_beat.{name}", dict.fromkeys(names)) for name, names in gates.must_beat.items()),
    ):
        for metric in bounds:
            if metric not in metrics:
                raise PipelineError(
                    f"evaluate.gates.{key}.{metric}: not a {task} metric; use {', '.join(metrics)}"
                )


def flat_inputs(inputs) -> np.ndarray:
    """The model's inputs as one float matrix for scikit-learn: the numbers, then the
    embedded categories' codes (ordered by frequency in train rows)."""
    if isinstance(inputs, tuple):
        return np.hstack([inputs[0], inputs[1].astype(np.float32)])
    return inputs


def baseline_metrics(
    names: list[str],
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Fit each baseline on the train rows, score it on the test rows (`n_classes` 0:
    regression)."""
    scores = {}
    for name in names:
        if n_classes == 0:
            estimator = baseline_estimator(name, seed=seed, task="regression")
            estimator.fit(x_train, np.ravel(y_train))
            scores[name] = regression_metrics(y_test, estimator.predict(x_test))
            continue
        estimator = baseline_estimator(name, seed=seed).fit(x_train, y_train)
        proba = np.zeros((len(x_test), n_classes))
        classes = np.asarray(estimator.classes_, dtype=int)
        proba[:, classes] = estimator.predict_proba(x_test)  # a class absent from train stays 0
        scores[name] = classification_metrics(y_test, proba)
    return scores


def check_gates(
    metrics: dict[str, float], baselines: dict[str, dict[str, float]], gates: GateParams
) -> list[dict[str, Any]]:
    """Every gate with the value it saw and whether it passed."""
    results = []
    for metric, bound in gates.minimum.items():
        value = metrics[metric]
        results.append(
            {"metric": metric, "gate": f">= {bound}", "value": value, "passed": value >= bound}
        )
    for metric, bound in gates.maximum.items():
        value = metrics[metric]
        results.append(
            {"metric": metric, "gate": f"<= {bound}", "value": value, "passed": value <= bound}
        )
    for baseline, names in gates.must_beat.items():
        for metric in names:
            reference = baselines[baseline][metric]
            value = metrics[metric]
            better = value < reference if metric in LOWER_IS_BETTER else value > reference
            results.append(
                {
                    "metric": metric,
                    "gate": f"better than {baseline} ({reference})",
                    "value": value,
                    "passed": bool(better),
                }
            )
    for metric, allowed in gates.max_shortfall.items():
        reference = baselines[gates.baseline][metric]
        value = metrics[metric]
        shortfall = value - reference if metric in LOWER_IS_BETTER else reference - value
        results.append(
            {
                "metric": metric,
                "gate": f"at most {allowed} short of {gates.baseline} ({reference})",
                "value": value,
                "shortfall": round(shortfall, 6),
                "passed": shortfall <= allowed,
            }
        )
    return results


def prediction_table(
    row_ids: pd.Series, y_true: np.ndarray, proba: np.ndarray, *, classes: list[str]
) -> pd.DataFrame:
    """One row per test row: its row_id, actual and predicted class, class probabilities."""
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame(
        {
            "row_id": row_ids.to_numpy(),
            "actual": names[y_true],
            "predicted": names[proba.argmax(axis=1)],
        }
    )
    for index, label in enumerate(classes):
        table[f"probability_{label}"] = proba[:, index]
    return table


def regression_table(row_ids: pd.Series, y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """One row per test row: its row_id, the actual and the predicted value."""
    return pd.DataFrame(
        {"row_id": row_ids.to_numpy(), "actual": np.ravel(y_true), "predicted": np.ravel(y_pred)}
    )


def run(params: Params) -> None:
    """The evaluate command: score model and baselines on the test split, check the gates."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    check_task_params(params.evaluate, spec.task)
    regression = spec.task == "regression"
    test_rows = read_table(paths.split_table("test"))
    model = core_model(load_model(paths.MODEL))  # the splits are encoded already
    vocabularies = model_vocabularies(model)
    x_test, y_test = to_arrays(test_rows, spec, vocabularies)
    if regression:
        y_pred = predict_values(model, x_test)
        metrics = regression_metrics(y_test, y_pred)
        predictions = regression_table(test_rows[ROW_ID], y_test, y_pred)
        tables = {"predicted_vs_actual": predictions[["actual", "predicted"]]}
    else:
        proba = predict_proba(model, x_test)
        metrics = classification_metrics(y_test, proba)
        predictions = prediction_table(test_rows[ROW_ID], y_test, proba, classes=spec.classes)
        tables = plot_tables(y_test, proba, classes=spec.classes)
    baselines = {}
    if params.evaluate.baselines:  # the train split is read only to fit them
        x_train, y_train = to_arrays(read_table(paths.split_table("train")), spec, vocabularies)
        baselines = baseline_metrics(
            params.evaluate.baselines,
            x_train=flat_inputs(x_train),
            y_train=y_train,
            x_test=flat_inputs(x_test),
            y_test=y_test,
            n_classes=len(spec.classes),  # none for regression
            seed=params.dataset.seed,
        )
    write_json({**metrics, "test_rows": len(y_test), "baseline": baselines}, paths.EVALUATE_METRICS)
    for name, table in tables.items():
        write_csv(table, f"{paths.EVALUATE_PLOTS}/{name}.csv")
    write_table(predictions, paths.EVALUATE_PREDICTIONS)
    headline, second = ("r2", "rmse") if regression else ("accuracy", "roc_auc")
    label = {"r2": "R2", "rmse": "RMSE", "accuracy": "accuracy", "roc_auc": "ROC AUC"}
    against = ", ".join(f"{name} {scores[headline]:.4f}" for name, scores in baselines.items())
    say(
        "evaluate",
        f"{len(y_test):,} test rows: {label[headline]} {metrics[headline]:.4f}, "
        f"{label[second]} {metrics[second]:.4f} (baselines' {label[headline]}: "
        f"{against or 'none'}) -> {paths.EVALUATE_METRICS}",
    )
    gates = check_gates(metrics, baselines, params.evaluate.gates)
    training = read_json(paths.TRAIN_REPORT)
    score = training.get("overfit_score", "accuracy")
    plot_history(
        training["history"],
        best_epoch=training["best_epoch"],
        score=score,
        target=paths.CURVES_FIGURE,
    )
    scatter = None
    if regression:
        plot_predicted_vs_actual(predictions, target=paths.SCATTER_FIGURE)
        scatter = str(Path(paths.SCATTER_FIGURE).relative_to(Path(paths.REPORT).parent))
    report = render_report(
        validation=read_json(paths.VALIDATE_REPORT),
        splits=read_json(paths.SPLIT_REPORT),
        training=training,
        metrics=metrics,
        baselines=baselines,
        gates=gates,
        curves=str(Path(paths.CURVES_FIGURE).relative_to(Path(paths.REPORT).parent)),
        metrics_rows=len(y_test),
        scatter=scatter,
    )
    with atomic_path(paths.REPORT, suffix=".md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    missed = [gate for gate in gates if not gate["passed"]]
    if missed:
        raise PipelineError(
            f"{len(missed)} of {len(gates)} gates missed (params: evaluate.gates)",
            [f"{gate['metric']} = {gate['value']}: needs {gate['gate']}" for gate in missed],
        )
    write_json({"passed": True, "gates": gates}, paths.EVALUATE_VERDICT)
    say("evaluate", f"{len(gates)} gate(s) passed -> {paths.EVALUATE_VERDICT}")
