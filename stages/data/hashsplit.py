"""Splitting a table too large to hold: each row's split from a seeded hash of its row id.

Every row gets a key, a 64-bit hash of (seed, row id), uniform and independent of where
the row sits. Within each stratum (a class; for regression a decile of the target, its
edges from a seeded sample), the rows with the smallest keys go to test, the next ones to
validation, the rest to train, in the same numbers as an in-memory stratified split. The
thresholds are found in passes over the target column that hold a histogram of the keys
per stratum, then the few keys of the bins the thresholds fall in: memory does not grow
with the rows, and the split does not depend on how the table is partitioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stages.common.errors import PipelineError
from stages.common.io import Partition
from stages.data.encoding import ROW_ID, TARGET

BITS = 12  # the histogram's bins: 4,096 per stratum, by a key's top bits
SHIFT = np.uint64(64 - BITS)


def row_keys(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each row id mixed with the seed: uniform uint64 keys."""
    with np.errstate(over="ignore"):
        z = row_ids.astype(np.uint64) ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class Strata:
    """How rows fall into strata: by class code, by decile edges of a numeric target, or
    all in one."""

    classes: int = 0  # classification: the number of classes
    edges: np.ndarray | None = field(default=None, compare=False)  # regression deciles

    @property
    def count(self) -> int:
        if self.classes:
            return self.classes
        return 1 if self.edges is None else len(self.edges) + 1

    def of(self, target: np.ndarray) -> np.ndarray:
        if self.classes:
            return target.astype(np.int64)
        if self.edges is None:
            return np.zeros(len(target), dtype=np.int64)
        return np.searchsorted(self.edges, np.ravel(target), side="right").astype(np.int64)


@dataclass(frozen=True)
class KeyJob:
    partition: Partition
    seed: int
    strata: Strata
    wanted: tuple[tuple[int, int], ...] = ()  # (stratum, bin) whose keys to return


def _keys_and_strata(job: KeyJob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = job.partition.read([ROW_ID, TARGET])
    target = frame[TARGET].to_numpy()
    return row_keys(frame[ROW_ID].to_numpy(), job.seed), job.strata.of(target), target


def key_histogram(job: KeyJob) -> np.ndarray:
    """Rows per (stratum, key bin) in one partition."""
    keys, strata, _ = _keys_and_strata(job)
    bins = strata * (1 << BITS) + (keys >> SHIFT).astype(np.int64)
    counts = np.bincount(bins, minlength=job.strata.count << BITS)
    return counts.reshape(job.strata.count, 1 << BITS)


def boundary_keys(job: KeyJob) -> dict[tuple[int, int], np.ndarray]:
    """The keys of one partition's rows in each wanted (stratum, bin)."""
    keys, strata, _ = _keys_and_strata(job)
    bins = (keys >> SHIFT).astype(np.int64)
    return {
        (stratum, bin_): keys[(strata == stratum) & (bins == bin_)] for stratum, bin_ in job.wanted
    }


def stratum_counts(total: int, *, validation: float, test: float, stratify: bool) -> tuple:
    """(test rows, validation rows) of a stratum of `total` rows: the in-memory split's
    shares, at least one of each when stratified (the stage has checked that every class
    has enough rows)."""
    n_test = round(test * total)
    n_validation = round(validation * total)
    if stratify and total >= 3:
        n_test = min(max(n_test, 1), total - 2)
        n_validation = min(max(n_validation, 1), total - n_test - 1)
    return n_test, n_validation


def thresholds(
    histogram: np.ndarray, *, validation: float, test: float, stratify: bool
) -> list[tuple[int, int, int]]:
    """Per stratum, the two places its thresholds fall: (stratum, bin, rows of the bin
    below the threshold) for each of test and test + validation."""
    places = []
    totals = histogram.sum(axis=1)
    for stratum, counts in enumerate(histogram):
        n_test, n_validation = stratum_counts(
            int(totals[stratum]), validation=validation, test=test, stratify=stratify
        )
        cumulative = np.cumsum(counts)
        for rows in (n_test, n_test + n_validation):
            if rows == 0:
                places.append((stratum, -1, 0))
                continue
            bin_ = int(np.searchsorted(cumulative, rows, side="left"))
            below = int(cumulative[bin_ - 1]) if bin_ else 0
            places.append((stratum, bin_, rows - below))
    return places


def cut_keys(
    places: list[tuple[int, int, int]], found: dict[tuple[int, int], np.ndarray], strata: int
) -> np.ndarray:
    """The key thresholds (strata x 2): a row goes to test when its key is below the first,
    to validation when below the second, else to train."""
    cuts = np.zeros((strata, 2), dtype=np.uint64)
    for index, (stratum, bin_, take) in enumerate(places):
        if bin_ < 0:
            continue
        keys = np.sort(found[stratum, bin_])
        cuts[stratum, index % 2] = keys[take - 1] + np.uint64(1)
    return cuts


@dataclass(frozen=True)
class HashAssigner:
    """Each row's split (0 train, 1 validation, 2 test) from its key and stratum."""

    seed: int
    strata: Strata
    cuts: np.ndarray

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        keys = row_keys(frame[ROW_ID].to_numpy(), self.seed)
        strata = self.strata.of(frame[TARGET].to_numpy())
        codes = np.zeros(len(frame), dtype=np.int8)
        codes[keys < self.cuts[strata, 1]] = 1
        codes[keys < self.cuts[strata, 0]] = 2
        return codes


def merge_keys(parts: list[dict]) -> dict[tuple[int, int], np.ndarray]:
    merged: dict[tuple[int, int], list[np.ndarray]] = {}
    for part in parts:
        for where, keys in part.items():
            merged.setdefault(where, []).append(keys)
    return {where: np.concatenate(keys) for where, keys in merged.items()}


def regression_edges(sample: np.ndarray, *, validation: float, test: float) -> np.ndarray:
    """Decile edges of the target from a sample (fewer bins when a split would get too
    few rows of one), as the in-memory split stratifies regression."""
    values = np.ravel(sample).astype("float64")
    smallest_share = min(validation, test, 1 - validation - test)
    bins = int(max(1, min(10, len(values) * smallest_share // 2)))
    if len(np.unique(values)) < 2:
        raise PipelineError(f"the target column has {len(np.unique(values))} distinct value(s)")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
