"""train: fit the Keras model on the train split, checking the validation split every epoch.

Reads data/split/train.parquet, data/split/validation.parquet and data/prepared/encoding.json.
Writes models/model.keras (the network on raw columns; on the JAX backend the network
alone), models/network.keras (the network on encoded rows, which evaluate and predict
load), the per-epoch history through DVCLive (reports/train/metrics.json
and reports/train/plots/metrics/{train,eval}/*.tsv) and reports/train/report.json with the
best epoch, the epochs where validation accuracy trailed training accuracy by more than
`train.overfit_gap`, the seed, the versions and the device.

Scaling is learned here, from train rows only, and saved inside the model. After the fit,
a classifier's calibration and (two classes) its decision threshold are fitted on the
validation rows and stored in its head (stages/calibration.py); the report gives them with
the validation log loss and calibration error before and after.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd

from stages import paths
from stages.calibration import choose_threshold, decide, fit_calibration, probabilities
from stages.config import Params, ThresholdParams, TrainParams
from stages.drift import train_profile
from stages.encoding import EncodingSpec, suspected_leaks, targets, to_inputs
from stages.errors import PipelineError
from stages.io import read_table, say, staging_dir, write_json
from stages.metrics import classification_metrics
from stages.model import (
    ColumnLinear,
    PeriodicEmbedding,
    decision,
    make_model,
    model_vocabularies,
    predict_logits,
    save_model,
    set_decision,
)
from stages.resume import EpochBackup, backup_key
from stages.runtime import Cluster, configure_device, join_cluster, leave_cluster


def overfit_epochs(
    history: dict[str, list[float]], *, gap: float, score: str = "accuracy"
) -> list[dict[str, float]]:
    """Epochs (1-based) where the validation `score` trails the training score by more
    than `gap` (accuracy for classification, R2 for regression)."""
    flagged = []
    for epoch, (train_score, val_score) in enumerate(
        zip(history.get(score, []), history.get(f"val_{score}", []), strict=False), start=1
    ):
        if train_score - val_score > gap:
            flagged.append(
                {
                    "epoch": epoch,
                    score: round(float(train_score), 6),
                    f"val_{score}": round(float(val_score), 6),
                    "gap": round(float(train_score - val_score), 6),
                }
            )
    return flagged


def best_epoch(history: dict[str, list[float]], *, monitor: str) -> int:
    """1-based epoch with the best value of `monitor` (lowest loss, highest accuracy or R2)."""
    values = np.asarray(history[monitor], dtype="float64")
    index = np.argmin(values) if monitor.endswith("loss") else np.argmax(values)
    return int(index) + 1


class OverfittingMonitor(keras.callbacks.Callback):
    """Watches every epoch for the validation score falling behind the training score."""

    def __init__(self, gap: float, score: str = "accuracy") -> None:
        super().__init__()
        self.gap = gap
        self.score = score
        self.history: dict[str, list[float]] = {score: [], f"val_{score}": []}
        self.flagged: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        train_name, val_name = self.score, f"val_{self.score}"
        if train_name not in logs or val_name not in logs:
            return
        self.history[train_name].append(float(logs[train_name]))
        self.history[val_name].append(float(logs[val_name]))
        flagged = overfit_epochs(self.history, gap=self.gap, score=self.score)
        if flagged and flagged[-1]["epoch"] == epoch + 1:
            self.flagged.append(flagged[-1])
            name = "R2" if self.score == "r2" else self.score
            print(
                f"overfitting watch: epoch {epoch + 1}: validation {name} "
                f"{logs[val_name]:.4f} trails training {name} {logs[train_name]:.4f} "
                f"by more than {self.gap}",
                flush=True,
            )

    def state(self) -> dict[str, Any]:
        return {"history": self.history, "flagged": self.flagged}

    def restore(self, state: dict[str, Any]) -> None:
        self.history, self.flagged = state["history"], state["flagged"]


def open_live(live_dir: Path, *, resume: bool = False):
    """A DVCLive logger for `live_dir`; DVCLive needs a git repository with a commit.
    With `resume`, the files already in `live_dir` are kept and appended to.

    Inside a plain `dvc repro` the logger opens no DVC repository: DVCLive would build one
    (importing DVC, 0.5 s) only to name an experiment that `dvc repro` does not save. Under
    `dvc exp run` and by hand it opens one as usual (experiments, Studio's live metrics)."""
    from dvclive import Live, env
    from scmrepo.exceptions import SCMError

    class PipelineLive(Live):
        # `_init_dvc` is DVCLive's own step (the version is pinned in requirements.lock;
        # tests/test_train.py checks both ways).
        def _init_dvc(self) -> None:
            if os.getenv(env.DVC_ROOT) and not os.getenv(env.DVC_EXP_BASELINE_REV):
                self._inside_dvc_pipeline = True
                self._init_dvc_pipeline()
                self._dvc_file = self._init_dvc_file()
                return
            super()._init_dvc()

    try:
        return PipelineLive(str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume)
    except SCMError as exc:
        raise PipelineError(
            f"DVCLive cannot log to {live_dir}: {exc}",
            ["it needs a git repository with at least one commit: run `git commit` first"],
        ) from None


def best_epoch_marker(
    history: dict[str, list[float]], *, best: int, score: str = "accuracy"
) -> pd.DataFrame:
    """Two points at the best epoch spanning every curve: `dvc plots` draws them as a
    vertical line on the loss and score charts (steps count from 0, like DVCLive's)."""
    rows = []
    for metric in ("loss", score):
        values = [v for name, curve in history.items() if name.endswith(metric) for v in curve]
        rows.append((min(values), max(values)))
    return pd.DataFrame({"step": [best - 1, best - 1], "loss": list(rows[0]), score: list(rows[1])})


def set_determinism(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def steps_per_epoch(rows: int, batch_size: int, processes: int = 1) -> int:
    """Batches per epoch; with several processes the last, partial batch is dropped, since
    every process must run the same number of equal-sized steps."""
    return rows // batch_size if processes > 1 else -(-rows // batch_size)


def fitting_steps_per_execution(requested: int, steps: int) -> int:
    """The largest count up to `requested` that divides the epoch's `steps`: Keras runs
    whole executions, so one that overran an epoch would take the next epoch's batches."""
    return max(count for count in range(1, min(requested, steps) + 1) if steps % count == 0)


def epoch_batches(
    arrays: tuple[np.ndarray, ...],
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    process: int = 0,
    processes: int = 1,
    n_inputs: int = 1,
):
    """The training batches of epochs `first_epoch` to `epochs - 1`, as one tf.data stream.

    Each epoch's order is a permutation drawn from (seed, epoch) alone, so a run resumed
    at epoch k sees exactly the batches an uninterrupted run sees from epoch k. With
    several processes, every process draws the same global batches and keeps its own
    stride of each (rows process, process + processes, ...). The first `n_inputs` arrays
    are the model's inputs (grouped into one element when there are several), the rest the
    targets and sample weights.
    """
    import tensorflow as tf

    rows = len(arrays[0])
    tensors = host_copies(arrays)
    drop = processes > 1

    def one_epoch(epoch):
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.argsort(tf.random.stateless_uniform([rows], seed=key))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop)

    def gather(indices):
        if processes > 1:
            indices = indices[process::processes]
        gathered = tuple(tf.gather(tensor, indices) for tensor in tensors)
        return _group_inputs(gathered, n_inputs)

    return (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(one_epoch)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def host_copies(arrays: tuple[np.ndarray, ...]) -> tuple:
    """Each array as a TensorFlow variable in host memory, for an input pipeline to gather
    batches from. tf.data reads a variable by reference, where it holds a captured
    constant twice: once the caller drops its arrays, the rows are in memory once (while
    a variable is made, its rows are briefly there three times). Gathering from it is also
    faster (0.16 against 0.47 s per epoch of 700,000 one-hot Adult rows)."""
    import tensorflow as tf

    with tf.device("CPU:0"):
        return tuple(tf.Variable(array, trainable=False) for array in arrays)


def _group_inputs(arrays: tuple, n_inputs: int) -> tuple:
    """(a, b, y, ...) as ((a, b), y, ...) when the model takes several inputs."""
    return arrays if n_inputs == 1 else (tuple(arrays[:n_inputs]), *arrays[n_inputs:])


def _as_tuple(inputs) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def evaluation_batches(arrays: tuple[np.ndarray, ...], *, batch_size: int, n_inputs: int = 1):
    """The validation rows in order, batched and prefetched. With several processes each
    one feeds every row, so the metrics are those of the whole set on every worker."""
    import tensorflow as tf

    tensors = host_copies(arrays)

    def rows(start):
        sliced = tuple(tensor[start : start + batch_size] for tensor in tensors)
        return _group_inputs(sliced, n_inputs)

    return (
        tf.data.Dataset.range(0, len(arrays[0]), batch_size)
        .map(rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def class_weights(labels: np.ndarray, *, classes: list[str], mode: str) -> np.ndarray | None:
    """Weight per class for `train.class_weight`: balanced gives class c the weight
    rows / (classes x rows of c), as scikit-learn's compute_class_weight does."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(len(classes), dtype="float64")
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def check_task_params(spec: EncodingSpec, params: TrainParams) -> None:
    """Params that do not fit the task are a clear error, before any training."""
    if spec.task == "regression":
        if params.monitor == "val_accuracy":
            raise PipelineError(
                "train.monitor: val_accuracy is for classification; use "
                "val_loss or val_r2 for regression"
            )
        if params.class_weight != "none":
            raise PipelineError(
                "train.class_weight: class weights are for classification; "
                "set it to none for regression"
            )
    elif params.monitor == "val_r2":
        raise PipelineError(
            "train.monitor: val_r2 is for regression; use val_loss or "
            "val_accuracy for classification"
        )
    two_classes = spec.task == "classification" and len(spec.classes) == 2
    if params.calibration == "platt" and not two_classes:
        raise PipelineError("train.calibration: platt is for two classes; use temperature or none")
    if not two_classes and params.threshold != ThresholdParams():
        raise PipelineError(
            "train.threshold: a decision threshold is for two classes; remove the key or "
            "keep rule fixed at 0.5"
        )


@dataclass
class Callbacks:
    """The pipeline's callbacks of one fit: the overfitting watch, early stopping (None
    with patience 0) and the per-epoch backup, which also keeps the whole history."""

    watch: OverfittingMonitor
    stopper: keras.callbacks.EarlyStopping | None
    backup: EpochBackup

    def in_order(self, live, extra: tuple = ()) -> list[keras.callbacks.Callback]:
        """The list for fit: the backup last, so it saves what the others logged."""
        from dvclive.keras import DVCLiveCallback

        stopper = [self.stopper] if self.stopper is not None else []
        return [self.watch, DVCLiveCallback(live=live), *stopper, *extra, self.backup]


def training_callbacks(
    params: TrainParams,
    *,
    score: str,
    live_dir: Path,
    backup_path: Path | None = None,
    backup_key: str = "",
) -> Callbacks:
    """The watch on `score`, early stopping on `params.monitor` (restoring the best
    epoch's weights) and the backup in `backup_path` (None: keep the history only)."""
    watch = OverfittingMonitor(params.overfit_gap, score=score)
    stopper = None
    if params.patience > 0:
        stopper = keras.callbacks.EarlyStopping(
            monitor=params.monitor,
            mode="min" if params.monitor.endswith("loss") else "max",
            patience=params.patience,
            restore_best_weights=True,
            verbose=1,
        )
    backup = EpochBackup(
        backup_path, key=backup_key, live_dir=live_dir, early_stopping=stopper, watch=watch
    )
    return Callbacks(watch, stopper, backup)


def fit(
    trainer: keras.Model,
    train_batches,
    validation_batches,
    *,
    params: TrainParams,
    first_epoch: int,
    steps: int,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """Fit the training model from `first_epoch` to `params.epochs` on the train batches
    (epoch_batches), the validation batches (evaluation_batches) checked after every
    epoch."""
    trainer.fit(
        train_batches,
        steps_per_epoch=steps,
        validation_data=validation_batches,
        initial_epoch=first_epoch,
        epochs=params.epochs,
        shuffle=False,  # epoch_batches shuffles, reproducibly
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )


def log_summary(live, history: dict[str, list[float]], *, best: int, flagged: int) -> None:
    """DVCLive's metrics.json: the best epoch's values (the saved model holds its weights)."""
    live.summary = {
        "train": {k: float(v[best - 1]) for k, v in history.items() if not k.startswith("val_")},
        "eval": {k[4:]: float(v[best - 1]) for k, v in history.items() if k.startswith("val_")},
        "best_epoch": best,
        "epochs_run": len(history["loss"]),
        "overfit_epochs": flagged,
    }
    live.make_summary()


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
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: EncodingSpec,
    params: TrainParams,
    seed: int,
    live_dir: Path,
    backup_path: Path | None = None,
    backup_key: str = "",
    cluster: Cluster | None = None,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit the model; per-epoch metrics go to DVCLive in `live_dir`. Returns (model, report).

    With `backup_path`, the state after every epoch is saved there, and a backup made
    with the same `backup_key` is resumed from. `cluster` trains with the other processes
    of a cluster (already joined). `extra_callbacks` run after the pipeline's own (the
    benchmarks time epochs with one).
    """
    check_task_params(spec, params)
    processes, process = (cluster.num_processes, cluster.process_id) if cluster else (1, 0)
    if params.batch_size % processes:
        raise PipelineError(
            f"train.batch_size {params.batch_size} must be a multiple of the "
            f"{processes} training processes, which split every batch"
        )
    # The device first: TensorFlow can hide a GPU only before it starts using it.
    strategy, device = configure_device(params.device, params.mixed_precision)
    set_determinism(seed, params.deterministic)
    y_train, y_val = targets(train, spec), targets(validation, spec)
    if len(y_train) < params.batch_size and processes > 1:
        raise PipelineError(
            f"{len(y_train)} train rows are fewer than one batch of {params.batch_size}"
        )
    weights = None
    if spec.task == "classification":
        weights = class_weights(y_train, classes=spec.classes, mode=params.class_weight)
    score = "r2" if spec.task == "regression" else "accuracy"

    steps = steps_per_epoch(len(y_train), params.batch_size, processes)
    per_execution = fitting_steps_per_execution(params.steps_per_execution, steps)
    if per_execution != params.steps_per_execution:
        print(
            f"train: {per_execution} steps per execution, the most up to "
            f"train.steps_per_execution that divides the {steps} steps of an epoch",
            flush=True,
        )
        params = params.model_copy(update={"steps_per_execution": per_execution})
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model, trainer = make_model(
            train, y_train, spec=spec, params=params, seed=seed, steps_per_epoch=steps
        )
        vocabularies = model_vocabularies(model)
        x_train = _as_tuple(to_inputs(train, spec, vocabularies))
        x_val = _as_tuple(to_inputs(validation, spec, vocabularies))
        # A worker of a cluster cannot resume alone: the others may be at another epoch.
        callbacks = training_callbacks(
            params,
            score=score,
            live_dir=live_dir,
            backup_path=backup_path if processes == 1 else None,
            backup_key=backup_key,
        )
        done = callbacks.backup.restore(trainer)
    if done:
        print(
            f"train: resuming after epoch {done} of {params.epochs} from the backup in "
            f"{backup_path}",
            flush=True,
        )
    live = open_live(live_dir, resume=done > 0)
    live.step = done
    first = params.epochs if callbacks.backup.stopped else done
    stopper = callbacks.stopper
    n_inputs, features = len(x_train), x_train[0].shape[1]
    if first < params.epochs:
        train_arrays = (*x_train, y_train)
        if weights is not None:
            train_arrays += (weights[y_train].astype("float32"),)
        batches = epoch_batches(
            train_arrays,
            batch_size=params.batch_size,
            seed=seed,
            first_epoch=first,
            epochs=params.epochs,
            process=process,
            processes=processes,
            n_inputs=n_inputs,
        )
        del x_train, train_arrays  # the input pipeline holds the train rows now, once
        fit(
            trainer,
            batches,
            evaluation_batches((*x_val, y_val), batch_size=params.batch_size, n_inputs=n_inputs),
            params=params,
            first_epoch=first,
            steps=steps,
            callbacks=callbacks.in_order(live, extra_callbacks),
        )
    elif stopper is not None and stopper.best_weights is not None:
        # The backup was taken after the last epoch: only the best weights remain to restore.
        stopper.set_model(trainer)
        callbacks.backup.on_train_begin()
        stopper.on_train_end()
    history = callbacks.backup.history
    calibration = None
    if spec.task == "classification":
        calibration = fit_decision(model, x_val, y_val, params=params)
    report = training_report(
        history,
        spec=spec,
        params=params,
        score=score,
        resumed_after_epoch=done or None,
        calibration=calibration,
        train_rows=len(y_train),
        validation_rows=len(y_val),
        features=features,
        embedded_categories={name: len(values) for name, values in vocabularies.items()},
        parameters=model.count_params(),
        periodic_embeddings=any(isinstance(layer, PeriodicEmbedding) for layer in model.layers),
        bin_embeddings=any(isinstance(layer, ColumnLinear) for layer in model.layers),
        class_weights=None
        if weights is None
        else dict(zip(spec.classes, (round(float(w), 6) for w in weights), strict=True)),
        seed=seed,
        device=device,
        processes=processes,
        optimizer_steps=int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)),
        mixed_precision=keras.mixed_precision.dtype_policy().name == "mixed_float16",
        backend=keras.backend.backend(),
        keras_version=keras.__version__,
        tensorflow_version=_tensorflow_version(),
    )
    log_summary(live, history, best=report["best_epoch"], flagged=len(report["overfit_epochs"]))
    return model, report


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
    from stages.serving import serving_model

    return serving_model(
        model, spec=spec, vocabularies=model_vocabularies(model), missing_tokens=missing_tokens
    )


def _tensorflow_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


def inputs_key(params: Params) -> str:
    """The backup key of this run: its input files, params, code and library versions."""
    return backup_key(
        files=[paths.split_table("train"), paths.split_table("validation"), paths.ENCODING_SPEC],
        settings={
            "train": params.train.model_dump(),
            "seed": params.dataset.seed,
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "tensorflow": _tensorflow_version(),
        },
    )


def run(params: Params, cluster: Cluster | None = None) -> None:
    """The train command: fit on the train split, write the model and the reports.

    An interrupted run leaves a backup (paths.TRAIN_BACKUP) that the next run with the same
    inputs resumes from; the backup is deleted once the outputs are in place.
    """
    if cluster is not None and cluster.num_processes > 1:
        join_cluster(cluster)
    try:
        _run(params, cluster)
    finally:
        leave_cluster(cluster)


def _run(params: Params, cluster: Cluster | None) -> None:
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    train_rows = read_table(paths.split_table("train"))
    validation_rows = read_table(paths.split_table("validation"))
    with staging_dir(paths.TRAIN_DIR) as live_dir:
        model, report = train_model(
            train=train_rows,
            validation=validation_rows,
            spec=spec,
            params=params.train,
            seed=params.dataset.seed,
            live_dir=live_dir,
            backup_path=Path(paths.TRAIN_BACKUP),
            backup_key=inputs_key(params),
            cluster=cluster,
        )
        write_json(report, live_dir / Path(paths.TRAIN_REPORT).name)
        best_epoch_marker(
            report["history"], best=report["best_epoch"], score=report["overfit_score"]
        ).to_csv(live_dir / "plots" / "best_epoch.tsv", sep="\t", index=False)
        save_model(serving(model, spec, params.prepare.missing_tokens), paths.MODEL)
        save_model(model, paths.NETWORK)
        write_json(train_profile(train_rows, spec), paths.PROFILE)
    Path(paths.TRAIN_BACKUP).unlink(missing_ok=True)
    for name, reason in report["suspected_leaks_excluded"].items():
        say("train", f"warning: column '{name}' is not a model input: {reason}")
    best = report["best"]
    score = report["overfit_score"]
    say(
        "train",
        f"{report['train_rows']:,} rows, {report['epochs_run']} epochs, best epoch "
        f"{report['best_epoch']} (val {score} {best.get('val_' + score, float('nan')):.4f}), "
        f"{len(report['overfit_epochs'])} epoch(s) flagged for overfitting -> {paths.MODEL}",
    )
