"""split: divide the prepared rows into train, validation and test sets.

Reads data/prepared/table.parquet. Writes data/split/{train,validation,test}.parquet and
reports/split/report.json with the class counts per split. Splits are stratified on the
target by default, seeded from `dataset.seed`, and every class must land in every split.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from stages import paths
from stages.config import Params
from stages.encoding import EncodingSpec
from stages.errors import PipelineError
from stages.io import read_table, say, write_json, write_table


def split_frame(
    frame: pd.DataFrame,
    *,
    target: str,
    validation: float,
    test: float,
    seed: int,
    stratify: bool = True,
) -> dict[str, pd.DataFrame]:
    """Return {'train', 'validation', 'test'} frames; no row appears in two of them."""
    if target not in frame.columns:
        raise PipelineError(f"target column '{target}' is not in the prepared table")
    counts = frame[target].value_counts()
    if len(counts) < 2:
        raise PipelineError(
            f"target column '{target}' has {len(counts)} class(es); at least two are needed"
        )
    # Each split needs at least one row of every class.
    smallest_share = min(validation, test, 1 - validation - test)
    too_small = counts[counts * smallest_share < 1]
    if stratify and not too_small.empty:
        raise PipelineError(
            f"class(es) too small to appear in every split of '{target}': "
            + ", ".join(f"{label} ({count} rows)" for label, count in too_small.items()),
            [f"the smallest split takes {smallest_share:.0%} of rows; add rows or change split"],
        )
    try:
        rest, test_rows = train_test_split(
            frame,
            test_size=test,
            random_state=seed,
            stratify=frame[target] if stratify else None,
        )
        train_rows, validation_rows = train_test_split(
            rest,
            test_size=validation / (1 - test),
            random_state=seed,
            stratify=rest[target] if stratify else None,
        )
    except ValueError as exc:
        raise PipelineError(f"cannot split {len(frame)} rows: {exc}") from None
    splits = {"train": train_rows, "validation": validation_rows, "test": test_rows}
    for name, rows in splits.items():
        absent = sorted(set(counts.index) - set(rows[target]))
        if absent:
            raise PipelineError(
                f"the {name} split has no rows of class(es) {absent} of '{target}'; "
                "add rows, or change split.validation / split.test"
            )
    return {name: rows.reset_index(drop=True) for name, rows in splits.items()}


def split_report(
    splits: dict[str, pd.DataFrame], *, target: str, classes: list[str]
) -> dict[str, Any]:
    total = sum(len(rows) for rows in splits.values())
    report: dict[str, Any] = {}
    for name, rows in splits.items():
        counts = rows[target].value_counts()
        report[name] = {
            "rows": len(rows),
            "fraction": round(len(rows) / total, 4),
            "classes": {label: int(counts.get(index, 0)) for index, label in enumerate(classes)},
        }
    return report


def run(params: Params) -> None:
    """The split command: split the prepared table, write the splits and the report."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    splits = split_frame(
        read_table(paths.PREPARED_TABLE),
        target=params.dataset.target,
        validation=params.split.validation,
        test=params.split.test,
        seed=params.dataset.seed,
        stratify=params.split.stratify,
    )
    for name, rows in splits.items():
        write_table(rows, paths.split_table(name))
    write_json(
        split_report(splits, target=params.dataset.target, classes=spec.classes), paths.SPLIT_REPORT
    )
    counts = ", ".join(f"{name} {len(rows):,}" for name, rows in splits.items())
    say("split", f"{counts} rows -> {paths.SPLIT_DIR}/")
