"""Training callbacks: the overfitting watch, DVCLive logging, the best epoch, the epoch
backup, and the summary written after the fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from stages.common.config import TrainParams
from stages.common.errors import PipelineError
from stages.common.io import say
from stages.training.resume import EpochBackup


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
            say(
                "train",
                f"overfitting watch: epoch {epoch + 1}: validation {name} "
                f"{logs[val_name]:.4f} trails training {name} {logs[train_name]:.4f} "
                f"by more than {self.gap}",
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

    def restore_best(self, trainer: keras.Model) -> None:
        """A run resumed after its last epoch: only the best weights remain to restore."""
        if self.stopper is not None and self.stopper.best_weights is not None:
            self.stopper.set_model(trainer)
            self.backup.on_train_begin()
            self.stopper.on_train_end()


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
