"""The run report people read without DVC: reports/report.md and its PNG figures.

Written by evaluate from what the earlier stages reported: a concluding paragraph, the
validation summary, the split counts, the training curves with the best epoch marked, the
overfitting verdict, the test metrics with their intervals beside the baselines, the
confusion matrix, ROC and precision-recall curves, calibration, permutation importance,
slices, and the gates. Every figure is a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from stages.common.config import METRICS
from stages.common.io import atomic_path
from stages.common.tasks import HEADLINE, TASKS, metric_label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(figure, target: str | Path) -> None:
    with atomic_path(target, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def plot_history(
    history: dict[str, list[float]],
    *,
    best_epoch: int,
    target: str | Path,
    score: str = "accuracy",
) -> None:
    """Loss and score (accuracy, or R2 for regression) per epoch, training against
    validation, best epoch marked."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for axis, metric in zip(axes, ("loss", score), strict=True):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = history.get(f"{prefix}{metric}", [])
            axis.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axis.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    _save_png(figure, target)
    plt.close(figure)


def plot_predicted_vs_actual(predictions, *, target: str | Path) -> None:
    """Regression: each test row's prediction against its actual value, and the diagonal
    where they would be equal."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 5), layout="constrained")
    actual, predicted = predictions["actual"], predictions["predicted"]
    axis.scatter(actual, predicted, s=12, alpha=0.6)
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    axis.set_xlabel("actual")
    axis.set_ylabel("predicted")
    axis.set_title("Test set: predicted against actual")
    axis.legend()
    _save_png(figure, target)
    plt.close(figure)


def _figure(plt, target: str | Path, figure) -> None:
    _save_png(figure, target)
    plt.close(figure)


def plot_confusion(
    counts: np.ndarray,
    *,
    classes: list[str],
    target: str | Path,
    threshold: float | None = None,
) -> None:
    """Counts of test rows per actual (rows) and predicted (columns) class."""
    plt = _pyplot()
    counts = pd.DataFrame(counts, index=classes, columns=classes)
    size = min(4 + 0.5 * len(classes), 12)
    figure, axis = plt.subplots(figsize=(size, size * 0.85), layout="constrained")
    image = axis.imshow(counts.to_numpy(), cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    ticks = range(len(classes))
    axis.set_xticks(ticks, classes, rotation=45 if len(classes) > 3 else 0, ha="right")
    axis.set_yticks(ticks, classes)
    if len(classes) <= 20:
        peak = counts.to_numpy().max() or 1
        for (row, column), value in np.ndenumerate(counts.to_numpy()):
            axis.text(
                column,
                row,
                f"{value:,}",
                ha="center",
                va="center",
                color="white" if value > peak / 2 else "black",
            )
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    at = "" if threshold is None else f" (threshold {threshold:.3f})"
    axis.set_title(f"Confusion matrix, test set{at}")
    _figure(plt, target, figure)


def plot_curves(
    roc: pd.DataFrame,
    pr: pd.DataFrame,
    *,
    auc: float,
    target: str | Path,
    threshold: float | None = None,
) -> None:
    """ROC and precision-recall curves of the test set, side by side, with the point the
    model's decision threshold picks on each."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    left.plot(roc["fpr"], roc["tpr"], label=f"model (AUC {auc:.4f})")
    left.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
    right.plot(pr["recall"], pr["precision"])
    if threshold is not None:
        at_roc = roc[roc["threshold"] >= threshold].iloc[-1]
        above = pr[pr["threshold"] >= threshold]
        # No score reaches the threshold: no row is predicted positive, recall 0 (and
        # precision 1, scikit-learn's end of the curve).
        at_pr = above.iloc[0] if len(above) else pd.Series({"recall": 0.0, "precision": 1.0})
        label = f"threshold {threshold:.3f}"
        left.plot(at_roc["fpr"], at_roc["tpr"], "o", color="tab:red", label=label)
        right.plot(at_pr["recall"], at_pr["precision"], "o", color="tab:red", label=label)
        right.legend(loc="lower left")
    left.set_xlabel("false positive rate")
    left.set_ylabel("true positive rate")
    left.set_title("ROC curve, test set")
    left.legend(loc="lower right")
    right.set_xlabel("recall")
    right.set_ylabel("precision")
    right.set_title("Precision-recall curve, test set")
    _figure(plt, target, figure)


