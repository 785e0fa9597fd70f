from stages.report import plot_history, render_report
from stages.train import best_epoch_marker

from .test_train import DIVERGING

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


def test_report_states_validation_splits_overfitting_baselines_and_gates():
    text = render_report(
        validation={"rows": 1000, "columns": 5, "schema": "s.yaml", "valid": True},
        splits={"train": {"rows": 700, "fraction": 0.7, "classes": {"no": 500, "yes": 200}}},
        training=TRAINING,
        metrics=METRICS,
        baselines={"majority": {**METRICS, "accuracy": 0.71, "roc_auc": 0.5}},
        gates=[{"metric": "roc_auc", "value": 0.9, "gate": ">= 0.95", "passed": False}],
        curves="figures/curves.png",
        metrics_rows=200,
    )
    assert "1,000 rows x 5 columns checked against\n`s.yaml`: all valid" in text
    assert "| train | 700 | 70% | no: 500, yes: 200 |" in text
    assert "**Overfitting flagged** in 2 epoch(s) (4, 5)" in text
    assert "by up to 0.1600 (epoch 5)" in text
    assert "| metric | model | majority |" in text
    assert "| accuracy | 0.8000 | 0.7100 |" in text
    assert "| roc_auc | 0.9000 | >= 0.95 | **missed** |" in text
    assert "![Training and validation curves](figures/curves.png)" in text


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
