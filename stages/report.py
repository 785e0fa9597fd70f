"""The run report people read without DVC: reports/report.md and its PNG figures.

Written by evaluate from what the earlier stages reported: the validation summary, the
split counts, the training curves with the best epoch marked, the overfitting verdict,
the test metrics beside the baselines, and the gates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.config import METRICS
from stages.io import atomic_path


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


def _metrics_table(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    columns = ["model", *baselines]
    lines = [
        "| metric | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name in (name for name in METRICS if name in metrics):
        values = [metrics[name], *(scores[name] for scores in baselines.values())]
        lines.append(f"| {name} | " + " | ".join(f"{value:.4f}" for value in values) + " |")
    return "\n".join(lines)


def _split_contents(part: dict[str, Any]) -> str:
    if "classes" in part:
        return ", ".join(f"{label}: {count:,}" for label, count in part["classes"].items())
    target = part["target"]
    return (
        f"mean {target['mean']:.4g}, sd {target['std']:.4g}, "
        f"{target['min']:.4g} to {target['max']:.4g}"
    )


def render_report(
    *,
    validation: dict[str, Any],
    splits: dict[str, Any],
    training: dict[str, Any],
    metrics: dict[str, float],
    baselines: dict[str, dict[str, float]],
    gates: list[dict[str, Any]],
    curves: str,
    metrics_rows: int,
    scatter: str | None = None,
) -> str:
    """The report as Markdown; `curves` (and for regression `scatter`, the predicted
    against actual figure) are paths relative to the report."""
    split_lines = "\n".join(
        f"| {name} | {part['rows']:,} | {part['fraction']:.0%} | {_split_contents(part)} |"
        for name, part in splits.items()
    )
    score = training.get("overfit_score", "accuracy")
    score_name = "R2" if score == "r2" else score
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
    if gates:
        gates_section = "| metric | value | gate | result |\n|---|---|---|---|\n" + "\n".join(
            f"| {gate['metric']} | {gate['value']:.4f} | {gate['gate']} | "
            f"{'passed' if gate['passed'] else '**missed**'} |"
            for gate in gates
        )
    else:
        gates_section = "No gates set (params: evaluate.gates)."
    validity = (
        "all valid"
        if validation["valid"]
        else f"{validation['invalid_rows']:,} invalid rows:\n\n"
        + "\n".join(
            f"- `{item['column']}`, {item['check']}: {item['failures']} failure(s)"
            for item in validation["failures"]
        )
    )
    best = training["best"]
    return f"""# Pipeline report

## Data validation

{validation["rows"]:,} rows x {validation["columns"]} columns checked against
`{validation["schema"]}`: {validity}

## Splits

| split | rows | share | {"target" if scatter else "classes"} |
|---|---|---|---|
{split_lines}

## Training

{training["epochs_run"]} epochs on {training["train_rows"]:,} rows; the best epoch is
{training["best_epoch"]} by `{training["monitor"]}` (validation loss {best["val_loss"]:.4f},
validation {score_name} {best["val_" + score]:.4f}), and its weights are the model's.
Seed {training["seed"]}, {training["device"]}, Keras {training["keras_version"]}, deterministic
ops {"on" if training["deterministic"] else "off"}.

![Training and validation curves]({curves})

{overfitting}

## Test metrics against baselines

Baselines are fitted on the same train split and scored on the same test split
({metrics_rows:,} rows).

{_metrics_table(metrics, baselines)}
{f"{chr(10)}![Predicted against actual, test set]({scatter}){chr(10)}" if scatter else ""}
## Gates

{gates_section}
"""