def plot_reliability(
    before: pd.DataFrame, after: pd.DataFrame, *, errors: tuple[float, float], target: str | Path
) -> None:
    """Reliability diagram: observed frequency against predicted probability, before and
    after calibration, with the diagonal where they would be equal."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 5), layout="constrained")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for table, label, error in (
        (before, "before calibration", errors[0]),
        (after, "after calibration", errors[1]),
    ):
        axis.plot(
            table["predicted_probability"],
            table["observed_frequency"],
            marker="o",
            label=f"{label} (ECE {error:.4f})",
        )
    axis.set_xlabel("predicted probability")
    axis.set_ylabel("observed frequency")
    axis.set_title("Calibration, test set")
    axis.legend()
    _figure(plt, target, figure)


def plot_importance(importance: pd.DataFrame, *, score: str, target: str | Path) -> None:
    """Permutation importance per raw column, most important on top."""
    plt = _pyplot()
    shown = importance.head(30).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.32 * len(shown)), layout="constrained")
    axis.barh(shown["column"], shown["importance"], xerr=shown["std"], color="tab:blue")
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_xlabel(f"{score} lost when the column is shuffled")
    axis.set_title("Permutation importance, test set")
    _figure(plt, target, figure)


def plot_slices(slices: dict[str, dict[str, Any]], *, target: str | Path) -> None:
    """Each slice column's groups: the metric with its interval, and the rows."""
    plt = _pyplot()
    panels = list(slices.items())
    heights = [max(2.0, 0.9 + 0.32 * min(len(part["groups"]), 30)) for _, part in panels]
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(7, sum(heights)),
        layout="constrained",
        height_ratios=heights,
        squeeze=False,
    )
    for axis, (column, part) in zip(axes[:, 0], panels, strict=True):
        metric = part["metric"]
        groups = part["groups"][:30][::-1]
        values = np.array([group[metric] for group in groups])
        low = np.array([group["interval"][0] for group in groups])
        high = np.array([group["interval"][1] for group in groups])
        labels = [f"{group['value']} ({group['rows']:,})" for group in groups]
        axis.errorbar(
            values,
            range(len(groups)),
            xerr=[np.maximum(values - low, 0), np.maximum(high - values, 0)],
            fmt="o",
            capsize=3,
        )
        axis.axvline(part["overall"], color="grey", linestyle="--", label="all test rows")
        axis.legend(loc="best", fontsize="small")
        axis.set_yticks(range(len(groups)), labels)
        axis.set_xlabel(metric.replace("_", " "))
        axis.set_title(f"{column}: {metric.replace('_', ' ')} per group (rows), test set")
    _figure(plt, target, figure)


