"""The train rows as training reads them: in memory when they fit the shuffle buffer,
otherwise streamed from the table's partitions (the row groups of its shards), so that the memory
training needs stops growing with the rows.

- `TrainRows`: the rows' count, their labels, a seeded sample for what is fitted on train
  rows (scaling, bins, vocabularies, the drift profile), and the rows shard by shard.
- `stream_batches`: each epoch's batches from windows of shards. The shards' order is
  drawn from (seed, epoch), the rows of a window (at most `shuffle_rows` of them, at least
  one shard) are permuted by (seed, epoch, window), and the rows a window leaves over
  (fewer than a batch) open the next window's first batch: every epoch has the same number
  of batches as an in-memory epoch, and a run resumed at epoch k sees exactly the batches
  an unbroken run sees from epoch k. Several training processes are dealt the epoch's
  shards in turn and each reads only its own, cutting its rows into its share of every
  batch, all taking the same number of steps (`process_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError
from stages.common.io import Partition, drawn_rows, partitions, rows_within
from stages.data.encoding import TARGET, EncodingSpec, targets

# A window's seed: the epoch and the window's place in it, one number.
WINDOWS_PER_EPOCH = 1_000_003


@dataclass
class TrainRows:
    """Train rows in memory (`frame`) or in a table read partition by partition."""

    frame: pd.DataFrame | None = None
    path: Path | None = None
    samples: dict = field(default_factory=dict, repr=False, compare=False)
    parts: list[Partition] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_parquet(cls, path: str | Path) -> TrainRows:
        """A table folder's (or a Parquet file's) partitions; a damaged file is said now,
        not mid-training."""
        rows = cls(path=Path(path))
        rows.parts = partitions(rows.path)
        return rows

    @property
    def shard_rows(self) -> list[int]:
        """The rows of each shard: the table's partitions (the frame is one shard)."""
        if self.frame is not None:
            return [len(self.frame)]
        return [part.rows for part in self.parts]

    @property
    def rows(self) -> int:
        return sum(self.shard_rows)

    def shard(self, index: int, columns: list[str] | None = None) -> pd.DataFrame:
        if self.frame is not None:
            return self.frame if columns is None else self.frame[columns]
        return self.parts[index].read(columns).reset_index(drop=True)

    def labels(self, spec: EncodingSpec) -> np.ndarray:
        """Every row's target, in row order (one column, read alone)."""
        if self.frame is not None:
            return targets(self.frame, spec)
        parts = [self.shard(index, [TARGET]) for index in range(len(self.shard_rows))]
        return targets(pd.concat(parts, ignore_index=True), spec)

    def everything(self) -> pd.DataFrame:
        if self.frame is not None:
            return self.frame
        for sample in self.samples.values():  # a sample of every row, read already
            if len(sample) == self.rows:
                return sample
        frames = [self.shard(index) for index in range(len(self.shard_rows))]
        return pd.concat(frames, ignore_index=True)

    def sample(self, max_rows: int, *, seed: int) -> pd.DataFrame:
        """Every row in order when there are at most `max_rows`; otherwise `max_rows` rows
        drawn by `seed` (in row order), read shard by shard. Kept: the model's statistics
        and the drift profile are fitted on the same sample, read once."""
        if (max_rows, seed) not in self.samples:
            self.samples[max_rows, seed] = self._sample(max_rows, seed)
        return self.samples[max_rows, seed]

    def _sample(self, max_rows: int, seed: int) -> pd.DataFrame:
        total = self.rows
        if total <= max_rows:
            return self.everything()
        chosen = drawn_rows(total, max_rows, seed=seed)
        parts, start = [], 0
        for index, count in enumerate(self.shard_rows):
            inside = rows_within(chosen, start, count)
            if len(inside):
                parts.append(self.shard(index).iloc[inside])
            start += count
        return pd.concat(parts, ignore_index=True)


def windows(shard_rows: list[int], order: np.ndarray, shuffle_rows: int) -> list[list[int]]:
    """The shards in `order`, grouped into windows of at most `shuffle_rows` rows (a shard
    larger than that is a window alone)."""
    groups: list[list[int]] = []
    held = 0
    for shard in order.tolist():
        if groups and held + shard_rows[shard] <= shuffle_rows:
            groups[-1].append(shard)
            held += shard_rows[shard]
        else:
            groups.append([shard])
            held = shard_rows[shard]
    return groups


