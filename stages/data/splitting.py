"""Assigning prepared rows to train, validation and test: seeded, stratified on the
target (its deciles for regression), every class in every split.

The draw is scikit-learn's `train_test_split` (a `StratifiedShuffleSplit`, or a
`ShuffleSplit` with `split.stratify: false`), written out here in numpy: the split stage
runs in a process of its own, where importing scikit-learn (0.55 s, most of it SciPy's
statistics) took longer than splitting Adult. The same seed gives the same rows as
scikit-learn does (tests/data/test_splitting.py draws both on many shapes), and the split
does not move when a scikit-learn release changes its private helpers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

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


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """Rows drawn from each class: their share of `n_draws`, rounded down, then one more
    for the classes with the largest remainders (ties broken by `rng`), to make the total
    (scikit-learn's `utils.extmath._approximate_mode`)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add_now = min(len(tied), need_to_add)
            floored[rng.choice(tied, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _hold_out(
    values: np.ndarray, share: float, *, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Positions kept and held out: `ceil(share * rows)` held out, drawn by `seed` as
    scikit-learn's `train_test_split(..., test_size=share, random_state=seed,
    stratify=values if stratify else None)` draws them."""
    n_rows = len(values)
    n_held = math.ceil(share * n_rows)
    n_kept = n_rows - n_held
    if n_kept <= 0:
        raise PipelineError(f"cannot split {n_rows} rows: holding out {share:.0%} leaves none")
    rng = np.random.RandomState(seed)
    if not stratify:
        permutation = rng.permutation(n_rows)
        return permutation[n_held:], permutation[:n_held]
    classes, codes, class_counts = np.unique(values, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or min(n_kept, n_held) < len(classes):
        raise PipelineError(
            f"cannot split {n_rows} rows: every class needs at least 2 rows and each part "
            f"at least one row of each of the {len(classes)} classes"
        )
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(class_counts)[:-1])
    kept_counts = _approximate_mode(class_counts, n_kept, rng)
    held_counts = _approximate_mode(class_counts - kept_counts, n_held, rng)
    kept, held = [], []
    for rows, n_k, n_h in zip(members, kept_counts, held_counts, strict=True):
        shuffled = rows.take(rng.permutation(len(rows)), mode="clip")
        kept.append(shuffled[:n_k])
        held.append(shuffled[n_k : n_k + n_h])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held))


def _seeded_split(
    values: np.ndarray, *, validation: float, test: float, seed: int, stratify: bool
) -> np.ndarray:
    """0 train, 1 validation, 2 test per row: test first, then validation from the rest."""
    rest, test_rows = _hold_out(values, test, seed=seed, stratify=stratify)
    _, held = _hold_out(values[rest], validation / (1 - test), seed=seed, stratify=stratify)
    assignment = np.zeros(len(values), dtype="int8")
    assignment[rest[held]] = 1
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
