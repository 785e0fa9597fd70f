"""Resume an interrupted training run from its last completed epoch.

After every epoch, the train stage saves everything the next epochs depend on to one file,
written atomically: the model's variables (weights and the dropout seed generators'
states), the optimizer's (moments, step count), the early-stopping and overfitting-watch
state, the history so far and the DVCLive files. Batches are shuffled by a function of
(seed, epoch), so a resumed run sees the same batches as an uninterrupted one and ends
with the same weights.

The backup lives outside DVC's outputs (DVC deletes outputs before it runs a stage, and a
persisted output would switch off its run-cache). It is tied to a key: a hash of the train
and validation tables, the encoding spec, the params, the code and the library versions. A
backup with another key is stale: it is ignored and deleted, never resumed from. The
backup is deleted once the stage's outputs are in place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from stages.common.io import atomic_path, file_sha256, say

PACKAGE = Path(__file__).resolve().parents[1]  # stages/


def backup_key(*, files: list[str | Path], settings: dict[str, Any]) -> str:
    """Hash of the input files' bytes, the settings (params, versions) and the code.

    The code is every module of the package, so any change to it, moved or new modules
    included, makes a backup stale (a change outside training only costs a restart)."""
    digest = hashlib.sha256()
    code = sorted(PACKAGE.rglob("*.py"))
    for path in [*map(Path, files), *code]:
        name = path.relative_to(PACKAGE).as_posix() if path in code else path.name
        digest.update(name.encode() + b"\0")
        digest.update(file_sha256(path).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _read_tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): path.read_text(encoding="utf-8")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class EpochBackup(keras.callbacks.Callback):
    """Saves the training state after every epoch and restores it on the next run.

    Put it last among the callbacks, so it saves what the others logged for the epoch.
    It also keeps the whole history (restored epochs included) in `history`.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        key: str,
        live_dir: Path,
        early_stopping: keras.callbacks.EarlyStopping | None,
        watch: Any,
    ) -> None:
        """`path` None: keep the history only, save and restore nothing."""
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.key = key
        self.live_dir = live_dir
        self.early_stopping = early_stopping
        self.watch = watch
        self.history: dict[str, list[float]] = {}
        self.completed = 0
        self.stopped = False
        self._early_state: dict[str, Any] | None = None

    # -- restoring -------------------------------------------------------------------
    def restore(self, model: keras.Model) -> int:
        """Load a backup made with the same key into `model` and the callbacks; returns the
        number of epochs it had completed (0 with no usable backup). Call before fit, after
        compile, in the distribution strategy's scope if there is one."""
        if self.path is None or not self.path.exists():
            return 0
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                arrays = {name: saved[name] for name in saved.files if name != "meta"}
        except Exception as exc:  # a damaged file: numpy, zipfile and json raise many types
            say("train", f"ignoring an unreadable backup {self.path} ({exc})")
            self.discard()
            return 0
        if meta.get("key") != self.key:
            say(
                "train",
                f"ignoring the backup in {self.path}: it was made from other data, params or code",
            )
            self.discard()
            return 0
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        _assign(model.variables, arrays, "model")
        _assign(optimizer.variables, arrays, "optimizer")
        self.history = meta["history"]
        self.completed = meta["completed"]
        self.stopped = meta["stopped"]
        self.watch.restore(meta["watch"])
        self._early_state = meta["early_stopping"]
        if self._early_state is not None and self._early_state.pop("has_best_weights"):
            count = sum(1 for name in arrays if name.startswith("best_"))
            self._early_state["best_weights"] = [arrays[f"best_{i}"] for i in range(count)]
        for name, text in meta["live"].items():
            target = self.live_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return self.completed

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # EarlyStopping resets itself when training begins; put its saved state back after.
        if self._early_state is not None and self.early_stopping is not None:
            for name, value in self._early_state.items():
                setattr(self.early_stopping, name, value)

    # -- saving ----------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self.completed = epoch + 1
        self.stopped = bool(self.model.stop_training)
        if self.path is not None:
            self.save()

    def save(self) -> None:
        arrays: dict[str, np.ndarray] = {}
        for prefix, variables in (
            ("model", self.model.variables),
            ("optimizer", self.model.optimizer.variables),
        ):
            for index, variable in enumerate(variables):
                arrays[f"{prefix}_{index}"] = np.asarray(keras.ops.convert_to_numpy(variable))
        early = None
        if self.early_stopping is not None:
            stopper = self.early_stopping
            best = None if stopper.best is None else float(stopper.best)
            early = {
                "wait": stopper.wait,
                "best": best,
                "best_epoch": stopper.best_epoch,
                "stopped_epoch": stopper.stopped_epoch,
                "has_best_weights": stopper.best_weights is not None,
            }
            for index, weight in enumerate(stopper.best_weights or []):
                arrays[f"best_{index}"] = np.asarray(weight)
        meta = {
            "key": self.key,
            "completed": self.completed,
            "stopped": self.stopped,
            "history": self.history,
            "watch": self.watch.state(),
            "early_stopping": early,
            "live": _read_tree(self.live_dir),
        }
        with atomic_path(self.path, suffix=".npz") as tmp, tmp.open("wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _assign(variables: list, arrays: dict[str, np.ndarray], prefix: str) -> None:
    saved = sum(1 for name in arrays if name.startswith(f"{prefix}_"))
    if saved != len(variables):
        raise RuntimeError(f"backup has {saved} {prefix} variables, the model {len(variables)}")
    for index, variable in enumerate(variables):
        variable.assign(arrays[f"{prefix}_{index}"])
