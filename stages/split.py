"""split: divide the prepared rows into train, validation and test sets.

Reads data/prepared/table.parquet. Writes data/split/{train,validation,test}.parquet and
reports/split/report.json with the class counts per split. Splits are stratified on the
target by default, seeded from `dataset.seed`, and every class must land in every split.
A numeric target (regression) is stratified on its deciles, so every split spans its range.
"""

from __future__ import annotations

import contextlib

from stages.common import paths
from stages.common.config import Params
from stages.common.io import TableWriter, read_table, read_table_batches, say, write_json
from stages.data.encoding import TARGET, EncodingSpec
from stages.data.splitting import split_assignment, split_report


def run(params: Params) -> None:
    """The split command: assign each row from the target column alone, then copy the
    prepared table batch by batch into the three splits, so memory stays bounded."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    target = params.dataset.target
    labels = read_table(paths.PREPARED_TABLE, columns=[TARGET])[TARGET].rename(target)
    assignment = split_assignment(
        labels,
        validation=params.split.validation,
        test=params.split.test,
        seed=params.dataset.seed,
        stratify=params.split.stratify,
        task=spec.task,
        classes=spec.classes,
    )
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(TableWriter(paths.split_table(name))) for name in paths.SPLIT_NAMES
        ]
        start = 0
        for batch in read_table_batches(paths.PREPARED_TABLE):
            codes = assignment[start : start + len(batch)]
            start += len(batch)
            for code, writer in enumerate(writers):
                writer.write(batch[codes == code])
    report = split_report(assignment, labels, classes=spec.classes)
    write_json(report, paths.SPLIT_REPORT)
    summary = ", ".join(f"{name} {part['rows']:,}" for name, part in report.items())
    say("split", f"{summary} rows -> {paths.SPLIT_DIR}/")
