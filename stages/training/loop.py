"""The fit: set up, build, callbacks, fit, calibrate, report (`train_model`).

Scaling is learned from train rows only and saved inside the model. After the fit, a
classifier's calibration and (two classes) its decision threshold are fitted on the
validation rows and stored in its head (stages/model/calibration.py).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import pandas as pd

from stages.common.config import TrainParams
from stages.common.errors import PipelineError
from stages.common.io import say
from stages.common.runtime import Cluster, configure_device, tensorflow_version
from stages.common.tasks import check_train_params, headline_metric
from stages.data.encoding import EncodingSpec, suspected_leaks, targets, to_inputs
from stages.evaluation.metrics import classification_metrics
from stages.model.build import make_model, model_vocabularies
from stages.model.calibration import choose_threshold, decide, fit_calibration, probabilities
from stages.model.head import decision, set_decision
from stages.model.inference import predict_logits
from stages.model.layers import ColumnLinear, PeriodicEmbedding
from stages.training.batches import (
    as_tuple,
    class_weights,
    epoch_batches,
    evaluation_batches,
    fitting_steps_per_execution,
    steps_per_epoch,
    streamed_batches,
)
from stages.training.callbacks import (
    Callbacks,
    best_epoch,
    log_summary,
    open_live,
    overfit_epochs,
    training_callbacks,
)
from stages.training.stream import TrainRows, process_steps, stream_windows


def set_determinism(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def fit(
    trainer: keras.Model,
    train_batches,
    validation_batches,
    *,
    params: TrainParams,
    first_epoch: int,
    steps: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int | None = None,
) -> None:
    """Fit the training model from `first_epoch` to `params.epochs` on the train batches
    (epoch_batches), the validation batches (evaluation_batches) checked after every
    epoch. Keras's progress: a bar on a terminal, a line per epoch otherwise (`verbose`
    overrides)."""
    trainer.fit(
        train_batches,
        steps_per_epoch=steps,
        validation_data=validation_batches,
        initial_epoch=first_epoch,
        epochs=params.epochs,
        shuffle=False,  # epoch_batches shuffles, reproducibly
        callbacks=callbacks,
        verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
    )


def training_report(
    history: dict[str, list[float]],
    *,
    spec: EncodingSpec,
    params: TrainParams,
    score: str,
    **facts: Any,
) -> dict[str, Any]:
    """The training report: the best epoch by `params.monitor`, its values, the epochs
    flagged for overfitting and the whole history, with `facts` (rows, device, ...)."""
    best = best_epoch(history, monitor=params.monitor)
    flagged = overfit_epochs(history, gap=params.overfit_gap, score=score)
    return {
        "task": spec.task,
        "model": params.model,
        "members": params.members if params.model == "tabm" else 1,
        "epochs_run": len(history["loss"]),
        "best_epoch": best,
        "monitor": params.monitor,
        "restored_best_weights": params.patience > 0,
        "best": {name: round(float(values[best - 1]), 6) for name, values in history.items()},
        "overfit_gap": params.overfit_gap,
        "overfit_score": score,
        "overfit_epochs": flagged,
        "overfitting": bool(flagged),
        "history": {name: [round(float(v), 6) for v in values] for name, values in history.items()},
        "suspected_leaks_excluded": suspected_leaks(spec),
        "deterministic": params.deterministic,
        "steps_per_execution": params.steps_per_execution,
        **facts,
    }


def train_model(
    *,
    train: pd.DataFrame | TrainRows,
    validation: pd.DataFrame,
    spec: EncodingSpec,
    params: TrainParams,
    seed: int,
    live_dir: Path,
    backup_path: Path | None = None,
    backup_key: str = "",
    cluster: Cluster | None = None,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    verbose: int | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Set up, build, callbacks, fit, calibrate, report: returns (model, report).

    `train`: the rows in memory, or a Parquet file's (`TrainRows.from_parquet`), which
    stream from disk when there are more than `train.shuffle_rows` of them.

    Per-epoch metrics go to DVCLive in `live_dir`; with `backup_path`, the state after
    every epoch is saved there and a backup with the same `backup_key` resumed from.
    `cluster`: train with its other processes. `extra_callbacks` run after the pipeline's;
    `verbose` sets Keras's progress output (0: none, as each trial of `stages tune`).
    """
    check_train_params(spec.task, len(spec.classes), params)
    processes, process = (cluster.num_processes, cluster.process_id) if cluster else (1, 0)
    rows = train if isinstance(train, TrainRows) else TrainRows(frame=train)
    y_train, y_val = rows.labels(spec), targets(validation, spec)
    _check_batches(params, processes=processes, rows=len(y_train))
    # The device first: TensorFlow can hide a GPU only before it starts using it.
    strategy, device = configure_device(params.device, params.mixed_precision)
    set_determinism(seed, params.deterministic)
    weights = None
    if spec.task == "classification":
        weights = class_weights(y_train, classes=spec.classes, mode=params.class_weight)
    streamed = rows.rows > params.shuffle_rows
    steps, params = _steps(params, rows=rows, processes=processes, streamed=streamed)
    whole = None if streamed else rows.everything()
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        fitted_on = fitting_sample(rows, whole, y_train, params=params, seed=seed, spec=spec)
        model, trainer = make_model(
            *fitted_on, spec=spec, params=params, seed=seed, steps_per_epoch=steps, rows=rows.rows
        )
        del fitted_on
        rows.samples.clear()
        vocabularies = model_vocabularies(model)
        # Held in a dict that the fit empties: the input pipeline then holds the rows, once.
        inputs = {
            "train": Streamed(rows, spec, vocabularies)
            if streamed
            else as_tuple(to_inputs(whole, spec, vocabularies)),
            "validation": (*as_tuple(to_inputs(validation, spec, vocabularies)), y_val),
        }
        del whole
        # A worker of a cluster cannot resume alone: the others may be at another epoch.
        backup = (backup_path if processes == 1 else None, backup_key)
        callbacks, done = _callbacks(trainer, params, spec=spec, live_dir=live_dir, backup=backup)
    live = open_live(live_dir, resume=done > 0)
    live.step = done
    if done < params.epochs and not callbacks.backup.stopped:
        plan = Plan(seed, done, steps, process, processes, verbose)
        in_order = callbacks.in_order(live, extra_callbacks)
        _fit_epochs(trainer, inputs, y_train, weights, plan, params=params, callbacks=in_order)
    else:
        callbacks.restore_best(trainer)  # backed up after the last epoch
    facts = _model_facts(model, trainer, vocabularies, weights, spec=spec)
    facts |= {"train_rows": len(y_train), "seed": seed, "device": device, "processes": processes}
    facts["streamed_shards"] = len(rows.shard_rows) if streamed else None
    facts["resumed_after_epoch"] = done or None
    report = _report(
        model, inputs["validation"], callbacks, live, spec=spec, params=params, facts=facts
    )
    return model, report


