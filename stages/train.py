"""train: fit the Keras model on the train split, checking the validation split every epoch.

Reads data/split/train.parquet, data/split/validation.parquet and data/prepared/encoding.json.
Writes models/model.keras, the per-epoch history through DVCLive (reports/train/metrics.json
and reports/train/plots/metrics/{train,eval}/*.tsv) and reports/train/report.json with the
best epoch, the epochs where validation accuracy trailed training accuracy by more than
`train.overfit_gap`, the seed, the versions and the device.

Scaling is learned here, from train rows only, and saved inside the model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd

from stages import paths
from stages.config import Params, TrainParams
from stages.encoding import EncodingSpec, to_arrays
from stages.errors import PipelineError
from stages.io import read_table, say, staging_dir, write_json
from stages.model import make_model, save_model


def overfit_epochs(history: dict[str, list[float]], *, gap: float) -> list[dict[str, float]]:
    """Epochs (1-based) where validation accuracy trails training accuracy by more than `gap`."""
    flagged = []
    for epoch, (train_acc, val_acc) in enumerate(
        zip(history.get("accuracy", []), history.get("val_accuracy", []), strict=False), start=1
    ):
        if train_acc - val_acc > gap:
            flagged.append(
                {
                    "epoch": epoch,
                    "accuracy": round(float(train_acc), 6),
                    "val_accuracy": round(float(val_acc), 6),
                    "gap": round(float(train_acc - val_acc), 6),
                }
            )
    return flagged


def best_epoch(history: dict[str, list[float]], *, monitor: str) -> int:
    """1-based epoch with the best value of `monitor` (lowest loss, highest accuracy)."""
    values = np.asarray(history[monitor], dtype="float64")
    index = np.argmin(values) if monitor.endswith("loss") else np.argmax(values)
    return int(index) + 1


class OverfittingMonitor(keras.callbacks.Callback):
    """Watches every epoch for validation accuracy falling behind training accuracy."""

    def __init__(self, gap: float) -> None:
        super().__init__()
        self.gap = gap
        self.history: dict[str, list[float]] = {"accuracy": [], "val_accuracy": []}
        self.flagged: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if "accuracy" not in logs or "val_accuracy" not in logs:
            return
        self.history["accuracy"].append(float(logs["accuracy"]))
        self.history["val_accuracy"].append(float(logs["val_accuracy"]))
        flagged = overfit_epochs(self.history, gap=self.gap)
        if flagged and flagged[-1]["epoch"] == epoch + 1:
            self.flagged.append(flagged[-1])
            print(
                f"overfitting watch: epoch {epoch + 1}: validation accuracy "
                f"{logs['val_accuracy']:.4f} trails training accuracy {logs['accuracy']:.4f} "
                f"by more than {self.gap}",
                flush=True,
            )


def open_live(live_dir: Path):
    """A DVCLive logger for `live_dir`; DVCLive needs a git repository with a commit."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        return Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)
    except SCMError as exc:
        raise PipelineError(
            f"DVCLive cannot log to {live_dir}: {exc}",
            ["it needs a git repository with at least one commit: run `git commit` first"],
        ) from None


def best_epoch_marker(history: dict[str, list[float]], *, best: int) -> pd.DataFrame:
    """Two points at the best epoch spanning every curve: `dvc plots` draws them as a
    vertical line on the loss and accuracy charts (steps count from 0, like DVCLive's)."""
    rows = []
    for metric in ("loss", "accuracy"):
        values = [v for name, curve in history.items() if name.endswith(metric) for v in curve]
        rows.append((min(values), max(values)))
    return pd.DataFrame(
        {"step": [best - 1, best - 1], "loss": list(rows[0]), "accuracy": list(rows[1])}
    )


def device_name() -> str:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"GPU x{len(gpus)}" if gpus else "CPU"
    return keras.backend.backend()


def set_determinism(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train_model(
    *,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: EncodingSpec,
    params: TrainParams,
    seed: int,
    live_dir: Path,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit the model; per-epoch metrics go to DVCLive in `live_dir`. Returns (model, report).

    `extra_callbacks` run after the pipeline's own (the benchmarks time epochs with one).
    """
    from dvclive.keras import DVCLiveCallback

    set_determinism(seed, params.deterministic)
    x_train, y_train = to_arrays(train, spec)
    x_val, y_val = to_arrays(validation, spec)
    model = make_model(train, y_train, spec=spec, params=params, seed=seed)
    monitor = OverfittingMonitor(params.overfit_gap)
    live = open_live(live_dir)
    callbacks: list[keras.callbacks.Callback] = [monitor, DVCLiveCallback(live=live)]
    if params.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=params.monitor,
                patience=params.patience,
                restore_best_weights=True,
                verbose=1,
            )
        )
    callbacks.extend(extra_callbacks)
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=params.epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    ).history
    best = best_epoch(history, monitor=params.monitor)
    flagged = overfit_epochs(history, gap=params.overfit_gap)
    # The saved model holds the best epoch's weights, so the summary reports that epoch.
    live.summary = {
        "train": {k: float(v[best - 1]) for k, v in history.items() if not k.startswith("val_")},
        "eval": {k[4:]: float(v[best - 1]) for k, v in history.items() if k.startswith("val_")},
        "best_epoch": best,
        "epochs_run": len(history["loss"]),
        "overfit_epochs": len(flagged),
    }
    live.make_summary()
    report = {
        "epochs_run": len(history["loss"]),
        "best_epoch": best,
        "monitor": params.monitor,
        "restored_best_weights": params.patience > 0,
        "best": {name: round(float(values[best - 1]), 6) for name, values in history.items()},
        "overfit_gap": params.overfit_gap,
        "overfit_epochs": flagged,
        "overfitting": bool(flagged),
        "history": {name: [round(float(v), 6) for v in values] for name, values in history.items()},
        "train_rows": len(x_train),
        "validation_rows": len(x_val),
        "features": x_train.shape[1],
        "parameters": model.count_params(),
        "seed": seed,
        "deterministic": params.deterministic,
        "device": device_name(),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "tensorflow_version": _tensorflow_version(),
    }
    return model, report


def _tensorflow_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


def run(params: Params) -> None:
    """The train command: fit on the train split, write the model and the reports."""
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
        )
        write_json(report, live_dir / Path(paths.TRAIN_REPORT).name)
        best_epoch_marker(report["history"], best=report["best_epoch"]).to_csv(
            live_dir / "plots" / "best_epoch.tsv", sep="\t", index=False
        )
        save_model(model, paths.MODEL)
    best = report["best"]
    say(
        "train",
        f"{report['train_rows']:,} rows, {report['epochs_run']} epochs, best epoch "
        f"{report['best_epoch']} (val accuracy {best.get('val_accuracy', float('nan')):.4f}), "
        f"{len(report['overfit_epochs'])} epoch(s) flagged for overfitting -> {paths.MODEL}",
    )
