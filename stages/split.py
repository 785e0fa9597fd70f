"""split: divide the prepared rows into train, validation and test sets.

Reads data/prepared/table.parquet. Writes data/split/{train,validation,test}.parquet and
reports/split/report.json with the class counts per split. Splits are stratified on the
target by default, seeded from `dataset.seed`, and every class must land in every split.
A numeric target (regression) is stratified on its deciles, so every split spans its range.

A table of up to `EXACT_ROWS` rows is split in memory from its target column (the rows
scikit-learn's stratified split draws, stages/data/splitting.py). A larger one is split by
a seeded hash of each row's id, in the same numbers per stratum, in passes that hold a
histogram, not the rows (stages/data/hashsplit.py). Either way one Dask task per partition
(stages/common/engine.py) then copies the partition's rows into its shard of each split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common import engine, paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import (
    EXACT_ROWS,  # up to this many rows, the split is drawn in memory; past it, by row hashes
    Partition,
    atomic_dir,
    drawn_rows,
    partitions,
    rows_within,
    say,
    unify_shards,
    write_json,
    write_shard,
)
from stages.data import hashsplit
from stages.data.encoding import TARGET, EncodingSpec
from stages.data.splitting import check_class_counts, split_assignment, split_report


@dataclass(frozen=True)
class SplitJob:
    partition: Partition
    outputs: tuple[Path, ...]  # one folder per split, in paths.SPLIT_NAMES order
    codes: np.ndarray | None = None  # the split of each of the partition's rows: 0, 1, 2
    assigner: hashsplit.HashAssigner | None = None  # or the rule that gives them
    classes: int = 0


def split_partition(job: SplitJob) -> list[dict[str, Any]]:
    """Write the partition's rows into its shard of each split; return each split's
    target summary (rows per class, or the sums a mean and deviation need)."""
    frame = job.partition.read().reset_index(drop=True)
    codes = job.codes if job.codes is not None else job.assigner.codes(frame)
    summaries = []
    for code, folder in enumerate(job.outputs):
        part = frame[codes == code]
        write_shard(part, folder, job.partition.index)
        target = part[TARGET].to_numpy()
        if job.classes:
            summaries.append({"classes": np.bincount(target, minlength=job.classes)})
        else:
            values = target.astype("float64")
            summaries.append(
                {
                    "rows": len(values),
                    "sum": float(values.sum()),
                    "squares": float((values**2).sum()),
                    "min": float(values.min()) if len(values) else np.inf,
                    "max": float(values.max()) if len(values) else -np.inf,
                }
            )
    return summaries


def hashed_assigner(parts: list[Partition], params: Params, spec: EncodingSpec):
    """The hash rule for a large table: the histogram pass (the class checks on its
    counts), then the pass over the bins the thresholds fall in."""
    split, seed = params.split, params.dataset.seed
    if spec.classes:
        strata = hashsplit.Strata(classes=len(spec.classes))
    elif split.stratify:
        sample = _target_sample(parts, seed=seed)
        edges = hashsplit.regression_edges(sample, validation=split.validation, test=split.test)
        strata = hashsplit.Strata(edges=edges)
    else:
        strata = hashsplit.Strata()
    jobs = [hashsplit.KeyJob(part, seed, strata) for part in parts]
    histogram = sum(engine.run_tasks(hashsplit.key_histogram, jobs))
    if spec.classes:
        check_class_counts(
            pd.Series(histogram.sum(axis=1)),
            target=params.dataset.target,
            validation=split.validation,
            test=split.test,
            stratify=split.stratify,
            classes=spec.classes,
        )
    if not split.stratify:  # one stratum: every row by its key alone
        histogram, strata = histogram.sum(axis=0, keepdims=True), hashsplit.Strata()
    places = hashsplit.thresholds(
        histogram, validation=split.validation, test=split.test, stratify=split.stratify
    )
    wanted = tuple(sorted({(stratum, bin_) for stratum, bin_, _ in places if bin_ >= 0}))
    jobs = [hashsplit.KeyJob(part, seed, strata, wanted) for part in parts]
    found = hashsplit.merge_keys(engine.run_tasks(hashsplit.boundary_keys, jobs))
    return hashsplit.HashAssigner(seed, strata, hashsplit.cut_keys(places, found, strata.count))


def _target_sample(parts: list[Partition], *, seed: int, rows: int = 1_000_000) -> np.ndarray:
    total = sum(part.rows for part in parts)
    chosen = drawn_rows(total, min(rows, total), seed=seed)
    values = []
    for part in parts:
        inside = rows_within(chosen, part.start, part.rows)
        if len(inside):
            values.append(part.read([TARGET])[TARGET].to_numpy()[inside])
    return np.concatenate(values)


def summary_report(
    summaries: list[list[dict]], classes: list[str], *, target: str
) -> dict[str, Any]:
    """split_report's figures from every partition's summaries; a class with rows that
    one split lacks is an error, as in the in-memory split."""
    report: dict[str, Any] = {}
    total = 0
    merged = []
    for code in range(len(paths.SPLIT_NAMES)):
        parts = [summary[code] for summary in summaries]
        if classes:
            counts = np.sum([part["classes"] for part in parts], axis=0)
            merged.append({"rows": int(counts.sum()), "classes": counts})
        else:
            rows = sum(part["rows"] for part in parts)
            mean = sum(part["sum"] for part in parts) / rows
            variance = max(sum(part["squares"] for part in parts) / rows - mean**2, 0.0)
            merged.append(
                {
                    "rows": rows,
                    "target": {
                        "mean": round(mean, 6),
                        "std": round(float(np.sqrt(variance)), 6),
                        "min": min(part["min"] for part in parts),
                        "max": max(part["max"] for part in parts),
                    },
                }
            )
        total += merged[-1]["rows"]
    totals = np.sum([part["classes"] for part in merged], axis=0) if classes else None
    for name, part in zip(paths.SPLIT_NAMES, merged, strict=True):
        entry = {"rows": part["rows"], "fraction": round(part["rows"] / total, 4)}
        if classes:
            entry["classes"] = {
                label: int(part["classes"][index]) for index, label in enumerate(classes)
            }
            present = [label for label, rows in zip(classes, totals, strict=True) if rows]
            absent = [label for label in present if not entry["classes"][label]]
            if absent:
                raise PipelineError(
                    f"the {name} split has no rows of class(es) {absent} of '{target}'; "
                    "add rows, or change split.validation / split.test"
                )
        else:
            entry["target"] = part["target"]
        report[name] = entry
    return report


def run(params: Params) -> None:
    """The split command: assign each row (from the target column alone, or by its id's
    hash), then copy the prepared table partition by partition into the three splits."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    target = params.dataset.target
    parts = partitions(paths.PREPARED_TABLE)
    total = sum(part.rows for part in parts)
    assignment = assigner = labels = None
    if total <= EXACT_ROWS:
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
    else:
        assigner = hashed_assigner(parts, params, spec)
    with (
        atomic_dir(paths.split_table("train")) as train,
        atomic_dir(paths.split_table("validation")) as validation,
        atomic_dir(paths.split_table("test")) as test,
    ):
        outputs = (train.resolve(), validation.resolve(), test.resolve())
        jobs = [
            SplitJob(
                part,
                outputs,
                codes=None
                if assignment is None
                else assignment[part.start : part.start + part.rows],
                assigner=assigner,
                classes=len(spec.classes),
            )
            for part in parts
        ]
        summaries = engine.run_tasks(split_partition, jobs)
        if assignment is not None:
            report = split_report(assignment, labels, classes=spec.classes)
        else:
            report = summary_report(summaries, spec.classes, target=target)
        for folder in outputs:
            unify_shards(folder)
    write_json(report, paths.SPLIT_REPORT)
    summary = ", ".join(f"{name} {part['rows']:,}" for name, part in report.items())
    way = "in memory" if assignment is not None else "by row-id hash"
    say("split", f"{summary} rows ({way}, {engine.describe()}) -> {paths.SPLIT_DIR}/")