def _metrics_table(
    metrics: dict[str, float],
    baselines: dict[str, dict[str, float]],
    intervals: dict[str, Any],
) -> str:
    level = f"{intervals['level']:.0%}"
    columns = ["model", f"model, {level} interval", *baselines]
    lines = [
        "| metric | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name in (name for name in METRICS if name in metrics):
        low, high = intervals["model"][name]
        values = [f"{metrics[name]:.4f}", f"{low:.4f} to {high:.4f}"]
        values += [f"{scores[name]:.4f}" for scores in baselines.values()]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _differences_table(metrics: dict[str, float], intervals: dict[str, Any]) -> str:
    """The model minus each baseline, with the interval of that difference."""
    differences = intervals.get("difference") or {}
    if not differences:
        return ""
    shown = [name for name in ("accuracy", "roc_auc", "log_loss", "r2", "rmse") if name in metrics]
    lines = [
        "",
        f"The model minus each baseline, with the {intervals['level']:.0%} interval of the "
        "difference (same resamples for both):",
        "",
        "| baseline | " + " | ".join(shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for baseline, part in differences.items():
        cells = [
            f"{part[name]['value']:+.4f} ({part[name]['interval'][0]:+.4f} to "
            f"{part[name]['interval'][1]:+.4f})"
            for name in shown
        ]
        lines.append(f"| {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _split_contents(part: dict[str, Any]) -> str:
    if "classes" in part:
        return ", ".join(f"{label}: {count:,}" for label, count in part["classes"].items())
    target = part["target"]
    return (
        f"mean {target['mean']:.4g}, sd {target['std']:.4g}, "
        f"{target['min']:.4g} to {target['max']:.4g}"
    )


def _headline(metrics: dict[str, float]) -> tuple[str, str]:
    metric = next(HEADLINE[task] for task in TASKS if HEADLINE[task] in metrics)
    return metric, metric_label(metric)


def _strongest(baselines: dict[str, dict[str, float]], metric: str) -> str | None:
    if not baselines:
        return None
    return max(baselines, key=lambda name: baselines[name][metric])


def _weakest_slice(slices: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    gaps = [(column, part) for column, part in slices.items() if part["largest_gap"]]
    if not gaps:
        return None
    return max(gaps, key=lambda item: item[1]["largest_gap"]["gap"])


class Findings(NamedTuple):
    """What evaluate found on the test rows, as the report tells it."""

    metrics: dict[str, float]  # the model's
    baselines: dict[str, dict[str, float]]
    intervals: dict[str, Any]  # as stages.evaluate.metric_intervals writes them
    decision: dict[str, Any] | None  # calibration and threshold; None for regression
    importance: pd.DataFrame | None  # permutation importance, most important first
    slices: dict[str, Any]  # per slice column, as stages.importance.slice_metrics
    gates: list[dict[str, Any]]
    rows: int  # test rows


# One column carrying more than this share of the permutation importance is worth a look.
DOMINANT_IMPORTANCE_SHARE = 0.5


def dominant_column(importance: pd.DataFrame) -> str | None:
    """A warning when one column carries most of the model's importance: the sign of a
    leak that infer-schema's check did not catch (a value known only after the outcome)."""
    positive = importance["importance"].clip(lower=0)
    if positive.sum() <= 0 or len(importance) < 2:
        return None
    share = float(positive.iloc[0] / positive.sum())
    if share <= DOMINANT_IMPORTANCE_SHARE:
        return None
    column = importance["column"].iloc[0]
    return (
        f"`{column}` alone carries {share:.0%} of the permutation importance; if its value is "
        "only known after the outcome, it is a leak: list it under the schema's "
        "metadata.non_features"
    )


def conclusion(training: dict[str, Any], found: Findings) -> str:
    """The paragraph that opens the report: what a reviewer should conclude, in words."""
    metrics, baselines, intervals, decision, importance, slices, gates, rows = found
    metric, name = _headline(metrics)
    level = f"{intervals['level']:.0%}"
    low, high = intervals["model"][metric]
    said = [
        f"On {rows:,} unseen test rows the network's {name} is {metrics[metric]:.4f} "
        f"({level} bootstrap interval {low:.4f} to {high:.4f})."
    ]
    said += _against_rival(baselines, intervals, metric)
    flagged = training["overfit_epochs"]
    if flagged:
        worst = max(flagged, key=lambda item: item["gap"])
        said.append(
            f"Overfitting was flagged in {len(flagged)} epoch(s) (validation trailing training by "
            f"up to {worst['gap']:.4f}); the model keeps the weights of epoch "
            f"{training['best_epoch']}."
        )
    else:
        said.append("No epoch was flagged for overfitting.")
    said += _on_decision(decision)
    if importance is not None and len(importance):
        top = ", ".join(f"`{column}`" for column in importance["column"].head(3))
        said.append(f"The columns it leans on most: {top}.")
        dominant = dominant_column(importance)
        if dominant is not None:
            said.append(f"**Warning:** {dominant}.")
    said += _on_weakest_slice(slices)
    missed = [gate for gate in gates if not gate["passed"]]
    if not gates:
        said.append("No gates are set.")
    elif missed:
        said.append(
            f"{len(missed)} of {len(gates)} gates missed: "
            + "; ".join(f"{gate['metric']} {gate['gate']}" for gate in missed)
            + "."
        )
    else:
        said.append(f"All {len(gates)} gates passed.")
    return " ".join(said)


def _against_rival(baselines: dict[str, Any], intervals: dict[str, Any], metric: str) -> list[str]:
    """The difference to the strongest baseline and whether the test set can tell."""
    rival = _strongest(baselines, metric)
    if rival is None:
        return []
    difference = intervals["difference"][rival][metric]
    d_low, d_high = difference["interval"]
    if d_low > 0:
        verdict = "ahead of it beyond the noise of the test set"
    elif d_high < 0:
        verdict = "behind it beyond the noise of the test set"
    else:
        verdict = "the interval spans 0, so the test set cannot tell them apart"
    return [
        f"Against the strongest baseline, {rival} ({baselines[rival][metric]:.4f}), the "
        f"difference is {difference['value']:+.4f} ({d_low:+.4f} to {d_high:+.4f}): {verdict}."
    ]


def _on_decision(decision: dict[str, Any] | None) -> list[str]:
    """What calibration changed and the threshold the model decides with."""
    if decision is None:
        return []
    test = decision["test"]
    said = [
        f"Calibration ({decision['method']}) moved the test calibration error from "
        f"{test['calibration_error_before']:.4f} to {test['calibration_error_after']:.4f} "
        f"and the log loss from {test['log_loss_before']:.4f} to "
        f"{test['log_loss_after']:.4f}."
    ]
    threshold = decision.get("threshold")
    if threshold is not None:
        how = (
            "fixed"
            if threshold["rule"] == "fixed"
            else f"chosen for {threshold['rule'].replace('_', ' ')} on the validation split"
        )
        said.append(
            f"It predicts the positive class from probability {threshold['value']:.4f} "
            f"({how}), and the metrics above are those of these decisions (accuracy at "
            f"0.5: {threshold['test_at_0.5']['accuracy']:.4f})."
        )
    return said


def _on_weakest_slice(slices: dict[str, Any]) -> list[str]:
    weakest = _weakest_slice(slices)
    if weakest is None:
        return []
    column, part = weakest
    gap = part["largest_gap"]
    if gap["gap"] == 0:
        return ["Every slice scores the same."]
    groups = {group["value"]: group for group in part["groups"]}
    worst, best = groups[gap["worst"]], groups[gap["best"]]
    metric_name = part["metric"].replace("_", " ")
    return [
        f"Its weakest slice is `{column}` = {gap['worst']} ({worst['rows']:,} rows, "
        f"{metric_name} {worst[part['metric']]:.4f}, interval {worst['interval'][0]:.4f} to "
        f"{worst['interval'][1]:.4f}), {gap['gap']:.4f} from {gap['best']} "
        f"({best[part['metric']]:.4f})."
    ]


def _decision_section(decision: dict[str, Any] | None, figures: dict[str, str]) -> str:
    if decision is None:
        return ""
    test, validation = decision["test"], decision.get("validation") or {}
    lines = [
        "## Calibration and decision threshold",
        "",
        f"Calibration: {decision['method']}"
        + (f", temperature {decision['temperature']:.4f}" if decision.get("temperature") else "")
        + ", fitted on the validation split.",
        "",
        "| split | calibration error before | after | log loss before | after |",
        "|---|---|---|---|---|",
    ]
    for split, part in (("validation", validation), ("test", test)):
        if part:
            lines.append(
                f"| {split} | {part['calibration_error_before']:.4f} | "
                f"{part['calibration_error_after']:.4f} | {part['log_loss_before']:.4f} | "
                f"{part['log_loss_after']:.4f} |"
            )
    lines += ["", f"![Reliability diagram, test set]({figures['calibration']})"]
    threshold = decision.get("threshold")
    if threshold is not None:
        at_half, chosen = threshold["test_at_0.5"], threshold["test_at_threshold"]
        lines += [
            "",
            f"Decision threshold {threshold['value']:.4f} (rule: {threshold['rule']}); "
            "test metrics at 0.5 and at it:",
            "",
            "| metric | at 0.5 | at the threshold |",
            "|---|---|---|",
            *(f"| {name} | {at_half[name]:.4f} | {chosen[name]:.4f} |" for name in at_half),
        ]
    return "\n".join(lines) + "\n"


def _importance_section(importance: pd.DataFrame | None, figures: dict[str, str], score: str):
    if importance is None or not len(importance):
        return ""
    rows = "\n".join(
        f"| `{row.column}` | {row.importance:.4f} | {row.std:.4f} |"
        for row in importance.head(20).itertuples()
    )
    return (
        "## Feature importance\n\n"
        f"{score} lost on the test set when one raw column is shuffled (mean and standard "
        "deviation over the shuffles; a one-hot group counts as its column).\n\n"
        f"| column | importance | sd |\n|---|---|---|\n{rows}\n\n"
        f"![Permutation importance]({figures['importance']})\n"
    )


def _slices_section(slices: dict[str, Any], figures: dict[str, str]) -> str:
    if not slices:
        return ""
    parts = ["## Slices", ""]
    for column, part in slices.items():
        metric = part["metric"]
        parts += [
            f"`{column}`:",
            "",
            f"| value | rows | {metric} | interval |",
            "|---|---|---|---|",
        ]
        parts += [
            f"| {group['value']} | {group['rows']:,} | {group[metric]:.4f} | "
            f"{group['interval'][0]:.4f} to {group['interval'][1]:.4f}"
            f"{'' if group['ranked'] else ' (too few rows to rank)'} |"
            for group in part["groups"]
        ]
        gap = part["largest_gap"]
        if gap:
            parts += ["", f"Largest gap: {gap['gap']:.4f}, {gap['worst']} against {gap['best']}."]
        parts.append("")
    parts.append(f"![Metrics per slice]({figures['slices']})")
    return "\n".join(parts) + "\n"


def _interval_end(gate: dict[str, Any]) -> str:
    if "interval_end" not in gate:
        return ""
    return f" (interval end {gate['interval_end']:.4f})"


def render_report(
    *,
    validation: dict[str, Any],
    splits: dict[str, Any],
    training: dict[str, Any],
    found: Findings,
    figures: dict[str, str],
    fitted: dict[str, Any] | None = None,
) -> str:
    """The report as Markdown; `figures` maps each figure (curves, scatter, confusion,
    roc_pr, calibration, importance, slices) to its path relative to the report; `fitted`
    says how many train rows the baselines were fitted on (reports/baselines/fit.json)."""
    metrics, baselines, intervals, decision, importance, slices, gates, metrics_rows = found
    regression = "scatter" in figures
    split_lines = "\n".join(
        f"| {name} | {part['rows']:,} | {part['fraction']:.0%} | {_split_contents(part)} |"
        for name, part in splits.items()
    )
    if regression:
        figures_of_test = f"![Predicted against actual, test set]({figures['scatter']})\n"
    else:
        figures_of_test = (
            f"![Confusion matrix, test set]({figures['confusion']})\n\n"
            f"![ROC and precision-recall curves, test set]({figures['roc_pr']})\n"
        )
    return f"""# Pipeline report

{conclusion(training, found)}

## Data validation

{validation["rows"]:,} rows x {validation["columns"]} columns checked against
`{validation["schema"]}`: {_validity(validation)}

## Splits

| split | rows | share | {"target" if regression else "classes"} |
|---|---|---|---|
{split_lines}

## Training

{_training_section(training, figures["curves"])}

## Test metrics against baselines

{_baselines_fitted(fitted, metrics_rows)} {_resampled(intervals, metrics_rows)}

{_metrics_table(metrics, baselines, intervals)}
{_differences_table(metrics, intervals)}

{figures_of_test}
{_decision_section(decision, figures)}
{_importance_section(importance, figures, "R2" if regression else "ROC AUC")}
{_slices_section(slices, figures)}
## Gates

{_gates_section(gates)}
"""


def _baselines_fitted(fitted: dict[str, Any] | None, test_rows: int) -> str:
    """Which train rows the baselines were fitted on: all, or a seeded sample."""
    scored = f"scored on the same test split ({test_rows:,} rows)."
    if not fitted or fitted.get("fitted_rows") == fitted.get("train_rows"):
        return f"Baselines are fitted on the same train split and {scored}"
    return (
        f"Baselines are fitted on {fitted['fitted_rows']:,} of the {fitted['train_rows']:,} "
        f"train rows (drawn by seed {fitted['seed']}: `evaluate.baseline_rows`) and {scored}"
    )


def _resampled(intervals: dict[str, Any], test_rows: int) -> str:
    """Where the intervals come from: resamples of every test row, or of a sample."""
    said = f"Intervals: {intervals['resamples']:,} bootstrap resamples of the test rows"
    sample = intervals.get("resampled_rows", test_rows)
    if sample < test_rows:
        said += (
            f" (of a seeded sample of {sample:,}, their spread narrowed by "
            f"sqrt({sample:,} / {test_rows:,}): `evaluate.interval_rows`)"
        )
    return f"{said}, seed {intervals['seed']}."


def _validity(validation: dict[str, Any]) -> str:
    if validation["valid"]:
        return "all valid"
    return f"{validation['invalid_rows']:,} invalid rows:\n\n" + "\n".join(
        f"- `{item['column']}`, {item['check']}: {item['failures']} failure(s)"
        for item in validation["failures"]
    )


def _training_section(training: dict[str, Any], curves: str) -> str:
    """The epochs run, the best epoch and how it was chosen, the set-up, the curves and
    whether overfitting was flagged."""
    score = training.get("overfit_score", "accuracy")
    score_name = "R2" if score == "r2" else score
    best = training["best"]
    flagged = training["overfit_epochs"]
    if flagged:
        worst = max(flagged, key=lambda item: item["gap"])
        overfitting = (
            f"**Overfitting flagged** in {len(flagged)} epoch(s) "
            f"({', '.join(str(item['epoch']) for item in flagged)}): validation {score_name} "
            f"trailed training {score_name} by up to {worst['gap']:.4f} (epoch "
            f"{worst['epoch']}), more than the allowed gap of {training['overfit_gap']}."
        )
    else:
        overfitting = (
            f"No overfitting flagged: validation {score_name} never trailed training "
            f"{score_name} by more than {training['overfit_gap']}."
        )
    return f"""{training["epochs_run"]} epochs on {training["train_rows"]:,} rows; the best epoch is
{training["best_epoch"]} by `{training["monitor"]}` (validation loss {best["val_loss"]:.4f},
validation {score_name} {best["val_" + score]:.4f}), and its weights are the model's.
Seed {training["seed"]}, {training["device"]}, Keras {training["keras_version"]}, deterministic
ops {"on" if training["deterministic"] else "off"}.

![Training and validation curves]({curves})

{overfitting}"""


def _gates_section(gates: list[dict[str, Any]]) -> str:
    if not gates:
        return "No gates set (params: evaluate.gates)."
    return "| metric | value | gate | result |\n|---|---|---|---|\n" + "\n".join(
        f"| {gate['metric']} | {gate['value']:.4f} | {gate['gate']}{_interval_end(gate)} | "
        f"{'passed' if gate['passed'] else '**missed**'} |"
        for gate in gates
    )
