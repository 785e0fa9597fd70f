"""Judging the model on the test split: its outputs, the gates, the bootstrap intervals,
the decision and slice reports, and the prediction tables evaluate writes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from stages.common import paths
from stages.common.config import (
    EvaluateParams,
    GateParams,
)
from stages.common.tasks import HEADLINE, LOWER_IS_BETTER, SECOND, metric_label
from stages.data.encoding import ROW_ID, EncodingSpec
from stages.evaluation.figures import plot_tables
from stages.evaluation.importance import permutation_importance, slice_labels, slice_metrics
from stages.evaluation.metrics import bootstrap, classification_metrics, interval
from stages.model.calibration import decide
from stages.model.head import decision_threshold
from stages.model.inference import class_probabilities, predict_values


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


def concat_outputs(parts: list[Outputs]) -> Outputs:
    """The outputs on several row ranges (partitions), one after another."""
    if len(parts) == 1:
        return parts[0]

    def joined(field: str):
        values = [getattr(part, field) for part in parts]
        return None if values[0] is None else np.concatenate(values)

    return Outputs(
        joined("predicted"), joined("labels"), parts[0].threshold, joined("uncalibrated")
    )


def model_outputs(model, inputs, *, task: str) -> Outputs:
    """Predictions, decisions and uncalibrated probabilities of the (core) model."""
    if task == "regression":
        return Outputs(predict_values(model, inputs), None, None, None)
    proba, uncalibrated = class_probabilities(model, inputs)
    threshold = decision_threshold(model)
    return Outputs(proba, decide(proba, threshold), threshold, uncalibrated)


def decision_report(
    before: dict[str, float],
    after: dict[str, float],
    decided: dict[str, float],
    *,
    threshold: float | None,
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    """Calibration (fitted on validation rows by train) before and after on the test rows
    (the metrics of the uncalibrated and calibrated probabilities at their most probable
    class); for two classes, the metrics at 0.5 and at the model's threshold (`decided`)."""
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
    if threshold is not None:
        kept = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")
        report["threshold"] = {
            "rule": fitted.get("threshold_rule"),
            "value": round(threshold, 6),
            "test_at_0.5": {name: after[name] for name in kept},
            "test_at_threshold": {name: decided[name] for name in kept},
        }
    return report


def whole_decision_report(y_true: np.ndarray, outputs: Outputs, *, training) -> dict[str, Any]:
    """`decision_report` from the model's outputs on every test row."""
    return decision_report(
        classification_metrics(y_true, outputs.uncalibrated),
        classification_metrics(y_true, outputs.predicted),
        classification_metrics(y_true, outputs.predicted, outputs.labels),
        threshold=outputs.threshold,
        training=training,
    )


def slice_scores(y_true: np.ndarray, outputs: Outputs, *, task: str) -> tuple[str, np.ndarray]:
    """The metric the slices report, and each row's share of it: 1/0 for a right/wrong
    decision (accuracy), or the absolute error (MAE) for regression."""
    if task == "regression":
        return "mae", np.abs(np.ravel(outputs.predicted) - np.ravel(y_true))
    return "accuracy", (outputs.labels == y_true).astype("float64")


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
    metric, per_row = slice_scores(y_true, outputs, task=spec.task)
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


def bootstrap_intervals(
    samples: dict[str, dict[str, np.ndarray]], metrics, baselines, *, rows, settings, seed
) -> dict[str, Any]:
    """Bootstrap intervals of every metric of the model and the baselines (`samples`, from
    the same resamples of the test rows), and of the model's difference to each baseline."""
    intervals = metric_intervals(
        samples,
        {"model": metrics, **baselines},
        level=settings.interval,
        resamples=settings.resamples,
        seed=seed,
    )
    intervals["resampled_rows"] = min(rows, settings.interval_rows)
    return intervals


def resampled_metrics(y_test, outputs: Outputs, predictions, *, task, settings, seed) -> dict:
    """Every metric of the model and of each baseline's `predictions` on the same
    bootstrap resamples of the test rows (`bootstrap`)."""
    return bootstrap(
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


def model_importance(model, x_test, y_test, *, spec, settings, seed) -> pd.DataFrame | None:
    """Permutation importance per raw column (None when evaluate.importance_repeats is 0)."""
    if not settings.importance_repeats:
        return None
    if spec.task == "regression":
        predict = lambda inputs: predict_values(model, inputs)  # noqa: E731
    else:
        predict = lambda inputs: class_probabilities(model, inputs)[0]  # noqa: E731
    return permutation_importance(
        predict,
        x_test,
        y_test,
        spec=spec,
        repeats=settings.importance_repeats,
        max_rows=settings.importance_rows,
        seed=seed,
    )


def summary_metrics(found, threshold: float | None) -> dict[str, Any]:
    """metrics.json: the test metrics at the model's decisions, the rows, and for two
    classes the threshold and the accuracy at 0.5 beside."""
    summary = {**found.metrics, "test_rows": found.rows}
    if threshold is not None:
        summary["threshold"] = round(threshold, 6)
        summary["accuracy_at_0.5"] = found.decision["threshold"]["test_at_0.5"]["accuracy"]
    return summary


def result_tables(test_rows, y_test, outputs: Outputs, *, spec) -> tuple[pd.DataFrame, dict]:
    """The test predictions' table and the data of the plots."""
    if spec.task == "regression":
        table = regression_table(test_rows[ROW_ID], y_test, outputs.predicted)
        return table, {"predicted_vs_actual": table[["actual", "predicted"]]}
    table = prediction_table(
        test_rows[ROW_ID], y_test, outputs.predicted, classes=spec.classes, labels=outputs.labels
    )
    tables = plot_tables(y_test, outputs.predicted, classes=spec.classes, labels=outputs.labels)
    return table, tables


def headline_line(found, threshold: float | None, *, task: str, level: float) -> str:
    """The line evaluate prints: the headline metric with its interval, the second, and
    the baselines' headline."""
    headline, second = HEADLINE[task], SECOND[task]
    metrics = found.metrics
    low, high = found.intervals["model"][headline]
    against = ", ".join(f"{name} {s[headline]:.4f}" for name, s in found.baselines.items())
    decided = ""
    if threshold is not None:
        decided = f" at the model's threshold {threshold:.3f}"
        if threshold != 0.5:
            at_half = found.decision["threshold"]["test_at_0.5"]["accuracy"]
            decided += f" (at 0.5: {at_half:.4f})"
    return (
        f"{found.rows:,} test rows: {metric_label(headline)} {metrics[headline]:.4f}{decided} "
        f"({level:.0%} interval {low:.4f} to {high:.4f}), {metric_label(second)} "
        f"{metrics[second]:.4f} (baselines' {metric_label(headline)}: {against or 'none'}) -> "
        f"{paths.EVALUATE_METRICS}"
    )


class Judged(NamedTuple):
    """What evaluate found on the test split, before the gates: as `Findings`, with the
    plots' tables still to write and what the figures draw beside them."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    intervals: dict[str, Any]
    decision: dict[str, Any] | None
    importance: pd.DataFrame | None
    slices: dict[str, Any]
    rows: int
    threshold: float | None
    tables: dict[str, pd.DataFrame]  # the plots' data still to write
    drawn: dict[str, Any]  # as `write_figures` takes it
