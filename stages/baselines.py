"""baselines: fit the reference models on the train split and predict the test split.

Reads data/split/{train,test}.parquet and data/prepared/encoding.json. Fits each model in
`evaluate.baselines` (scikit-learn: majority or mean, logistic or ridge regression,
histogram gradient boosting) on the train rows only (at most `evaluate.baseline_rows` of
them, drawn by the seed; the test split is scored whole, partition by partition), on the
same encoded columns as the network (an embedded category as its code in the vocabulary
train learns, from the same train rows and `train.max_vocabulary` /
`train.min_category_rows`). Writes each one's
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

import numpy as np
import pandas as pd

from stages.common import paths
from stages.common.config import Params
from stages.common.io import partitions, read_table, say, write_json, write_table
from stages.common.tasks import baseline_conflicts, headline_metric, raise_first
from stages.data.encoding import (
    ROW_ID,
    EncodingSpec,
    embedded_vocabularies,
    to_arrays,
)
from stages.evaluation.baselines import (
    TUNED,
    fit_baselines,
    flat_inputs,
    predict_baselines,
    prediction_frame,
    scores_of,
    tune_boosting,
)
from stages.training.stream import TrainRows


def score_test_split(fitted: dict, spec: EncodingSpec, vocabularies: dict):
    """The fitted baselines on the test split, in one pass partition by partition: (the
    rows' ids, their targets, each baseline's predictions)."""
    row_ids, y_test, parts = [], [], []
    for part in partitions(paths.split_table("test")):
        frame = part.read()
        x, y = to_arrays(frame, spec, vocabularies)
        parts.append(predict_baselines(fitted, flat_inputs(x), n_classes=len(spec.classes)))
        row_ids.append(frame[ROW_ID].to_numpy())
        y_test.append(y)
    predictions = {name: np.concatenate([part[name] for part in parts]) for name in fitted}
    return pd.Series(np.concatenate(row_ids), name=ROW_ID), np.concatenate(y_test), predictions


def run(params: Params) -> None:
    """The baselines command: fit on the train split, predict and score the test split."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    names, seed = params.evaluate.baselines, params.dataset.seed
    raise_first(baseline_conflicts(spec.task, names))
    if not names:  # nothing to fit: the test rows' ids only
        row_ids = read_table(paths.split_table("test"), columns=[ROW_ID])[ROW_ID]
        write_table(prediction_frame(row_ids, {}), paths.BASELINES_PREDICTIONS)
        write_json({}, paths.BASELINES_METRICS)
        write_json({}, paths.BASELINES_TUNING)
        say("baselines", f"none listed (evaluate.baselines) -> {paths.BASELINES_METRICS}")
        return
    train_split = TrainRows.from_parquet(paths.split_table("train"))
    vocabularies = embedded_vocabularies(  # as train learns them: the same rows, the same codes
        train_split.sample(params.train.sample_rows, seed=seed),
        spec,
        max_size=params.train.max_vocabulary,
        min_count=params.train.min_category_rows,
    )
    fit_rows = train_split.sample(params.evaluate.baseline_rows, seed=seed)
    x_train, y_train = to_arrays(fit_rows, spec, vocabularies)
    tuned = None
    if TUNED in names:  # tuned on the validation split, as `stages tune` tunes the network
        validation = TrainRows.from_parquet(paths.split_table("validation"))
        x_val, y_val = to_arrays(
            validation.sample(params.evaluate.baseline_rows, seed=seed), spec, vocabularies
        )
        tuned = tune_boosting(
            (flat_inputs(x_train), y_train),
            (flat_inputs(x_val), y_val),
            task=spec.task,
            n_classes=len(spec.classes),
            trials=params.evaluate.baseline_trials,
            seed=seed,
        )
        chosen = ", ".join(f"{key} {value:.4g}" for key, value in tuned["params"].items())
        say("baselines", f"{TUNED}: {tuned['trials']} trials on the validation split: {chosen}")
    write_json(tuned or {}, paths.BASELINES_TUNING)
    fitted = fit_baselines(
        names,
        x_train=flat_inputs(x_train),
        y_train=y_train,
        n_classes=len(spec.classes),  # none for regression
        seed=seed,
        tuned=tuned,
    )
    fitted_rows = len(fit_rows)
    del x_train, y_train, fit_rows
    row_ids, y_test, predictions = score_test_split(fitted, spec, vocabularies)
    scores = {
        name: scores_of(y_test, values, task=spec.task) for name, values in predictions.items()
    }
    write_table(prediction_frame(row_ids, predictions), paths.BASELINES_PREDICTIONS)
    write_json(scores, paths.BASELINES_METRICS)
    headline = headline_metric(spec.task)
    shown = ", ".join(f"{name} {values[headline]:.4f}" for name, values in scores.items())
    say(
        "baselines",
        f"fitted on {fitted_rows:,} of {train_split.rows:,} train rows, {len(y_test):,} test "
        f"rows: test {headline} "
        f"{shown or 'none listed'} -> {paths.BASELINES_METRICS}",
    )
