"""prepare: clean the validated rows and encode every feature to numbers.

Reads data/validated/table.parquet (rows validate has already cleaned and checked) and the
schema. Writes data/prepared/table.parquet (`row_id`, the encoded feature columns under
their `x:`/`m:` names and `target`: a class index, or for regression the number itself),
data/prepared/encoding.json (the encoding spec) and reports/prepare/report.json.

Nothing here is learned from data: the encoding is a pure function of (row, schema), so a
row encodes the same whether it is alone, in a batch, in training or at prediction time.
Categories the schema lists are stored as their code, and an unknown or missing category
(code -1) reaches the model as all zeros; a missing number becomes 0 plus a 1 in its
indicator; a high-cardinality category stays text until train learns its vocabulary from
train rows; a date becomes its parts. Rows without a label are dropped and counted.

The work is one Dask task per partition (stages/common/engine.py). Duplicates are found
over the whole table by a reduction that holds a bounded share of the rows at once: each
partition's row hashes go to buckets by hash, each bucket names the later copies it holds,
and each partition then drops its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stages.common import engine, paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import (
    Partition,
    atomic_dir,
    partitions,
    say,
    unify_shards,
    write_json,
    write_shard,
)
from stages.data.encoding import EncodingSpec, row_id_name
from stages.data.preparation import later_copies, prepare_frame, row_hashes, spec_from_schema
from stages.data.schema import load_schema

# Row hashes per bucket of the duplicate search: what one of its tasks holds at most
# (16 bytes a row).
BUCKET_ROWS = 4_000_000


@dataclass(frozen=True)
class PrepareJob:
    partition: Partition
    spec: EncodingSpec
    row_id: str  # the column of each row's number, as validate named it
    drop_duplicates: bool
    buckets: int
    scratch: Path
    output: Path
    copies: np.ndarray | None = None


def hash_partition(job: PrepareJob) -> tuple[int, int]:
    """Write each row's (hash, row number) into the bucket its hash falls in; return the
    partition's first and last row numbers."""
    frame = job.partition.read()
    ids = frame[job.row_id].to_numpy(dtype="int64")
    hashes = row_hashes(frame.drop(columns=[job.row_id]))
    bucket = hashes % np.uint64(job.buckets)
    for index in range(job.buckets):
        inside = bucket == index
        np.save(
            job.scratch / f"{index:05d}-{job.partition.index:05d}.npy",
            np.stack([hashes[inside].view("int64"), ids[inside]]),
        )
    return int(ids[0]), int(ids[-1])


def bucket_copies(job: tuple[Path, int]) -> np.ndarray:
    """The later copies among one bucket's rows (over every partition)."""
    scratch, index = job
    parts = [np.load(file) for file in sorted(scratch.glob(f"{index:05d}-*.npy"))]
    pairs = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), dtype="int64")
    return later_copies(pairs[0].view("uint64"), pairs[1])


def prepare_partition(job: PrepareJob) -> dict[str, int]:
    """Drop and encode one partition's rows; write them as its shard; return the counts."""
    prepared, counts = prepare_frame(
        job.partition.read(),
        spec=job.spec,
        drop_duplicates=job.drop_duplicates,
        row_id=job.row_id,
        copies=job.copies,
    )
    write_shard(prepared, job.output, job.partition.index)
    return counts


def with_copies(jobs: list[PrepareJob]) -> list[PrepareJob]:
    """The jobs, each with the later copies of rows that fall in its partition, found over
    the whole table: hashes into buckets, then each bucket's copies."""
    spans = engine.run_tasks(hash_partition, jobs)
    scratch, buckets = jobs[0].scratch, jobs[0].buckets
    found = engine.run_tasks(bucket_copies, [(scratch, index) for index in range(buckets)])
    copies = np.sort(np.concatenate(found))
    return [
        replace(
            job,
            copies=copies[np.searchsorted(copies, first) : np.searchsorted(copies, last, "right")],
        )
        for job, (first, last) in zip(jobs, spans, strict=True)
    ]


def run(params: Params) -> None:
    """The prepare command: drop and encode the validated table's rows partition by
    partition (memory stays bounded whatever the table's size), write the table, the spec
    and the report."""
    schema = load_schema(params.dataset.schema_path)
    spec = spec_from_schema(schema, target=params.dataset.target, task=params.dataset.task)
    parts = partitions(paths.VALIDATED_TABLE)
    rows = sum(part.rows for part in parts)
    with atomic_dir(paths.PREPARED_TABLE) as output:
        for leftover in output.parent.glob(".tmp-hashes-*"):  # of a run that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=".tmp-hashes-", dir=output.parent)).resolve()
        try:
            jobs = [
                PrepareJob(
                    partition=part,
                    spec=spec,
                    row_id=row_id_name(schema.columns),
                    drop_duplicates=params.prepare.drop_duplicates,
                    buckets=max(1, -(-rows // BUCKET_ROWS)),
                    scratch=scratch,
                    output=output.resolve(),
                )
                for part in parts
            ]
            if not jobs:
                raise PipelineError(f"{paths.VALIDATED_TABLE}: no rows to prepare")
            if params.prepare.drop_duplicates:
                jobs = with_copies(jobs)
            results = engine.run_tasks(prepare_partition, jobs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        unify_shards(output)
    totals: Counter[str] = Counter()
    for counts in results:
        totals.update(counts)
    counted = ("rows_in", "duplicates_dropped", "unlabelled_dropped", "rows_out")
    report = {
        **{key: totals[key] for key in counted},
        "task": spec.task,
        "features_in": len(spec.features),
        "features_out": len(spec.feature_columns),
        "excluded_columns": spec.excluded,
        "feature_kinds": {
            kind: sum(f.kind == kind for f in spec.features)
            for kind in ("numeric", "categorical", "embedded", "datetime")
        },
    }
    spec.save(paths.ENCODING_SPEC)
    write_json(report, paths.PREPARE_REPORT)
    say(
        "prepare",
        f"{report['rows_out']:,} rows ({report['duplicates_dropped']} duplicates, "
        f"{report['unlabelled_dropped']} unlabelled dropped), {report['features_out']} "
        f"encoded columns, {len(parts)} partition(s) ({engine.describe()}) "
        f"-> {paths.PREPARED_TABLE}",
    )
