"""The baselines: tuned_gradient_boosting's study on the validation rows, and the fits."""

import numpy as np
import pytest

from stages.common.config import EvaluateParams
from stages.common.tasks import baseline_conflicts
from stages.evaluation.baselines import TUNED, baseline_predictions, tune_boosting


def rows(count: int, seed: int, *, regression: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 3)).astype("float32")
    signal = x[:, 0] + 0.5 * x[:, 1]
    y = signal + rng.normal(scale=0.1, size=count) if regression else (signal > 0).astype(int)
    return x, y


@pytest.mark.parametrize(("regression", "metric"), [(False, "accuracy"), (True, "r2")])
def test_tuned_boosting_is_chosen_on_validation_rows_and_repeats_itself(regression, metric):
    train, validation, test = (
        rows(n, s, regression=regression) for n, s in ((400, 0), (150, 1), (150, 2))
    )
    task = "regression" if regression else "classification"
    n_classes = 0 if regression else 2
    study = tune_boosting(train, validation, task=task, n_classes=n_classes, trials=4, seed=0)
    assert study == tune_boosting(
        train, validation, task=task, n_classes=n_classes, trials=4, seed=0
    )
    chosen = study["params"]
    assert 0.01 <= chosen["learning_rate"] <= 0.3 and 8 <= chosen["max_leaf_nodes"] <= 128
    assert 5 <= chosen["min_samples_leaf"] <= 100 and 0.3 <= chosen["max_features"] <= 1.0
    assert study["trials"] == 4 and study["validation"][metric] > 0.7
    predicted = baseline_predictions(
        ["hist_gradient_boosting", TUNED],
        x_train=train[0],
        y_train=train[1],
        x_test=test[0],
        n_classes=n_classes,
        seed=0,
        tuned=study,
    )
    assert predicted[TUNED].shape == ((150,) if regression else (150, 2))
    assert not np.allclose(predicted[TUNED], predicted["hist_gradient_boosting"])


def test_the_tuned_baseline_needs_its_study_and_fits_either_task():
    x, y = rows(50, 0)
    with pytest.raises(ValueError, match="needs its study"):
        baseline_predictions([TUNED], x_train=x, y_train=y, x_test=x, n_classes=2, seed=0)
    assert baseline_conflicts("classification", [TUNED]) == []
    assert baseline_conflicts("regression", [TUNED]) == []
    assert EvaluateParams(baselines=["majority", TUNED]).baseline_trials == 30