def _callbacks(trainer, params, *, spec, live_dir, backup) -> tuple[Callbacks, int]:
    """The fit's callbacks, and the epochs already done by a backup restored."""
    backup_path, backup_key = backup
    callbacks = training_callbacks(
        params,
        score=headline_metric(spec.task),
        live_dir=live_dir,
        backup_path=backup_path,
        backup_key=backup_key,
    )
    done = callbacks.backup.restore(trainer)
    if done:
        say(
            "train",
            f"resuming after epoch {done} of {params.epochs} from the backup in {backup_path}",
        )
    return callbacks, done


def _report(model, validation: tuple, callbacks, live, *, spec, params, facts) -> dict[str, Any]:
    """Fit the classifier's decision on the validation rows; write DVCLive's summary;
    return the training report."""
    *x_val, y_val = validation
    calibration = None
    if spec.task == "classification":
        calibration = fit_decision(model, tuple(x_val), y_val, params=params)
    history = callbacks.backup.history
    report = training_report(
        history,
        spec=spec,
        params=params,
        score=headline_metric(spec.task),
        calibration=calibration,
        validation_rows=len(y_val),
        features=x_val[0].shape[1],
        **facts,
    )
    log_summary(live, history, best=report["best_epoch"], flagged=len(report["overfit_epochs"]))
    return report


class Plan(NamedTuple):
    seed: int
    first_epoch: int
    steps: int  # per epoch
    process: int
    processes: int
    verbose: int | None = None


def _fit_epochs(
    trainer, inputs: dict[str, tuple], y_train, weights, plan: Plan, *, params, callbacks
) -> None:
    """Fit from `first_epoch` on: this process's share of each epoch's seeded batches.
    Takes the train rows out of `inputs`, so the input pipeline alone holds them (or, for
    rows streamed from disk, a window of them)."""
    train = inputs.pop("train")
    n_inputs = len(inputs["validation"]) - 1
    if isinstance(train, Streamed):
        batches = train.batches(weights, plan, params=params, n_inputs=n_inputs)
    else:
        arrays = (*train, y_train)
        if weights is not None:
            arrays += (weights[y_train].astype("float32"),)
        del train
        batches = epoch_batches(
            arrays,
            batch_size=params.batch_size,
            seed=plan.seed,
            first_epoch=plan.first_epoch,
            epochs=params.epochs,
            process=plan.process,
            processes=plan.processes,
            n_inputs=n_inputs,
        )
        del arrays
    validation_batches = evaluation_batches(
        inputs["validation"], batch_size=params.batch_size, n_inputs=n_inputs
    )
    fit(
        trainer,
        batches,
        validation_batches,
        params=params,
        first_epoch=plan.first_epoch,
        steps=plan.steps,
        callbacks=callbacks,
        verbose=plan.verbose,
    )


