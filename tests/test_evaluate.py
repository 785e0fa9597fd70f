import numpy as np
import pytest

from stages.evaluate import classification_metrics, plot_tables

Y_TRUE = np.array([0, 0, 0, 1, 1, 1])
# Predicted P(class 1): one false positive (row 2) and one false negative (row 5).
P1 = np.array([0.1, 0.3, 0.6, 0.8, 0.9, 0.4])
PROBA = np.column_stack([1 - P1, P1])


def test_binary_metrics_on_a_known_prediction_set():
    metrics = classification_metrics(Y_TRUE, PROBA)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision_macro"] == pytest.approx(2 / 3)
    assert metrics["recall_macro"] == pytest.approx(2 / 3)
    assert metrics["f1_macro"] == pytest.approx(2 / 3)
    # 9 positive/negative pairs; ranked correctly: all but (0.6 vs 0.4).
    assert metrics["roc_auc"] == pytest.approx(8 / 9, abs=1e-6)
    expected_loss = -np.mean(np.log([0.9, 0.7, 0.4, 0.8, 0.9, 0.4]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_multiclass_metrics():
    y_true = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    metrics = classification_metrics(y_true, proba)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["roc_auc"] == pytest.approx(1.0)


def test_plot_tables():
    tables = plot_tables(Y_TRUE, PROBA, classes=["no", "yes"])
    confusion = tables["confusion"]
    assert confusion["actual"].tolist() == ["no", "no", "no", "yes", "yes", "yes"]
    assert confusion["predicted"].tolist() == ["no", "no", "yes", "yes", "yes", "no"]
    roc = tables["roc"]
    assert roc["fpr"].iloc[0] == 0 and roc["tpr"].iloc[-1] == 1
    assert roc["fpr"].is_monotonic_increasing
    assert set(tables["precision_recall"].columns) == {"recall", "precision", "threshold"}
    assert tables["calibration"]["observed_frequency"].between(0, 1).all()
