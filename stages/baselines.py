"""baselines: fit the reference models on the train split and predict the test split.

Reads data/split/{train,test}.parquet and data/prepared/encoding.json. Fits each model in
`evaluate.baselines` (scikit-learn: majority or mean, logistic or ridge regression,
histogram gradient boosting) on the train rows only, on the same encoded columns as the
network (an embedded category as its code in the vocabulary train learns, from the same
train rows and `train.max_vocabulary` / `train.min_category_rows`). Writes each one's
test-row predictions (reports/baselines/predictions.parquet: `row_id`, then per baseline
one probability column per class, `<name>:<class index>`, or its predicted value) and
test metrics (reports/baselines/metrics.json). `tuned_gradient_boosting` is boosting whose
params a seeded Optuna study of `evaluate.baseline_trials` trials chose on the validation
split (the budget `stages tune` gives the network); its choice is in
reports/baselines/tuning.json.

A stage of its own, after split: changing the network's params re-runs train and evaluate,
never these fits. evaluate reads both files to put the network beside the baselines, on
the same resamples of the same test rows.
"""

from __future__ import annotations

from stages.common import paths
from stages.common.config import Params
from stages.common.io import read_table, say, write_json, write_table
from stages.common.tasks import baseline_conflicts, headline_metric, raise_first
from stages.data.encoding import (
    ROW_ID,
    EncodingSpec,
    embedded_vocabularies,
    to_arrays,
)
from stages.evaluation.baselines import (
    TUNED,
    baseline_predictions,
    flat_inputs,
    prediction_frame,
    scores_of,
    tune_boosting,
)


def run(params: Params) -> None:
    """The baselines command: fit on the train split, predict and score the test split."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    names = params.evaluate.baselines
    raise_first(baseline_conflicts(spec.task, names))
    if not names:  # nothing to fit: the test rows' ids only
        row_ids = read_table(paths.split_table("test"), columns=[ROW_ID])[ROW_ID]
        write_table(prediction_frame(row_ids, {}), paths.BASELINES_PREDICTIONS)
        write_json({}, paths.BASELINES_METRICS)
        write_json({}, paths.BASELINES_TUNING)
        say("baselines", f"none listed (evaluate.baselines) -> {paths.BASELINES_METRICS}")
        return
    train_rows = read_table(paths.split_table("train"))
    test_rows = read_table(paths.split_table("test"))
    vocabularies = embedded_vocabularies(  # as train learns them: the same codes
        train_rows,
        spec,
        max_size=params.train.max_vocabulary,
        min_count=params.train.min_category_rows,
    )
    x_train, y_train = to_arrays(train_rows, spec, vocabularies)
    x_test, y_test = to_arrays(test_rows, spec, vocabularies)
    tuned = None
    if TUNED in names:  # tuned on the validation split, as `stages tune` tunes the network
        x_val, y_val = to_arrays(read_table(paths.split_table("validation")), spec, vocabularies)
        tuned = tune_boosting(
            (flat_inputs(x_train), y_train),
            (flat_inputs(x_val), y_val),
            task=spec.task,
            n_classes=len(spec.classes),
            trials=params.evaluate.baseline_trials,
            seed=params.dataset.seed,
        )
        chosen = ", ".join(f"{key} {value:.4g}" for key, value in tuned["params"].items())
        say("baselines", f"{TUNED}: {tuned['trials']} trials on the validation split: {chosen}")
    write_json(tuned or {}, paths.BASELINES_TUNING)
    predictions = baseline_predictions(
        names,
        x_train=flat_inputs(x_train),
        y_train=y_train,
        x_test=flat_inputs(x_test),
        n_classes=len(spec.classes),  # none for regression
        seed=params.dataset.seed,
        tuned=tuned,
    )
    scores = {
        name: scores_of(y_test, values, task=spec.task) for name, values in predictions.items()
    }
    write_table(prediction_frame(test_rows[ROW_ID], predictions), paths.BASELINES_PREDICTIONS)
    write_json(scores, paths.BASELINES_METRICS)
    headline = headline_metric(spec.task)
    shown = ", ".join(f"{name} {values[headline]:.4f}" for name, values in scores.items())
    say(
        "baselines",
        f"{len(train_rows):,} train rows, {len(test_rows):,} test rows: test {headline} "
        f"{shown or 'none listed'} -> {paths.BASELINES_METRICS}",
    )
