import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from stages.common.errors import PipelineError
from stages.data.splitting import _seeded_split, split_frame, split_report

from ..conftest import labelled_frame


def split(frame, **overrides):
    options = dict(target="label", validation=0.1, test=0.2, seed=7, stratify=True)
    return split_frame(frame, **{**options, **overrides})


def test_no_row_in_two_splits_and_none_lost():
    frame = labelled_frame(1000)
    splits = split(frame)
    ids = {name: set(rows["row_id"]) for name, rows in splits.items()}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert ids["train"] | ids["validation"] | ids["test"] == set(frame["row_id"])
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 700,
        "validation": 100,
        "test": 200,
    }


def test_stratified_class_shares_match_the_whole_table():
    frame = labelled_frame(1000, positive_every=4)  # 25% positive
    for name, rows in split(frame).items():
        assert rows["label"].mean() == pytest.approx(0.25, abs=0.005), name


def test_same_seed_same_split_other_seed_other_split():
    frame = labelled_frame(500)
    first, again, other = split(frame), split(frame), split(frame, seed=8)
    pd.testing.assert_frame_equal(first["test"], again["test"])
    assert set(first["test"]["row_id"]) != set(other["test"]["row_id"])


def test_a_class_too_small_for_every_split_fails_clearly():
    frame = labelled_frame(100, positive_every=25)  # 4 positive rows; validation takes 10%
    with pytest.raises(PipelineError) as caught:
        split(frame)
    assert "class(es) too small to appear in every split of 'label': 1 (4 rows)" in str(
        caught.value
    )


def test_a_single_class_fails_clearly():
    frame = labelled_frame(50).assign(label=0)
    with pytest.raises(PipelineError, match="has 1 class"):
        split(frame)


def test_report_counts_classes_per_split():
    from stages.data.splitting import split_assignment

    frame = labelled_frame(1000)
    assignment = split_assignment(frame["label"], validation=0.1, test=0.2, seed=7)
    report = split_report(assignment, frame["label"], classes=["neg", "pos"])
    assert report["test"] == {"rows": 200, "fraction": 0.2, "classes": {"neg": 150, "pos": 50}}
    assert sum(part["rows"] for part in report.values()) == 1000
    splits = split(frame)
    assert {name: len(rows) for name, rows in splits.items()} == {
        name: part["rows"] for name, part in report.items()
    }


def sklearn_split(values, *, validation, test, seed, stratify):
    """The split as scikit-learn's train_test_split draws it: test, then validation."""
    positions = np.arange(len(values))
    rest, test_rows = train_test_split(
        positions, test_size=test, random_state=seed, stratify=values if stratify else None
    )
    _, validation_rows = train_test_split(
        rest,
        test_size=validation / (1 - test),
        random_state=seed,
        stratify=values[rest] if stratify else None,
    )
    assignment = np.zeros(len(values), dtype="int8")
    assignment[validation_rows], assignment[test_rows] = 1, 2
    return assignment


@pytest.mark.parametrize("stratify", [True, False])
def test_the_split_draws_the_rows_scikit_learn_draws(stratify):
    """Row for row scikit-learn's train_test_split, on tables of many sizes, class counts
    (balanced, skewed, tied remainders) and shares."""
    draw = np.random.default_rng(0)
    for case in range(60):
        rows = int(draw.integers(120, 3000))
        n_classes = int(draw.integers(2, 9))
        weights = draw.dirichlet(np.ones(n_classes) * (0.3 if case % 3 else 5.0))
        values = draw.choice(n_classes, size=rows, p=weights)
        values[: n_classes * 12] = np.repeat(np.arange(n_classes), 12)  # enough rows per class
        validation, test = (float(x) for x in draw.choice([0.1, 0.15, 0.2, 0.25, 1 / 3], 2))
        seed = int(draw.integers(0, 2**31))
        options = dict(validation=validation, test=test, seed=seed, stratify=stratify)
        ours, theirs = _seeded_split(values, **options), sklearn_split(values, **options)
        np.testing.assert_array_equal(ours, theirs, err_msg=str((rows, n_classes, options)))
