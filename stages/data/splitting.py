"""Assigning prepared rows to train, validation and test: seeded, stratified on the
target (its deciles for regression), every class in every split.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from stages.common import paths
from stages.common.errors import PipelineError
from stages.common.tasks import require_two_classes


def min_class_rows(*, validation: float, test: float) -> int:
    """The fewest rows a class needs to appear in every split (stratified)."""
    return math.ceil(1 / min(validation, test, 1 - validation - test) - 1e-9)


def _too_small_fixes(too_small: pd.Series, counts: pd.Series, share: float) -> list[str]:
    """What a user can do about classes too small for every split, most likely first."""
    fixes = []
    numbers = pd.to_numeric(pd.Series(counts.index.astype(str)), errors="coerce")
    if numbers.notna().all() and len(counts) > 10:
        fixes.append(
            f"the target holds {len(counts)} distinct numbers: to predict it as a number, set "
            "dataset.task: regression (or re-run infer-schema with --task regression)"
        )
    rows = int(too_small.sum())
    fixes += [
        f"or drop the {rows:,} row(s) of those classes from the source (or merge them into "
        "a larger class) and remove them from the schema's isin list",
        f"or add rows: the smallest split takes {share:.0%} of rows; or set split.stratify: false",
    ]
    return fixes


def _seeded_split(
    values: np.ndarray, *, validation: float, test: float, seed: int, stratify: bool
) -> np.ndarray:
    """0 train, 1 validation, 2 test per row: test first, then validation from the rest."""
    positions = np.arange(len(values))
    try:
        rest, test_rows = train_test_split(
            positions, test_size=test, random_state=seed, stratify=values if stratify else None
        )
        _, validation_rows = train_test_split(
            rest,
            test_size=validation / (1 - test),
            random_state=seed,
            stratify=values[rest] if stratify else None,
        )
    except ValueError as exc:
        raise PipelineError(f"cannot split {len(values)} rows: {exc}") from None
    assignment = np.zeros(len(values), dtype="int8")
    assignment[validation_rows] = 1
    assignment[test_rows] = 2
    return assignment


def split_assignment(
    labels: pd.Series,
    *,
    validation: float,
    test: float,
    seed: int,
    stratify: bool = True,
    task: str = "classification",
    classes: list[str] | None = None,
) -> np.ndarray:
    """The split of each row, by position: 0 train, 1 validation, 2 test. `classes` names
    the class codes in `labels`, for messages."""
    target = labels.name
    if task == "regression":
        if labels.nunique() < 2:
            raise PipelineError(
                f"target column '{target}' has {labels.nunique()} distinct value(s); "
                "at least two are needed"
            )
        # Stratify on quantile bins; each bin must have enough rows for every split.
        smallest_share = min(validation, test, 1 - validation - test)
        bins = int(max(1, min(10, len(labels) * smallest_share // 2)))
        strata = pd.qcut(labels.rank(method="first"), q=bins, labels=False)
        strata = pd.Series(np.asarray(strata), name=target)
        return split_assignment(
            strata, validation=validation, test=test, seed=seed, stratify=stratify and bins > 1
        )
    counts = labels.value_counts()
    check_class_counts(
        counts, target=target, validation=validation, test=test, stratify=stratify, classes=classes
    )
    values = labels.to_numpy()
    assignment = _seeded_split(
        values, validation=validation, test=test, seed=seed, stratify=stratify
    )
    for code, name in enumerate(paths.SPLIT_NAMES):
        absent = sorted(set(counts.index) - set(values[assignment == code]))
        if absent:
            raise PipelineError(
                f"the {name} split has no rows of class(es) {absent} of '{target}'; "
                "add rows, or change split.validation / split.test"
            )
    return assignment


def check_class_counts(
    counts: pd.Series,
    *,
    target: str,
    validation: float,
    test: float,
    stratify: bool,
    classes: list[str] | None,
) -> None:
    """At least two classes, and (stratified) each with the rows it needs to appear in
    every split; `counts` is rows per class code."""
    counts = counts[counts > 0]
    require_two_classes(len(counts), where=f"target column '{target}'")
    smallest_share = min(validation, test, 1 - validation - test)
    too_small = (counts < min_class_rows(validation=validation, test=test)).to_numpy()
    if stratify and too_small.any():
        named = counts if classes is None else counts.rename(lambda code: classes[int(code)])
        small = named[too_small]
        raise PipelineError(
            f"class(es) too small to appear in every split of '{target}': "
            + ", ".join(f"{label} ({count} rows)" for label, count in small.items()),
            _too_small_fixes(small, named, smallest_share),
        )


def split_frame(
    frame: pd.DataFrame,
    *,
    target: str,
    validation: float,
    test: float,
    seed: int,
    stratify: bool = True,
    task: str = "classification",
) -> dict[str, pd.DataFrame]:
    """Return {'train', 'validation', 'test'} frames, rows in table order; no row appears
    in two of them."""
    if target not in frame.columns:
        raise PipelineError(f"target column '{target}' is not in the prepared table")
    assignment = split_assignment(
        frame[target], validation=validation, test=test, seed=seed, stratify=stratify, task=task
    )
    return {
        name: frame[assignment == code].reset_index(drop=True)
        for code, name in enumerate(paths.SPLIT_NAMES)
    }


def split_report(
    assignment: np.ndarray, labels: pd.Series, *, classes: list[str]
) -> dict[str, Any]:
    """Rows, share and class counts of each split (for regression, with no classes, the
    target's mean, standard deviation and range)."""
    report: dict[str, Any] = {}
    values = labels.to_numpy()
    for code, name in enumerate(paths.SPLIT_NAMES):
        members = assignment == code
        report[name] = {"rows": int(members.sum()), "fraction": round(float(members.mean()), 4)}
        if classes:
            report[name]["classes"] = {
                label: int((members & (values == index)).sum())
                for index, label in enumerate(classes)
            }
        else:
            part = values[members].astype("float64")
            report[name]["target"] = {
                "mean": round(float(part.mean()), 6),
                "std": round(float(part.std()), 6),
                "min": float(part.min()),
                "max": float(part.max()),
            }
    return report
