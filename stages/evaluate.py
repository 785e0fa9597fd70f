"""evaluate: judge the trained model on the unseen test split, against baselines and gates.

Reads models/network.keras (on Keras's numpy backend: no TensorFlow start),
data/split/test.parquet, data/prepared/encoding.json, the baselines' test predictions
(reports/baselines/predictions.parquet, fitted on the train split by the baselines stage)
and the earlier stages' reports. Writes:

- reports/evaluate/metrics.json: the model's test metrics (accuracy, balanced accuracy,
  macro precision, recall and F1, ROC AUC, log loss, calibration error; for two classes its
  decision threshold), the file `dvc metrics show` prints;
- intervals.json (a bootstrap interval for every
  metric of the model and the baselines, and for the model's difference to each baseline),
  slices.json (metrics per group of `evaluate.slices`), calibration.json (the calibration
  and threshold train fitted, before and after on the test rows), beside it;
- the data of `dvc plots` in reports/evaluate/plots/ (confusion.csv with one row per test
  row at the model's threshold, roc.csv, precision_recall.csv, calibration.csv,
  importance.csv: permutation importance per raw column);
- the test predictions (reports/evaluate/predictions.parquet), reports/report.md with its
  PNG figures, and, when every gate in `evaluate.gates` passes,
  reports/evaluate/verdict.json; a missed gate fails the stage naming metric, value and gate.

For regression the metrics are MAE, RMSE and R2, the plot is predicted against actual
(reports/evaluate/plots/predicted_vs_actual.csv), the baselines are regressors and there
is no calibration or threshold (calibration.json holds `{}`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from stages import paths
from stages.baselines import read_predictions, scores_of
from stages.calibration import decide
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
from stages.importance import permutation_importance, slice_labels, slice_metrics
from stages.io import atomic_path, read_json, read_table, say, write_csv, write_json, write_table
from stages.metrics import bootstrap, classification_metrics, interval
from stages.model import (
    class_probabilities,
    decision_threshold,
    load_model,
    model_vocabularies,
    predict_values,
)
from stages.report import (
    Findings,
    dominant_column,
    plot_confusion,
    plot_curves,
    plot_history,
    plot_importance,
    plot_predicted_vs_actual,
    plot_reliability,
    plot_slices,
    render_report,
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
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)}),
        "precision_recall": pd.DataFrame(
            {
                "recall": recall[:-1],
                "precision": precision[:-1],
                "threshold": pr_thresholds,
            }
        ),
        "calibration": reliability(y_true, proba),
    }


def reliability(y_true: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """Observed frequency against mean predicted probability in ten quantile bins (the
    positive class, or every class one-vs-rest)."""
    truth, scores = _scores_against_truth(y_true, proba)
    observed, predicted = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
    return pd.DataFrame({"predicted_probability": predicted, "observed_frequency": observed})


def check_task_params(params: EvaluateParams, spec: EncodingSpec) -> None:
    """Baselines and gates must suit the task, slices must name feature columns: a clear
    error naming the key, before work."""
    task = spec.task
    features = [feature.name for feature in spec.features]
    for column in params.slices:
        if column not in features:
            raise PipelineError(
                f"evaluate.slices: '{column}' is not a feature column of the model; use "
                f"one of {', '.join(features)}"
            )
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


def check_gates(
    metrics: dict[str, float],
    baselines: dict[str, dict[str, float]],
    gates: GateParams,
    intervals: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every gate with the value it saw and whether it passed.

    With `gates.use_interval`, a gate passes only if the whole interval does (`intervals`
    as `metric_intervals` writes them): a minimum needs the interval's low end above it,
    a baseline gate the pessimistic end of the interval of the model's difference."""
    strict = gates.use_interval and intervals is not None
    results = []
    for metric, bound in gates.minimum.items():
        value = metrics[metric]
        seen = intervals["model"][metric][0] if strict else value
        results.append(_gate(metric, f">= {bound}", value, seen >= bound, seen if strict else None))
    for metric, bound in gates.maximum.items():
        value = metrics[metric]
        seen = intervals["model"][metric][1] if strict else value
        results.append(_gate(metric, f"<= {bound}", value, seen <= bound, seen if strict else None))
    for baseline, names in gates.must_beat.items():
        for metric in names:
            reference = baselines[baseline][metric]
            value = metrics[metric]
            lower = metric in LOWER_IS_BETTER
            if strict:  # the end of the difference's interval least in the model's favour
                low, high = intervals["difference"][baseline][metric]["interval"]
                better, seen = (high < 0, high) if lower else (low > 0, low)
            else:
                better, seen = (value < reference if lower else value > reference), None
            gate = _gate(metric, f"better than {baseline} ({reference})", value, better, seen)
            results.append(gate)
    for metric, allowed in gates.max_shortfall.items():
        reference = baselines[gates.baseline][metric]
        value = metrics[metric]
        lower = metric in LOWER_IS_BETTER
        shortfall = value - reference if lower else reference - value
        if strict:
            low, high = intervals["difference"][gates.baseline][metric]["interval"]
            shortfall = high if lower else -low
        gate = _gate(
            metric,
            f"at most {allowed} short of {gates.baseline} ({reference})",
            value,
            shortfall <= allowed,
            None,
        )
        results.append({**gate, "shortfall": round(shortfall, 6)})
    return results