def fitting_sample(
    rows: TrainRows, whole: pd.DataFrame | None, labels, *, params, seed: int, spec
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows (and their labels) what is learned from train rows is fitted on: all of
    them up to `train.sample_rows`, else that many drawn by the seed."""
    if rows.rows <= params.sample_rows and whole is not None:
        return whole, labels
    sample = rows.sample(params.sample_rows, seed=seed)
    if len(sample) == rows.rows:
        return sample, labels
    return sample, targets(sample, spec)


class Streamed(NamedTuple):
    """Train rows that stream from disk, and the vocabularies their encoding needs."""

    rows: TrainRows
    spec: EncodingSpec
    vocabularies: dict[str, list[str]]

    def batches(self, weights, plan: Plan, *, params: TrainParams, n_inputs: int):
        spec = self.spec

        def encode(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
            labels = targets(frame, spec)
            arrays = (*as_tuple(to_inputs(frame, spec, self.vocabularies)), labels)
            if weights is not None:
                arrays += (weights[labels].astype("float32"),)
            return arrays

        def windows(epoch) -> Iterator[tuple[np.ndarray, ...]]:
            return stream_windows(
                self.rows,
                encode,
                seed=plan.seed,
                epoch=int(epoch),
                shuffle_rows=params.shuffle_rows,
                process=plan.process,
                processes=plan.processes,
            )

        return streamed_batches(
            windows,
            encode(self.rows.shard(0).iloc[:1]),
            batch_size=params.batch_size,
            first_epoch=plan.first_epoch,
            epochs=params.epochs,
            processes=plan.processes,
            steps=plan.steps,
            n_inputs=n_inputs,
        )


def _check_batches(params: TrainParams, *, processes: int, rows: int) -> None:
    if params.batch_size % processes:
        raise PipelineError(
            f"train.batch_size {params.batch_size} must be a multiple of the "
            f"{processes} training processes, which split every batch"
        )
    if rows < params.batch_size and processes > 1:
        raise PipelineError(f"{rows} train rows are fewer than one batch of {params.batch_size}")


def _steps(
    params: TrainParams, *, rows: TrainRows, processes: int, streamed: bool
) -> tuple[int, TrainParams]:
    """Steps per epoch (of every process, reading its own shards when the rows stream),
    and the params with train.steps_per_execution fitted to divide them."""
    if streamed and processes > 1:
        steps = process_steps(rows.shard_rows, params.batch_size, processes)
    else:
        steps = steps_per_epoch(rows.rows, params.batch_size, processes)
    per_execution = fitting_steps_per_execution(params.steps_per_execution, steps)
    if per_execution != params.steps_per_execution:
        say(
            "train",
            f"{per_execution} steps per execution, the most up to "
            f"train.steps_per_execution that divides the {steps} steps of an epoch",
        )
        params = params.model_copy(update={"steps_per_execution": per_execution})
    return steps, params


def _model_facts(model, trainer, vocabularies, weights, *, spec) -> dict[str, Any]:
    """What the training report says about the network built and the run."""
    return {
        "embedded_categories": {name: len(values) for name, values in vocabularies.items()},
        "parameters": model.count_params(),
        "periodic_embeddings": any(isinstance(x, PeriodicEmbedding) for x in model.layers),
        "bin_embeddings": any(isinstance(layer, ColumnLinear) for layer in model.layers),
        "class_weights": None
        if weights is None
        else dict(zip(spec.classes, (round(float(w), 6) for w in weights), strict=True)),
        "optimizer_steps": int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)),
        "mixed_precision": keras.mixed_precision.dtype_policy().name == "mixed_float16",
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "tensorflow_version": tensorflow_version(),
    }


def fit_decision(
    model: keras.Model, x_val: tuple, y_val: np.ndarray, *, params: TrainParams
) -> dict[str, Any]:
    """Calibrate a classifier and choose its decision threshold on the validation rows;
    both are stored in the model's head. Returns what was fitted, with the validation
    log loss and calibration error before and after."""
    logits = predict_logits(model, x_val)
    scale, shift = fit_calibration(logits, y_val, method=params.calibration)
    before = probabilities(logits)
    after = probabilities(logits, scale=scale, shift=shift)
    threshold = 0.5
    if logits.shape[1] == 1:
        threshold = choose_threshold(y_val, after[:, 1], params.threshold)
    set_decision(model, scale=scale, shift=shift, threshold=threshold)
    held = decision(model)
    labels = decide(after, held["threshold"] if logits.shape[1] == 1 else None)
    uncalibrated = classification_metrics(y_val, before)
    calibrated = classification_metrics(y_val, after, labels)
    return {
        "method": params.calibration,
        "temperature": round(1.0 / held["scale"], 6) if held["scale"] > 0 else None,
        **held,
        "threshold_rule": params.threshold.rule if logits.shape[1] == 1 else None,
        "validation": {
            "log_loss_before": uncalibrated["log_loss"],
            "log_loss_after": calibrated["log_loss"],
            "calibration_error_before": uncalibrated["calibration_error"],
            "calibration_error_after": calibrated["calibration_error"],
            "accuracy": calibrated["accuracy"],  # at the model's decisions
        },
    }


def serving(model: keras.Model, spec: EncodingSpec, missing_tokens: list[str]) -> keras.Model:
    """The model to save: on TensorFlow, the core wrapped in the row transform, so it takes
    raw columns; on JAX (no string tensors) the core alone (`stages export` wraps it)."""
    if keras.backend.backend() != "tensorflow":
        return model
    from stages.model.serving import serving_model

    return serving_model(
        model, spec=spec, vocabularies=model_vocabularies(model), missing_tokens=missing_tokens
    )
