"""The task rules: what train and evaluate refuse, and what infer-schema fits by the same
rules."""

import pytest

from stages.common.config import EvaluateParams, GateParams, TrainParams
from stages.common.errors import PipelineError
from stages.common.tasks import (
    REMOVE,
    check_evaluate_params,
    check_train_params,
    evaluate_conflicts,
    headline_metric,
    require_two_classes,
    train_conflicts,
)
from stages.tools.infer_schema import fit_task


def test_train_params_that_do_not_fit_the_task_are_errors_naming_the_key():
    with pytest.raises(PipelineError, match=r"train\.monitor: val_accuracy is for classification"):
        check_train_params("regression", 0, TrainParams(monitor="val_accuracy"))
    with pytest.raises(PipelineError, match=r"train\.class_weight"):
        check_train_params("regression", 0, TrainParams(class_weight="balanced"))
    with pytest.raises(PipelineError, match=r"train\.monitor: val_r2 is for regression"):
        check_train_params("classification", 2, TrainParams(monitor="val_r2"))
    with pytest.raises(PipelineError, match=r"train\.threshold: a decision threshold is for two"):
        check_train_params("classification", 3, TrainParams(threshold={"rule": "f1"}))
    with pytest.raises(PipelineError, match=r"train\.calibration: platt is for two classes"):
        check_train_params("classification", 3, TrainParams(calibration="platt"))
    check_train_params("regression", 0, TrainParams(monitor="val_r2"))
    for task, classes in (("classification", 2), ("classification", 3), ("regression", 0)):
        check_train_params(task, classes, TrainParams())  # the defaults suit any task


def test_evaluate_params_must_suit_the_task_and_name_feature_columns():
    check_evaluate_params("classification", EvaluateParams(slices=["age"]), ["age"])
    with pytest.raises(PipelineError, match=r"evaluate\.slices: 'sex' is not a feature column"):
        check_evaluate_params("classification", EvaluateParams(slices=["sex"]), ["age"])
    with pytest.raises(PipelineError, match=r"evaluate\.baselines: majority, logistic cannot"):
        check_evaluate_params("regression", EvaluateParams(), ["age"])
    gates = GateParams(minimum={"accuracy": 0.8})
    regression = EvaluateParams(baselines=["mean"], gates=gates)
    with pytest.raises(PipelineError, match=r"evaluate\.gates\.minimum\.accuracy: not a regr"):
        check_evaluate_params("regression", regression, ["age"])


def test_every_conflict_carries_a_fix_that_passes_the_check():
    train = TrainParams(monitor="val_accuracy", class_weight="balanced", calibration="platt")
    conflicts = train_conflicts("regression", 0, train)
    assert {c.key: c.fix for c in conflicts} == {
        "train.monitor": "val_loss",
        "train.class_weight": "none",
        "train.calibration": "temperature",
    }
    threshold = train_conflicts("classification", 3, TrainParams(threshold={"rule": "f1"}))
    assert [(c.key, c.fix) for c in threshold] == [("train.threshold", REMOVE)]
    fixed = {c.key.split(".")[1]: c.fix for c in conflicts}
    check_train_params("regression", 0, train.model_copy(update=fixed))
    slices = evaluate_conflicts("classification", EvaluateParams(slices=["a", "b"]), ["b"])
    assert [(c.key, c.fix) for c in slices] == [("evaluate.slices", ["b"])]


def test_infer_schema_fits_params_by_the_rules_train_and_evaluate_check():
    raw = {
        "train": {"monitor": "val_accuracy", "threshold": {"rule": "f1"}},
        "evaluate": {"slices": ["sex", "gone"]},
    }
    changes = fit_task(raw, "regression", classes=0, features=["sex"])
    assert raw["train"]["monitor"] == "val_loss" and "threshold" not in raw["train"]
    assert raw["evaluate"]["slices"] == ["sex"]
    assert raw["evaluate"]["baselines"] == ["mean", "linear", "hist_gradient_boosting"]
    assert any(change.startswith("train.monitor: val_loss") for change in changes)
    check_train_params("regression", 0, TrainParams.model_validate(raw["train"]))
    check_evaluate_params("regression", EvaluateParams.model_validate(raw["evaluate"]), ["sex"])


def test_the_headline_metric_and_the_two_classes_rule():
    assert headline_metric("classification") == "accuracy"
    assert headline_metric("regression") == "r2"
    require_two_classes(2, where="target column 'y'")
    with pytest.raises(PipelineError, match=r"target column 'y' has 1 class\(es\); at least two"):
        require_two_classes(1, where="target column 'y'")


def test_a_gate_on_a_metric_the_task_lacks_is_removed_by_its_fix():
    raw = {
        "evaluate": {
            "baselines": ["mean", "linear", "hist_gradient_boosting"],
            "gates": {"minimum": {"accuracy": 0.8, "r2": 0.1}, "must_beat": {"mean": ["r2"]}},
        }
    }
    evaluate = EvaluateParams.model_validate(raw["evaluate"])
    conflicts = evaluate_conflicts("regression", evaluate)
    assert [(c.key, c.fix) for c in conflicts] == [("evaluate.gates.minimum.accuracy", REMOVE)]
    from stages.tools.infer_schema import set_key

    set_key(raw, conflicts[0].key, conflicts[0].fix)
    assert raw["evaluate"]["gates"]["minimum"] == {"r2": 0.1}
    must_beat = {"gates": {"must_beat": {"mean": ["r2", "accuracy"]}}, "baselines": ["mean"]}
    beat = evaluate_conflicts("regression", EvaluateParams.model_validate(must_beat))
    assert [c.key for c in beat] == ["evaluate.gates.must_beat.mean.accuracy"]
    holder = {"evaluate": must_beat}
    set_key(holder, beat[0].key, beat[0].fix)
    assert must_beat["gates"]["must_beat"]["mean"] == ["r2"]
