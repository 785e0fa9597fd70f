"""The task rules, in one place: what a classification or a regression is scored by, which
baselines and gates suit it, and which params combine with it.

train and evaluate check their params against these rules before any work
(`check_train_params`, `check_evaluate_params`); infer-schema fits a drafted params file by
the same rules (`train_conflicts`, `evaluate_conflicts`, `default_evaluation`), so a file
it writes always passes the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.common.config import METRICS, EvaluateParams, ThresholdParams, TrainParams
from stages.common.errors import PipelineError

TASKS = ("classification", "regression")
METRICS_FOR_TASK: dict[str, tuple[str, ...]] = {
    "classification": METRICS[:8],
    "regression": ("mae", "rmse", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "calibration_error", "mae", "rmse"})
# The metric a task is judged by first (the printed line, the report's opening, the
# overfitting watch, the baselines' line), and the one given beside it.
HEADLINE = {"classification": "accuracy", "regression": "r2"}
SECOND = {"classification": "roc_auc", "regression": "rmse"}
LABELS = {"accuracy": "accuracy", "roc_auc": "ROC AUC", "r2": "R2", "rmse": "RMSE"}
# majority and logistic are classifiers, mean and linear (ridge) regressors;
# hist_gradient_boosting fits either task.
BASELINES_FOR_TASK = {
    "classification": ("majority", "logistic", "hist_gradient_boosting"),
    "regression": ("mean", "linear", "hist_gradient_boosting"),
}
# The gates infer-schema drafts: relative to the baselines, no absolute thresholds.
GATES_FOR_TASK: dict[str, dict[str, Any]] = {
    "classification": {
        "minimum": {},
        "maximum": {},
        "baseline": "hist_gradient_boosting",
        "max_shortfall": {"accuracy": 0.05, "roc_auc": 0.05},
        "must_beat": {"majority": ["log_loss"]},
    },
    "regression": {
        "minimum": {},
        "maximum": {},
        "baseline": "hist_gradient_boosting",
        "max_shortfall": {"r2": 0.05},
        "must_beat": {"mean": ["r2"]},
    },
}
REMOVE = object()  # a Conflict's fix that deletes the key


def headline_metric(task: str) -> str:
    return HEADLINE[task]


def metric_label(metric: str) -> str:
    return LABELS.get(metric, metric)


def require_two_classes(count: int, *, where: str, hints: list[str] | None = None) -> None:
    """A classifier needs at least two classes: a clear error naming `where` otherwise."""
    if count < 2:
        raise PipelineError(f"{where} has {count} class(es); at least two are needed", hints)


@dataclass(frozen=True)
class Conflict:
    """A params key that does not suit the task: why, and the value that does."""

    key: str  # dotted params key, e.g. train.monitor
    problem: str
    fix: Any  # REMOVE: delete the key


def train_conflicts(task: str, classes: int, train: TrainParams) -> list[Conflict]:
    """The train params that do not combine with the task (`classes`: how many)."""
    found = []
    if task == "regression" and train.monitor == "val_accuracy":
        found.append(
            Conflict(
                "train.monitor",
                "val_accuracy is for classification; use val_loss or val_r2",
                "val_loss",
            )
        )
    if task == "classification" and train.monitor == "val_r2":
        found.append(
            Conflict(
                "train.monitor",
                "val_r2 is for regression; use val_loss or val_accuracy",
                "val_loss",
            )
        )
    if task == "regression" and train.class_weight != "none":
        found.append(
            Conflict("train.class_weight", "class weights are for classification; use none", "none")
        )
    two_classes = task == "classification" and classes == 2
    if train.calibration == "platt" and not two_classes:
        found.append(
            Conflict(
                "train.calibration",
                "platt is for two classes; use temperature or none",
                "temperature",
            )
        )
    if not two_classes and train.threshold != ThresholdParams():
        found.append(
            Conflict(
                "train.threshold",
                "a decision threshold is for two classes; remove the key or keep rule fixed at 0.5",
                REMOVE,
            )
        )
    return found


# Baselines a user may add; infer-schema does not draft them (tuning takes minutes).
TUNED_BASELINES = ("tuned_gradient_boosting",)


def baseline_conflicts(task: str, names: list[str]) -> list[Conflict]:
    """The baselines in `names` that cannot fit the task."""
    allowed = BASELINES_FOR_TASK[task] + TUNED_BASELINES
    wrong = [name for name in names if name not in allowed]
    if not wrong:
        return []
    return [
        Conflict(
            "evaluate.baselines",
            f"{', '.join(wrong)} cannot fit a {task} task; use {', '.join(allowed)}",
            list(allowed),
        )
    ]


def evaluate_conflicts(
    task: str, evaluate: EvaluateParams, features: list[str] | None = None
) -> list[Conflict]:
    """The evaluate params that do not suit the task, or name no feature column."""
    found = []
    if features is not None:
        wrong = [column for column in evaluate.slices if column not in features]
        if wrong:
            found.append(
                Conflict(
                    "evaluate.slices",
                    f"'{wrong[0]}' is not a feature column of the model; use one of "
                    f"{', '.join(features)}",
                    [column for column in evaluate.slices if column in features],
                )
            )
    found.extend(baseline_conflicts(task, evaluate.baselines))
    metrics = METRICS_FOR_TASK[task]
    gates = evaluate.gates
    for key, bounds in (
        ("minimum", gates.minimum),
        ("maximum", gates.maximum),
        ("max_shortfall", gates.max_shortfall),
        *((f"must_beat.{name}", dict.fromkeys(names)) for name, names in gates.must_beat.items()),
    ):
        for metric in bounds:
            if metric not in metrics:
                found.append(
                    Conflict(
                        f"evaluate.gates.{key}.{metric}",
                        f"not a {task} metric; use {', '.join(metrics)}",
                        REMOVE,  # the bound on a metric the task does not have
                    )
                )
    return found


def raise_first(conflicts: list[Conflict]) -> None:
    if conflicts:
        raise PipelineError(f"{conflicts[0].key}: {conflicts[0].problem}")


def check_train_params(task: str, classes: int, train: TrainParams) -> None:
    raise_first(train_conflicts(task, classes, train))


def check_evaluate_params(task: str, evaluate: EvaluateParams, features: list[str]) -> None:
    raise_first(evaluate_conflicts(task, evaluate, features))


def default_evaluation(task: str) -> dict[str, Any]:
    """The baselines and gates a drafted params file gets for the task."""
    return {"baselines": list(BASELINES_FOR_TASK[task]), "gates": GATES_FOR_TASK[task]}
