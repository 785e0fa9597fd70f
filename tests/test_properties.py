"""Property-based checks of prepare's encoding on random valid frames."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.data.encoding import EncodingSpec, FeatureSpec, model_inputs
from stages.data.transform import encode_features

SPEC = EncodingSpec(
    target="y",
    classes=["a", "b"],
    features=[
        FeatureSpec(name="n", kind="numeric", nullable=True),
        FeatureSpec(name="m", kind="numeric", nullable=False),
        FeatureSpec(name="c", kind="categorical", nullable=True, vocabulary=["x", "y", "z"]),
    ],
)
numbers = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), numbers),
        numbers,
        st.one_of(st.none(), st.sampled_from(["x", "y", "z", "unseen"])),
    ),
    min_size=1,
    max_size=40,
)


def frame_of(values) -> pd.DataFrame:
    n, m, c = zip(*values, strict=True)
    return pd.DataFrame(
        {
            "n": pd.array([np.nan if v is None else v for v in n], dtype="float64"),
            "m": pd.array(m, dtype="float64"),
            "c": pd.array(c, dtype="str"),
        }
    )


@settings(max_examples=60, deadline=None)
@given(rows)
def test_encoding_is_finite_has_the_spec_width_and_is_row_independent(values):
    frame = frame_of(values)
    table = encode_features(frame, spec=SPEC)
    assert list(table.columns) == SPEC.table_columns
    assert table["x:c"].between(-1, 2).all()
    encoded = model_inputs(table, SPEC)
    assert encoded.shape == (len(frame), len(SPEC.feature_columns)) == (len(frame), 6)
    assert np.isfinite(encoded).all()
    onehot = encoded[:, 3:]
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    assert (onehot.sum(axis=1) <= 1).all()  # at most one category; unseen or missing: none
    np.testing.assert_array_equal(encoded[:, 1], frame["n"].isna().to_numpy())  # m:n
    for position in range(len(frame)):
        alone = model_inputs(encode_features(frame.iloc[[position]], spec=SPEC), SPEC)
        np.testing.assert_array_equal(alone[0], encoded[position])


@settings(max_examples=30, deadline=None)
@given(rows, st.randoms(use_true_random=False))
def test_encoding_does_not_depend_on_row_order(values, random):
    frame = frame_of(values)
    order = list(range(len(frame)))
    random.shuffle(order)
    encoded = model_inputs(encode_features(frame, spec=SPEC), SPEC)
    shuffled = model_inputs(encode_features(frame.iloc[order], spec=SPEC), SPEC)
    np.testing.assert_array_equal(shuffled, encoded[order])
