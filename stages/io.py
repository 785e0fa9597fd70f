"""File reading and writing shared by the stages.

Every output is written to a temporary file beside its target and renamed into place,
so a crash never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from stages.errors import PipelineError

# .gitignore ignores this prefix, so neither git nor DVCLive ever picks up a partial file.
TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TMP_PREFIX}{target.name}-", suffix=suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; if the block succeeds, move each entry
    written there into `target`, replacing the entry of the same name.

    Only the entries written are replaced: other files in `target`, such as the .gitignore
    DVC keeps there, stay. Each entry lands by one rename.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            destination = target / entry.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(entry, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def say(stage: str, message: str) -> None:
    """One progress line of a stage, e.g. `collect: 32,561 rows x 15 columns -> ...`."""
    print(f"{stage}: {message}", flush=True)


def write_json(data: Any, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the stage that writes it first") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc})") from None


def write_table(frame: pd.DataFrame, target: str | Path) -> None:
    with atomic_path(target, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found; run the stage that writes it first")
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path}: not a readable Parquet file ({exc})") from None


def write_csv(frame: pd.DataFrame, target: str | Path) -> None:
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