def epoch_plan(
    shard_rows: list[int],
    *,
    seed: int,
    epoch: int,
    shuffle_rows: int,
    process: int = 0,
    processes: int = 1,
) -> list[tuple[list[int], np.ndarray]]:
    """An epoch's windows: each its shards and the permutation of its rows. With several
    processes, the epoch's shard order is dealt among them (process p takes every p-th
    shard of it), so each reads only its own shards."""
    order = np.random.default_rng([seed, epoch]).permutation(len(shard_rows))
    if processes > 1:
        order = order[process::processes]
    plan = []
    for place, group in enumerate(windows(shard_rows, order, shuffle_rows)):
        size = sum(shard_rows[shard] for shard in group)
        key = [seed, epoch * WINDOWS_PER_EPOCH + place]
        if processes > 1:
            key.append(process)
        plan.append((group, np.random.default_rng(key).permutation(size)))
    return plan


def process_steps(shard_rows: list[int], batch_size: int, processes: int) -> int:
    """Steps per epoch of each of several processes that read disjoint shards, each batch
    `batch_size / processes` of its rows: as many as the process dealt the fewest rows can
    take in any epoch (the smallest shards, as many as each process is dealt at least).
    The rows a process has beyond them wait for another epoch's deal."""
    dealt = len(shard_rows) // processes
    if dealt == 0:
        raise PipelineError(
            f"the train split has {len(shard_rows)} shard(s), fewer than the {processes} "
            "training processes that each read their own"
        )
    return sum(sorted(shard_rows)[:dealt]) // (batch_size // processes)


def stream_windows(
    table: TrainRows,
    encode: Callable[[pd.DataFrame], tuple[np.ndarray, ...]],
    *,
    seed: int,
    epoch: int,
    shuffle_rows: int,
    process: int = 0,
    processes: int = 1,
) -> Iterator[tuple[np.ndarray, ...]]:
    """One epoch's windows (of this process's shards) in order, each its rows encoded
    (`encode` turns rows into arrays: inputs, targets, weights) and permuted. Cut into
    batches across the windows' edges (`stream_batches`, or tf.data's `rebatch`), they are
    the epoch's batches."""
    for group, permutation in epoch_plan(
        table.shard_rows,
        seed=seed,
        epoch=epoch,
        shuffle_rows=shuffle_rows,
        process=process,
        processes=processes,
    ):
        frame = pd.concat([table.shard(shard) for shard in group], ignore_index=True)
        arrays = encode(frame)
        del frame
        yield tuple(array[permutation] for array in arrays)


def stream_batches(
    table: TrainRows,
    encode: Callable[[pd.DataFrame], tuple[np.ndarray, ...]],
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    shuffle_rows: int,
    process: int = 0,
    processes: int = 1,
) -> Iterator[tuple[np.ndarray, ...]]:
    """The training batches of epochs `first_epoch` to `epochs - 1`: each epoch's windows
    cut into batches, the rows a window leaves over opening the next one's first batch.
    With several processes each cuts its own shards' rows into batches of
    `batch_size / processes` and takes `process_steps` of them (every process the same
    steps)."""
    local = batch_size // processes
    steps = process_steps(table.shard_rows, batch_size, processes) if processes > 1 else None
    for epoch in range(first_epoch, epochs):
        held: tuple[np.ndarray, ...] | None = None  # rows left over by the last window
        taken = 0
        for arrays in stream_windows(
            table,
            encode,
            seed=seed,
            epoch=epoch,
            shuffle_rows=shuffle_rows,
            process=process,
            processes=processes,
        ):
            if held is not None:
                arrays = tuple(np.concatenate(pair) for pair in zip(held, arrays, strict=True))
            whole = len(arrays[0]) - len(arrays[0]) % local
            for start in range(0, whole, local):
                if steps is None or taken < steps:
                    yield tuple(array[start : start + local] for array in arrays)
                    taken += 1
            held = tuple(array[whole:] for array in arrays)
        if held is not None and len(held[0]) and processes == 1:
            yield held
