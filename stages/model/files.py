"""Saving and loading the .keras files, atomically and byte-stable."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from stages.common.errors import PipelineError
from stages.common.io import atomic_path
from stages.model import ensemble, head, layers  # noqa: F401  (registers the layers it loads)


def save_model(model: keras.Model, target: str | Path) -> None:
    """Save a .keras file atomically, and byte-for-byte the same for the same weights.

    Keras stamps the save time into the archive (metadata.json and an entry's date) and
    numbers shared objects by their memory address (config.json); all are made stable
    here, so DVC sees a retrained but identical model as unchanged and a fresh clone's
    `dvc repro` reproduces dvc.lock exactly.
    """
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as archive:
            entries = [(info, archive.read(info)) for info in archive.infolist()]
        with zipfile.ZipFile(tmp, "w") as archive:
            for info, data in entries:
                if info.filename == "metadata.json":
                    metadata = json.loads(data)
                    metadata.pop("date_saved", None)
                    data = json.dumps(metadata).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
                fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                fixed.compress_type = info.compress_type
                fixed.external_attr = info.external_attr
                archive.writestr(fixed, data)


def load_model(path: str | Path) -> keras.Model:
    """Load a model saved by `save_model`, in Keras safe mode (no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the train stage first")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        reason = " ".join(str(exc).split())[:300]
        raise PipelineError(f"{path}: cannot load the model ({reason})") from None


def _renumber_shared_objects(node, numbers: dict[int, int]):
    """Replace each `shared_object_id` (a memory address) by its order of appearance."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node
