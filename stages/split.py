"""split: divide the prepared rows into train, validation and test sets.

Reads data/prepared/table.parquet. Writes data/split/{train,validation,test}.parquet and
reports/split/report.json with the class counts per split. Splits are stratified on the
target by default, seeded from `dataset.seed`, and every class must land in every split.
A numeric target (regression) is stratified on its deciles, so every split spans its range.

Each row's split is drawn from the target column alone (read by itself); then one Dask
task per partition (stages/common/engine.py) copies the partition's rows into its shard of
each split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common import engine, paths
from stages.common.config import Params
from stages.common.io import (
    Partition,
    atomic_dir,
    partitions,
    say,
    unify_shards,
    write_json,
    write_shard,
)
from stages.data.encoding import TARGET, EncodingSpec
from stages.data.splitting import split_assignment, split_report


@dataclass(frozen=True)
class SplitJob:
    partition: Partition
    codes: np.ndarray  # the split of each of the partition's rows: 0, 1 or 2
    outputs: tuple[Path, ...]  # one folder per split, in paths.SPLIT_NAMES order


def split_partition(job: SplitJob) -> None:
    frame = job.partition.read().reset_index(drop=True)
    for code, folder in enumerate(job.outputs):
        write_shard(frame[job.codes == code], folder, job.partition.index)


def run(params: Params) -> None:
    """The split command: assign each row from the target column alone, then copy the
    prepared table partition by partition into the three splits, so memory stays bounded."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    target = params.dataset.target
    parts = partitions(paths.PREPARED_TABLE)
    labels = pd.concat([part.read([TARGET])[TARGET] for part in parts], ignore_index=True)
    labels = labels.rename(target)
    assignment = split_assignment(
        labels,
        validation=params.split.validation,
        test=params.split.test,
        seed=params.dataset.seed,
        stratify=params.split.stratify,
        task=spec.task,
        classes=spec.classes,
    )
    with (
        atomic_dir(paths.split_table("train")) as train,
        atomic_dir(paths.split_table("validation")) as validation,
        atomic_dir(paths.split_table("test")) as test,
    ):
        outputs = (train.resolve(), validation.resolve(), test.resolve())
        jobs = [
            SplitJob(part, assignment[part.start : part.start + part.rows], outputs)
            for part in parts
        ]
        engine.run_tasks(split_partition, jobs)
        for folder in outputs:
            unify_shards(folder)
    report = split_report(assignment, labels, classes=spec.classes)
    write_json(report, paths.SPLIT_REPORT)
    summary = ", ".join(f"{name} {part['rows']:,}" for name, part in report.items())
    say("split", f"{summary} rows ({engine.describe()}) -> {paths.SPLIT_DIR}/")
