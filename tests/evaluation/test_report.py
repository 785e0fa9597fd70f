import pandas as pd

from stages.evaluation.report import Findings, conclusion, plot_curves, plot_history, render_report
from stages.training.callbacks import best_epoch_marker

from ..training.test_loop import DIVERGING

TRAINING = {
    "epochs_run": 5,
    "train_rows": 700,
    "best_epoch": 3,
    "monitor": "val_loss",
    "best": {"val_loss": 0.47, "val_accuracy": 0.79},
    "seed": 42,
    "deterministic": True,
    "device": "CPU",
    "keras_version": "3",
    "overfit_gap": 0.05,
    "overfit_epochs": [{"epoch": 4, "gap": 0.10}, {"epoch": 5, "gap": 0.16}],
    "history": DIVERGING,
}
METRICS = {
    "accuracy": 0.8,
    "balanced_accuracy": 0.7,
    "precision_macro": 0.7,
    "recall_macro": 0.7,
    "f1_macro": 0.7,
    "roc_auc": 0.9,
    "log_loss": 0.4,
}


INTERVALS = {
    "level": 0.95,
    "resamples": 1000,
    "seed": 42,
    "model": {name: [value - 0.02, value + 0.02] for name, value in METRICS.items()},
    "difference": {
        "majority": {
            "accuracy": {"value": 0.09, "interval": [0.05, 0.13]},
            "roc_auc": {"value": 0.4, "interval": [0.35, 0.45]},
            "log_loss": {"value": -0.1, "interval": [-0.12, -0.08]},
        }
    },
}
DECISION = {
    "method": "temperature",
    "temperature": 1.3,
    "validation": {
        "calibration_error_before": 0.06,
        "calibration_error_after": 0.02,
        "log_loss_before": 0.45,
        "log_loss_after": 0.41,
    },
    "test": {
        "calibration_error_before": 0.07,
        "calibration_error_after": 0.03,
        "log_loss_before": 0.44,
        "log_loss_after": 0.40,
    },
    "threshold": {
        "rule": "f1",
        "value": 0.35,
        "test_at_0.5": {"accuracy": 0.8, "f1_macro": 0.7},
        "test_at_threshold": {"accuracy": 0.78, "f1_macro": 0.74},
    },
}
SLICES = {
    "sex": {
        "metric": "accuracy",
        "groups": [
            {"value": "F", "rows": 120, "accuracy": 0.9, "interval": [0.85, 0.95], "ranked": True},
            {"value": "M", "rows": 80, "accuracy": 0.65, "interval": [0.55, 0.75], "ranked": True},
        ],
        "largest_gap": {"worst": "M", "best": "F", "gap": 0.25},
    }
}
FIGURES = {
    name: f"figures/{name}.png"
    for name in ("curves", "confusion", "roc_pr", "calibration", "importance", "slices")
}


def test_report_states_validation_splits_overfitting_baselines_and_gates():
    importance = pd.DataFrame(
        {"column": ["income", "age", "noise"], "importance": [0.2, 0.05, 0.0], "std": [0.01] * 3}
    )
    text = render_report(
        validation={"rows": 1000, "columns": 5, "schema": "s.yaml", "valid": True},
        splits={"train": {"rows": 700, "fraction": 0.7, "classes": {"no": 500, "yes": 200}}},
        training=TRAINING,
        found=Findings(
            metrics=METRICS,
            baselines={"majority": {**METRICS, "accuracy": 0.71, "roc_auc": 0.5}},
            intervals=INTERVALS,
            decision=DECISION,
            importance=importance,
            slices=SLICES,
            gates=[{"metric": "roc_auc", "value": 0.9, "gate": ">= 0.95", "passed": False}],
            rows=200,
        ),
        figures=FIGURES,
    )
    opening = text.split("## Data validation")[0]
    assert "On 200 unseen test rows the network's accuracy is 0.8000 (95% bootstrap" in opening
    assert "majority (0.7100), the difference is +0.0900 (+0.0500 to +0.1300): ahead" in opening
    assert "Overfitting was flagged in 2 epoch(s)" in opening
    assert "calibration error from 0.0700 to 0.0300" in opening
    assert "from probability 0.3500 (chosen for f1 on the validation split)" in opening
    assert "leans on most: `income`, `age`, `noise`" in opening
    assert "weakest slice is `sex` = M (80 rows, accuracy 0.6500" in opening
    assert "1 of 1 gates missed: roc_auc >= 0.95." in opening
    assert "1,000 rows x 5 columns checked against\n`s.yaml`: all valid" in text
    assert "| train | 700 | 70% | no: 500, yes: 200 |" in text
    assert "**Overfitting flagged** in 2 epoch(s) (4, 5)" in text
    assert "by up to 0.1600 (epoch 5)" in text
    assert "| metric | model | model, 95% interval | majority |" in text
    assert "| accuracy | 0.8000 | 0.7800 to 0.8200 | 0.7100 |" in text
    assert "| test | 0.0700 | 0.0300 | 0.4400 | 0.4000 |" in text
    assert "| majority | +0.0900 (+0.0500 to +0.1300) | +0.4000 (+0.3500 to +0.4500) |" in text
    assert "| `income` | 0.2000 | 0.0100 |" in text
    assert "| M | 80 | 0.6500 | 0.5500 to 0.7500 |" in text
    assert "| roc_auc | 0.9000 | >= 0.95 | **missed** |" in text
    for name, path in FIGURES.items():
        assert f"]({path})" in text, name


def test_training_curves_figure_is_a_png(tmp_path):
    target = tmp_path / "curves.png"
    plot_history(DIVERGING, best_epoch=3, target=target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = target.read_bytes()
    plot_history(DIVERGING, best_epoch=3, target=target)
    assert target.read_bytes() == first  # reproducible, so DVC sees no change


def test_best_epoch_marker_spans_every_curve_at_the_best_step():
    marker = best_epoch_marker(DIVERGING, best=3)
    assert marker["step"].tolist() == [2, 2]
    assert marker["loss"].tolist() == [0.2, 0.61]
    assert marker["accuracy"].tolist() == [0.69, 0.95]


def test_slices_that_score_the_same_have_no_weakest():
    even = {
        "sex": {
            **SLICES["sex"],
            "largest_gap": {"worst": "M", "best": "F", "gap": 0.0},
        }
    }
    found = Findings(METRICS, {}, INTERVALS, None, None, even, [], 200)
    text = conclusion(TRAINING, found)
    assert "Every slice scores the same." in text and "weakest" not in text
    assert "No gates are set." in text


def test_curves_mark_a_threshold_no_score_reaches(tmp_path):
    """A rare positive class whose probabilities all stay below the threshold: the model
    predicts no positive, and the figure marks recall 0 instead of failing."""
    import numpy as np

    from stages.evaluation.figures import plot_tables

    truth = np.array([0] * 90 + [1] * 10)
    positive = np.linspace(0.01, 0.4, 100)
    proba = np.column_stack([1 - positive, positive])
    tables = plot_tables(truth, proba, classes=["no", "yes"], labels=(positive >= 0.5).astype(int))
    target = tmp_path / "curves.png"
    plot_curves(tables["roc"], tables["precision_recall"], auc=0.9, target=target, threshold=0.5)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