def _gate(metric: str, rule: str, value: float, passed, bound) -> dict[str, Any]:
    gate = {"metric": metric, "gate": rule, "value": value, "passed": bool(passed)}
    if bound is not None:
        gate["interval_end"] = round(float(bound), 6)
    return gate


def metric_intervals(
    samples: dict[str, dict[str, np.ndarray]],
    scores: dict[str, dict[str, float]],
    *,
    level: float,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The interval of every metric of the model and each baseline, and of the model's
    difference to each baseline (same resamples: a paired bootstrap)."""
    model = samples["model"]
    baselines = [name for name in samples if name != "model"]
    return {
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "model": {metric: interval(values, level) for metric, values in model.items()},
        "baselines": {
            name: {metric: interval(values, level) for metric, values in samples[name].items()}
            for name in baselines
        },
        "difference": {
            name: {
                metric: {
                    "value": round(scores["model"][metric] - scores[name][metric], 6),
                    "interval": interval(model[metric] - samples[name][metric], level),
                }
                for metric in model
            }
            for name in baselines
        },
    }


def prediction_table(
    row_ids: pd.Series,
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    classes: list[str],
    labels: np.ndarray,
) -> pd.DataFrame:
    """One row per test row: its row_id, actual and predicted class (`labels`, the
    model's decisions), class probabilities."""
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame(
        {
            "row_id": row_ids.to_numpy(),
            "actual": names[y_true],
            "predicted": names[labels],
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


class Outputs(NamedTuple):
    """The model on the test rows."""

    predicted: np.ndarray  # probabilities (rows x classes), or values for regression
    labels: np.ndarray | None  # the classes it decides, at its threshold
    threshold: float | None  # a two-class model's decision threshold
    uncalibrated: np.ndarray | None  # probabilities before calibration


def model_outputs(model, inputs, *, task: str) -> Outputs:
    """Predictions, decisions and uncalibrated probabilities of the (core) model."""
    if task == "regression":
        return Outputs(predict_values(model, inputs), None, None, None)
    proba, uncalibrated = class_probabilities(model, inputs)
    threshold = decision_threshold(model)
    return Outputs(proba, decide(proba, threshold), threshold, uncalibrated)


def decision_report(
    y_true: np.ndarray, outputs: Outputs, *, training: dict[str, Any] | None
) -> dict[str, Any]:
    """Calibration (fitted on validation rows by train) before and after on the test rows;
    for two classes, the metrics at 0.5 and at the model's threshold."""
    before = classification_metrics(y_true, outputs.uncalibrated)
    after = classification_metrics(y_true, outputs.predicted)
    fitted = training or {}
    report: dict[str, Any] = {
        "method": fitted.get("method"),
        "temperature": fitted.get("temperature"),
        "validation": fitted.get("validation"),
        "test": {
            "log_loss_before": before["log_loss"],
            "log_loss_after": after["log_loss"],
            "calibration_error_before": before["calibration_error"],
            "calibration_error_after": after["calibration_error"],
        },
    }
    if outputs.threshold is not None:
        decided = classification_metrics(y_true, outputs.predicted, outputs.labels)
        kept = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")
        report["threshold"] = {
            "rule": fitted.get("threshold_rule"),
            "value": round(outputs.threshold, 6),
            "test_at_0.5": {name: after[name] for name in kept},
            "test_at_threshold": {name: decided[name] for name in kept},
        }
    return report


def slices_report(
    test_rows: pd.DataFrame,
    y_true: np.ndarray,
    outputs: Outputs,
    *,
    spec: EncodingSpec,
    settings: EvaluateParams,
    seed: int,
) -> dict[str, Any]:
    """Per `evaluate.slices` column: the model's accuracy (mean absolute error for
    regression) per group of test rows."""
    if spec.task == "regression":
        per_row = np.abs(np.ravel(outputs.predicted) - np.ravel(y_true))
        metric = "mae"
    else:
        per_row = (outputs.labels == y_true).astype("float64")
        metric = "accuracy"
    return {
        column: slice_metrics(
            slice_labels(test_rows, spec, column),
            per_row,
            metric=metric,
            lower_is_better=metric in LOWER_IS_BETTER,
            resamples=settings.resamples,
            level=settings.interval,
            seed=seed,
            max_rows=settings.interval_rows,
        )
        for column in settings.slices
    }


def run(params: Params) -> None:
    """The evaluate command: score model and baselines on the test split, with intervals,
    calibration, importance and slices; write the report; check the gates."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    settings = params.evaluate
    check_task_params(settings, spec)
    task, seed = spec.task, params.dataset.seed
    regression = task == "regression"
    test_rows = read_table(paths.split_table("test"))
    model = load_model(paths.NETWORK)  # the splits are encoded already
    vocabularies = model_vocabularies(model)
    x_test, y_test = to_arrays(test_rows, spec, vocabularies)
    outputs = model_outputs(model, x_test, task=task)
    # The headline is what the model decides, at its own threshold; accuracy at 0.5 beside.
    metrics = scores_of(y_test, outputs.predicted, task=task, labels=outputs.labels)
    predictions = read_predictions(  # fitted on the train split by the baselines stage
        paths.BASELINES_PREDICTIONS,
        names=settings.baselines,
        row_ids=test_rows[ROW_ID],
        n_classes=len(spec.classes),
    )
    scored = read_json(paths.BASELINES_METRICS)  # the baselines stage scored the same rows
    baselines = {name: scored[name] for name in predictions}
    samples = bootstrap(
        y_test,
        {
            "model": (outputs.predicted, outputs.labels),
            **{name: (values, None) for name, values in predictions.items()},
        },
        task=task,
        resamples=settings.resamples,
        seed=seed,
        max_rows=settings.interval_rows,
    )
    intervals = metric_intervals(
        samples,
        {"model": metrics, **baselines},
        level=settings.interval,
        resamples=settings.resamples,
        seed=seed,
    )
    intervals["resampled_rows"] = min(len(y_test), settings.interval_rows)
    training = read_json(paths.TRAIN_REPORT)
    decision = (
        None
        if regression
        else decision_report(y_test, outputs, training=training.get("calibration"))
    )
    importance = None
    if settings.importance_repeats:
        importance = permutation_importance(
            (lambda inputs: predict_values(model, inputs))
            if regression
            else (lambda inputs: class_probabilities(model, inputs)[0]),
            x_test,
            y_test,
            spec=spec,
            repeats=settings.importance_repeats,
            max_rows=settings.importance_rows,
            seed=seed,
        )
    slices = slices_report(test_rows, y_test, outputs, spec=spec, settings=settings, seed=seed)

    summary = {**metrics, "test_rows": len(y_test)}
    at_half = None
    if outputs.threshold is not None:
        summary["threshold"] = round(outputs.threshold, 6)
        at_half = decision["threshold"]["test_at_0.5"]["accuracy"]
        summary["accuracy_at_0.5"] = at_half
    write_json(summary, paths.EVALUATE_METRICS)
    write_json(intervals, paths.EVALUATE_INTERVALS)
    write_json(slices, paths.EVALUATE_SLICES)
    write_json(decision or {}, paths.EVALUATE_DECISION)  # a regressor has neither
    if regression:
        table = regression_table(test_rows[ROW_ID], y_test, outputs.predicted)
        tables = {"predicted_vs_actual": table[["actual", "predicted"]]}
    else:
        table = prediction_table(
            test_rows[ROW_ID],
            y_test,
            outputs.predicted,
            classes=spec.classes,
            labels=outputs.labels,
        )
        tables = plot_tables(y_test, outputs.predicted, classes=spec.classes, labels=outputs.labels)
    if importance is not None:
        tables["importance"] = importance
    for name, frame in tables.items():
        write_csv(frame, f"{paths.EVALUATE_PLOTS}/{name}.csv")
    write_table(table, paths.EVALUATE_PREDICTIONS)
    headline, second = ("r2", "rmse") if regression else ("accuracy", "roc_auc")
    label = {"r2": "R2", "rmse": "RMSE", "accuracy": "accuracy", "roc_auc": "ROC AUC"}
    low, high = intervals["model"][headline]
    against = ", ".join(f"{name} {scores[headline]:.4f}" for name, scores in baselines.items())
    decided = ""
    if outputs.threshold is not None:
        decided = f" at the model's threshold {outputs.threshold:.3f}"
        if outputs.threshold != 0.5:
            decided += f" (at 0.5: {at_half:.4f})"
    say(
        "evaluate",
        f"{len(y_test):,} test rows: {label[headline]} {metrics[headline]:.4f}{decided} "
        f"({settings.interval:.0%} interval {low:.4f} to {high:.4f}), {label[second]} "
        f"{metrics[second]:.4f} (baselines' {label[headline]}: {against or 'none'}) -> "
        f"{paths.EVALUATE_METRICS}",
    )
    gates = check_gates(metrics, baselines, settings.gates, intervals)
    found = Findings(
        metrics, baselines, intervals, decision, importance, slices, gates, len(y_test)
    )
    figures = write_figures(
        training=training, tables=tables, outputs=outputs, y_true=y_test, found=found, spec=spec
    )
    report = render_report(
        validation=read_json(paths.VALIDATE_REPORT),
        splits=read_json(paths.SPLIT_REPORT),
        training=training,
        found=found,
        figures=figures,
    )
    with atomic_path(paths.REPORT, suffix=".md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    missed = [gate for gate in gates if not gate["passed"]]
    if missed:
        raise PipelineError(
            f"{len(missed)} of {len(gates)} gates missed (params: evaluate.gates)",
            [f"{gate['metric']} = {gate['value']}: needs {gate['gate']}" for gate in missed],
        )
    dominant = dominant_column(importance) if importance is not None else None
    if dominant is not None:
        say("evaluate", f"warning: {dominant.replace('`', chr(39))}")
    write_json(
        {"passed": True, "gates": gates, "warnings": [dominant] if dominant else []},
        paths.EVALUATE_VERDICT,
    )
    say("evaluate", f"{len(gates)} gate(s) passed -> {paths.EVALUATE_VERDICT}")


def write_figures(
    *,
    training: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    outputs: Outputs,
    y_true: np.ndarray,
    found: Findings,
    spec: EncodingSpec,
) -> dict[str, str]:
    """Every figure of the report as a PNG; returns their paths relative to the report."""
    metrics, decision, importance, slices = (
        found.metrics,
        found.decision,
        found.importance,
        found.slices,
    )
    folder = Path(paths.FIGURES)
    written = {}
    plot_history(
        training["history"],
        best_epoch=training["best_epoch"],
        score=training.get("overfit_score", "accuracy"),
        target=folder / "training_curves.png",
    )
    written["curves"] = folder / "training_curves.png"
    if spec.task == "regression":
        plot_predicted_vs_actual(
            tables["predicted_vs_actual"], target=folder / "predicted_vs_actual.png"
        )
        written["scatter"] = folder / "predicted_vs_actual.png"
    else:
        plot_confusion(
            tables["confusion"],
            classes=spec.classes,
            target=folder / "confusion.png",
            threshold=outputs.threshold,
        )
        plot_curves(
            tables["roc"],
            tables["precision_recall"],
            auc=metrics["roc_auc"],
            target=folder / "roc_pr.png",
            threshold=outputs.threshold,
        )
        plot_reliability(
            reliability(y_true, outputs.uncalibrated),
            tables["calibration"],
            errors=(
                decision["test"]["calibration_error_before"],
                decision["test"]["calibration_error_after"],
            ),
            target=folder / "calibration.png",
        )
        written |= {
            "confusion": folder / "confusion.png",
            "roc_pr": folder / "roc_pr.png",
            "calibration": folder / "calibration.png",
        }
    if importance is not None and len(importance):
        score = "R2" if spec.task == "regression" else "ROC AUC"
        plot_importance(importance, score=score, target=folder / "importance.png")
        written["importance"] = folder / "importance.png"
    if slices:
        plot_slices(slices, target=folder / "slices.png")
        written["slices"] = folder / "slices.png"
    base = Path(paths.REPORT).parent
    return {name: str(path.relative_to(base)) for name, path in written.items()}
