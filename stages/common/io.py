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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
BATCH_ROWS = 500_000
# A table of at most this many rows may be held whole where that gives exact results
# (split's assignment, evaluate's metrics); a larger one is worked through partition by
# partition, with sketches where a whole-table computation is needed.
EXACT_ROWS = 1_000_000


def write_table(frame: pd.DataFrame, target: str | Path) -> None:
    """One Parquet file (a report's table, the quarantine, predictions)."""
    with atomic_path(target, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", row_group_size=ROW_GROUP_ROWS)


# The pipeline's tables (raw, validated, prepared, the splits) are folders of Parquet
# shards, `part-00000.parquet`, ...: one per partition of the input, so what a stage writes
# depends on its input alone, never on how many workers wrote it. Every reader below takes
# a single Parquet file too.
SHARD_PATTERN = "part-{index:05d}.parquet"


def shard_name(index: int) -> str:
    return SHARD_PATTERN.format(index=index)


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet files of a table: a folder's shards in order, or the file itself."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: not found; run the stage that writes it first")
    if path.is_dir():
        files = sorted(
            entry
            for entry in path.iterdir()
            if entry.suffix == ".parquet" and not entry.name.startswith((".", "_"))
        )
        if not files:
            raise PipelineError(f"{path}: a folder without Parquet files")
        return files
    return [path]


@dataclass(frozen=True)
class Partition:
    """One row group of one of a table's files: the unit the data stages work on.
    `start` is the number of the partition's first row in the whole table."""

    file: Path
    row_group: int
    start: int
    rows: int
    index: int

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(self.file).read_row_group(self.row_group, columns=columns)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise PipelineError(f"{self.file}: not a readable Parquet file ({exc})") from None
        frame = table.to_pandas()
        frame.index = pd.RangeIndex(self.start, self.start + len(frame))
        return frame


def partitions(path: str | Path) -> list[Partition]:
    """A table's partitions in row order, from the files' metadata (nothing else is read).
    Empty row groups are left out; a table of no rows has no partitions."""
    import pyarrow.parquet as pq

    found, start = [], 0
    for file in shard_files(path):
        file = file.resolve()  # a cluster's workers do not share this process's folder
        try:
            metadata = pq.ParquetFile(file).metadata
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise PipelineError(f"{file}: not a readable Parquet file ({exc})") from None
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if rows:
                found.append(Partition(file, group, start, rows, len(found)))
                start += rows
    return found


def drawn_rows(total: int, size: int, *, seed: int) -> np.ndarray:
    """`size` of `total` row numbers drawn by `seed`, in order: a seeded sample of a table
    read partition by partition (`rows_within` gives each partition its share)."""
    return np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))


def rows_within(chosen: np.ndarray, start: int, rows: int) -> np.ndarray:
    """The positions, within a partition of `rows` rows from row `start`, of the sorted row
    numbers `chosen` that fall in it."""
    return chosen[np.searchsorted(chosen, start) : np.searchsorted(chosen, start + rows)] - start


