"""File reading and writing shared by the stages.

Every output is written to a temporary file beside its target and renamed into place,
so a crash never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from stages.common.errors import PipelineError

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
    DVC keeps there, stay. Each entry lands by one rename. Folders a killed run left
    behind for the same target are removed first.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f"{TMP_PREFIX}{target.name}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
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


# Rows per Parquet row group: the shards that training streams, a few per shuffle window.
ROW_GROUP_ROWS = 500_000


def write_table(frame: pd.DataFrame, target: str | Path) -> None:
    with atomic_path(target, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", row_group_size=ROW_GROUP_ROWS)


def read_table(path: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found; run the stage that writes it first")
    try:
        return pd.read_parquet(path, engine="pyarrow", columns=columns)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path}: not a readable Parquet file ({exc})") from None


BATCH_ROWS = 500_000


def read_table_batches(
    path: str | Path, *, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pd.DataFrame]:
    """A Parquet table `batch_rows` rows at a time, so memory stays bounded."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found; run the stage that writes it first")
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path}: not a readable Parquet file ({exc})") from None
    for batch in table.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pandas()


class TableWriter:
    """Appends frames to a Parquet file as row groups; the file appears, complete, only
    when the block ends without error (an empty table if nothing was written)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.writer = None
        self.schema = None

    def __enter__(self) -> TableWriter:
        self._atomic = atomic_path(self.target, suffix=".parquet")
        self.tmp = self._atomic.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False, schema=self.schema)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.writer.write_table(table)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if self.writer is not None:
            self.writer.close()
        elif exc_type is None:
            error = PipelineError(f"{self.target}: no rows to write")
            self._atomic.__exit__(PipelineError, error, None)  # removes the temporary file
            raise error
        return bool(self._atomic.__exit__(exc_type, exc, traceback))


def write_csv(frame: pd.DataFrame, target: str | Path) -> None:
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _round_trip_yaml():
    from ruamel.yaml import YAML

    handler = YAML()  # round trip: comments, key order, quotes and flow lists are kept
    handler.width = 100
    handler.preserve_quotes = True
    handler.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    handler.indent(mapping=2, sequence=4, offset=2)
    return handler


def read_round_trip(path: str | Path) -> Any:
    """A YAML file as ruamel's round-trip mapping, to edit and write back with its comments."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return _round_trip_yaml().load(handle) or {}
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML", [str(exc)]) from None


def flow_style(value: Any) -> Any:
    """A list or mapping to write on one line (`[a, b]`, `{a: 1}`), as params.yaml does."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, list):
        flow = CommentedSeq(flow_style(item) for item in value)
    elif isinstance(value, dict):
        flow = CommentedMap((key, flow_style(item)) for key, item in value.items())
    else:
        return value
    flow.fa.set_flow_style()
    return flow


def write_round_trip(data: Any, path: str | Path) -> None:
    """Write what `read_round_trip` read (and was edited), atomically."""
    with atomic_path(path, suffix=".yaml") as tmp, tmp.open("w", encoding="utf-8") as handle:
        _round_trip_yaml().dump(data, handle)
