import numpy as np
import pytest

from stages.evaluation.figures import plot_tables
from stages.evaluation.metrics import classification_metrics

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


def test_baselines_are_fitted_on_train_rows_and_scored_on_test_rows():
    from stages.evaluation.baselines import baseline_predictions, scores_of

    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(400, 2))
    y_train = (x_train[:, 0] > 0.5).astype(int)  # about 31% positive
    x_test = rng.normal(size=(200, 2))
    y_test = (x_test[:, 0] > 0.5).astype(int)
    predictions = baseline_predictions(
        ["majority", "logistic", "hist_gradient_boosting"],
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        n_classes=2,
        seed=0,
    )
    scores = {name: scores_of(y_test, p, task="classification") for name, p in predictions.items()}
    assert scores["majority"]["accuracy"] == pytest.approx(1 - y_test.mean())
    assert scores["majority"]["roc_auc"] == pytest.approx(0.5)
    assert scores["logistic"]["accuracy"] > 0.95
    assert scores["hist_gradient_boosting"]["accuracy"] > 0.95


def test_gates_pass_and_miss():
    from stages.common.config import GateParams
    from stages.evaluation.scoring import check_gates

    metrics = {"accuracy": 0.86, "roc_auc": 0.92, "log_loss": 0.30}
    baselines = {"hist_gradient_boosting": {"accuracy": 0.87, "roc_auc": 0.93, "log_loss": 0.27}}
    met = GateParams(
        minimum={"accuracy": 0.85},
        maximum={"log_loss": 0.35},
        baseline="hist_gradient_boosting",
        max_shortfall={"accuracy": 0.02, "log_loss": 0.05},
    )
    assert all(gate["passed"] for gate in check_gates(metrics, baselines, met))
    missed = GateParams(
        minimum={"roc_auc": 0.95},
        baseline="hist_gradient_boosting",
        max_shortfall={"accuracy": 0.005, "log_loss": 0.01},
    )
    results = check_gates(metrics, baselines, missed)
    assert [gate["passed"] for gate in results] == [False, False, False]
    assert results[1]["shortfall"] == pytest.approx(0.01)
    assert results[2]["shortfall"] == pytest.approx(0.03)  # lower log loss is better
    assert results[1]["gate"] == "at most 0.005 short of hist_gradient_boosting (0.87)"


def test_gate_params_are_checked():
    from stages.common.config import EvaluateParams, GateParams

    with pytest.raises(ValueError, match="max_shortfall needs `baseline`"):
        GateParams(max_shortfall={"accuracy": 0.01})
    with pytest.raises(ValueError, match=r"not listed in evaluate\.baselines"):
        EvaluateParams(baselines=["majority"], gates={"baseline": "logistic"})
    with pytest.raises(ValueError, match=r"minimum\.acuracy\.\[key\]\s+Input should be 'accuracy'"):
        GateParams(minimum={"acuracy": 0.9})


def test_gates_on_the_interval_need_the_whole_interval_to_pass():
    from stages.common.config import GateParams
    from stages.evaluation.scoring import check_gates

    metrics = {"accuracy": 0.86, "log_loss": 0.30}
    baselines = {"majority": {"accuracy": 0.76, "log_loss": 0.55}, "logistic": {"accuracy": 0.85}}
    intervals = {
        "model": {"accuracy": [0.84, 0.88], "log_loss": [0.28, 0.32]},
        "difference": {
            "majority": {"log_loss": {"value": -0.25, "interval": [-0.27, -0.23]}},
            "logistic": {"accuracy": {"value": 0.01, "interval": [-0.004, 0.024]}},
        },
    }
    gates = {
        "minimum": {"accuracy": 0.85},
        "maximum": {"log_loss": 0.31},
        "must_beat": {"majority": ["log_loss"], "logistic": ["accuracy"]},
        "baseline": "logistic",
        "max_shortfall": {"accuracy": 0.003},
    }
    on_values = check_gates(metrics, baselines, GateParams(**gates), intervals)
    assert all(gate["passed"] for gate in on_values)
    on_intervals = check_gates(
        metrics, baselines, GateParams(**gates, use_interval=True), intervals
    )
    assert [gate["passed"] for gate in on_intervals] == [False, False, True, False, False]
    assert on_intervals[0]["interval_end"] == 0.84  # the low end of accuracy's interval
    assert on_intervals[1]["interval_end"] == 0.32
    assert on_intervals[4]["shortfall"] == pytest.approx(0.004)


def test_curves_over_many_rows_are_thinned_to_a_plot_s_worth_of_points():
    import numpy as np

    from stages.evaluation.figures import MAX_CURVE_POINTS, plot_tables

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=50_000)
    scores = np.clip(y * 0.3 + rng.random(50_000) * 0.7, 0, 1)
    tables = plot_tables(y, np.stack([1 - scores, scores], axis=1), classes=["a", "b"])
    curve = tables["precision_recall"]
    assert len(curve) == MAX_CURVE_POINTS
    assert curve["threshold"].is_monotonic_increasing  # evenly spaced along it, in order
    assert curve["recall"].iloc[0] == 1.0  # its ends kept
    assert len(tables["confusion"]) == 50_000
    few = plot_tables(y[:500], np.stack([1 - scores, scores], axis=1)[:500], classes=["a", "b"])
    assert len(few["precision_recall"]) > 400  # a small test split keeps every point