def read_table(path: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """A whole table (a file, or a folder of shards) as one frame."""
    files = shard_files(path)
    try:
        frames = [pd.read_parquet(file, engine="pyarrow", columns=columns) for file in files]
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path}: not a readable Parquet table ({exc})") from None
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def read_table_batches(
    path: str | Path, *, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pd.DataFrame]:
    """A Parquet table `batch_rows` rows at a time, so memory stays bounded."""
    import pyarrow.parquet as pq

    for file in shard_files(path):
        try:
            table = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise PipelineError(f"{file}: not a readable Parquet file ({exc})") from None
        for batch in table.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; if the block succeeds, it replaces
    `target` (a folder or a file) whole. Folders a killed run left are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f"{TMP_PREFIX}{target.name}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists() or target.is_symlink():
            old = tmp.with_name(tmp.name + "-old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_shard(frame: pd.DataFrame, folder: Path, index: int, schema=None) -> Path:
    """One shard of a table being written (into the folder `atomic_dir` gave)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False, schema=schema)
    target = Path(folder) / shard_name(index)
    pq.write_table(table, target, row_group_size=ROW_GROUP_ROWS)
    return target


def unify_shards(folder: str | Path) -> None:
    """Make every shard of a folder carry the same Arrow schema. Shards written apart can
    differ where a column is all missing in one (null type) or integer in one and float in
    another; those shards are rewritten, cast to the schema that holds them all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = shard_files(folder)
    schemas = [pq.read_schema(file) for file in files]
    if all(schema.equals(schemas[0]) for schema in schemas[1:]):
        return
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
        unified = _text_where_types_clash(schemas)
    unified = unified.remove_metadata()
    for file, schema in zip(files, schemas, strict=True):
        if not schema.remove_metadata().equals(unified):
            table = pq.read_table(file).select(unified.names).cast(unified)
            pq.write_table(table, file, row_group_size=ROW_GROUP_ROWS)


def _text_where_types_clash(schemas: list) -> Any:
    """One schema for shards whose columns Arrow cannot promote to one type: numbers in
    some shards and text in others (as a column read in chunks can be) become text, as
    reading the whole file at once makes them."""
    import pyarrow as pa

    fields = []
    for name in schemas[0].names:
        kinds = {s.field(name).type for s in schemas if name in s.names} - {pa.null()}
        if len(kinds) <= 1:
            fields.append(pa.field(name, kinds.pop() if kinds else pa.null()))
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
            fields.append(pa.field(name, pa.float64()))
        else:
            fields.append(pa.field(name, pa.large_string()))
    return pa.schema(fields)


class ShardWriter:
    """Writes frames as the shards of a table folder, `ROW_GROUP_ROWS` rows at most each;
    the folder appears, complete and with one schema (`unify_shards`), only when the block
    ends without error (one empty shard if no row was written)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.count = 0
        self.empty: pd.DataFrame | None = None

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_dir(self.target)
        self.folder = self._atomic.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            self.empty = frame if self.empty is None else self.empty
            return
        for start in range(0, len(frame), ROW_GROUP_ROWS):
            write_shard(frame.iloc[start : start + ROW_GROUP_ROWS], self.folder, self.count)
            self.count += 1

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is None:
            try:
                if self.count == 0 and self.empty is None:
                    raise PipelineError(f"{self.target}: no rows to write")
                if self.count == 0:
                    write_shard(self.empty, self.folder, 0)
                unify_shards(self.folder)
            except BaseException as error:
                self._atomic.__exit__(type(error), error, None)  # removes the folder
                raise
        return bool(self._atomic.__exit__(exc_type, exc, traceback))


def write_csv(frame: pd.DataFrame, target: str | Path) -> None:
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


class FileWriter:
    """One Parquet or CSV file (by `target`'s suffix) written a frame at a time, each
    frame a Parquet row group; it appears, complete, only when the block ends without
    error. The frames share the first one's columns and types."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.parquet = self.target.suffix == ".parquet"
        self._writer = None
        self._started = False

    def __enter__(self) -> FileWriter:
        self._atomic = atomic_path(self.target, suffix=self.target.suffix)
        self.tmp = self._atomic.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if not self.parquet:
            frame.to_csv(self.tmp, index=False, mode="a", header=not self._started)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, table.schema)
            self._writer.write_table(table.cast(self._writer.schema))
        self._started = True

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if self._writer is not None:
            self._writer.close()
        if exc_type is None and not self._started:
            exc = PipelineError(f"{self.target}: no rows to write")
            self._atomic.__exit__(type(exc), exc, None)
            raise exc
        return bool(self._atomic.__exit__(exc_type, exc, traceback))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks; of a folder (a table's shards), of
    each file's name and digest in order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(entry for entry in path.rglob("*") if entry.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
        return digest.hexdigest()
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
