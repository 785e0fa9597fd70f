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
test metrics (reports/baselines/metrics.json; on a test split of more than `EXACT_ROWS`
rows added up partition by partition, ROC AUC from score histograms), and how many train
rows they were fitted on, of how many (reports/baselines/fit.json, which evaluate's report
quotes). `tuned_gradient_boosting` is boosting whose
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
from stages.common.io import (
    EXACT_ROWS,
    FileWriter,
    Partition,
    partitions,
    say,
    write_json,
    write_table,
)
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
from stages.evaluation.tally import ClassTally, ValueTally, rounded
from stages.training.stream import TrainRows


def score_test_split(fitted: dict, parts: list[Partition], spec: EncodingSpec, vocabularies):
    """The fitted baselines on the test split, partition by partition: each one's test
    metrics; writes their predictions. A split of at most `EXACT_ROWS` rows is scored on
    its whole arrays (scikit-learn's metrics); a larger one is added up partition by
    partition (`stages.evaluation.tally`), its predictions written as they come."""
    n_classes = len(spec.classes)
    if sum(part.rows for part in parts) > EXACT_ROWS:
        tallies = {name: ClassTally(n_classes) if n_classes else ValueTally() for name in fitted}
        with FileWriter(paths.BASELINES_PREDICTIONS) as written:
            for frame, y, predictions in _predicted_parts(fitted, parts, spec, vocabularies):
                for name, values in predictions.items():
                    tallies[name].add(y, values)
                written.write(prediction_frame(frame[ROW_ID], predictions))
        return {name: rounded(tally.metrics()) for name, tally in tallies.items()}
    row_ids, y_test, parts_predicted = [], [], []
    for frame, y, predictions in _predicted_parts(fitted, parts, spec, vocabularies):
        row_ids.append(frame[ROW_ID].to_numpy())
        y_test.append(y)
        parts_predicted.append(predictions)
    y_all = np.concatenate(y_test)
    predictions = {name: np.concatenate([p[name] for p in parts_predicted]) for name in fitted}
    row_id = pd.Series(np.concatenate(row_ids), name=ROW_ID)
    write_table(prediction_frame(row_id, predictions), paths.BASELINES_PREDICTIONS)
    return {name: scores_of(y_all, values, task=spec.task) for name, values in predictions.items()}


def _predicted_parts(fitted: dict, parts: list[Partition], spec: EncodingSpec, vocabularies):
    """Each test partition's rows, targets and every baseline's predictions."""
    for part in parts:
        frame = part.read()
        x, y = to_arrays(frame, spec, vocabularies)
        yield frame, y, predict_baselines(fitted, flat_inputs(x), n_classes=len(spec.classes))


def run(params: Params) -> None:
    """The baselines command: fit on the train split, predict and score the test split."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    names, seed = params.evaluate.baselines, params.dataset.seed
    raise_first(baseline_conflicts(spec.task, names))
    if not names:  # nothing to fit: the test rows' ids only
        _write_none()
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
    fit = {
        "seed": seed,
        "train_rows": train_split.rows,
        "fitted_rows": len(fit_rows),
        "tuned_on_validation_rows": len(y_val) if tuned else None,
    }
    del x_train, y_train, fit_rows
    parts = partitions(paths.split_table("test"))
    scores = score_test_split(fitted, parts, spec, vocabularies)
    fit["test_rows"] = sum(part.rows for part in parts)
    write_json(scores, paths.BASELINES_METRICS)
    write_json(fit, paths.BASELINES_FIT)
    _say_scores(scores, fit, task=spec.task)


def _write_none() -> None:
    """No baseline listed: the predictions file holds the test rows' ids alone."""
    with FileWriter(paths.BASELINES_PREDICTIONS) as written:
        for part in partitions(paths.split_table("test")):
            written.write(part.read(columns=[ROW_ID]).reset_index(drop=True))
    for target in (paths.BASELINES_METRICS, paths.BASELINES_TUNING, paths.BASELINES_FIT):
        write_json({}, target)
    say("baselines", f"none listed (evaluate.baselines) -> {paths.BASELINES_METRICS}")


def _say_scores(scores: dict, fit: dict, *, task: str) -> None:
    headline = headline_metric(task)
    shown = ", ".join(f"{name} {values[headline]:.4f}" for name, values in scores.items())
    say(
        "baselines",
        f"fitted on {fit['fitted_rows']:,} of {fit['train_rows']:,} train rows, "
        f"{fit['test_rows']:,} test rows: test {headline} {shown} -> {paths.BASELINES_METRICS}",
    )
