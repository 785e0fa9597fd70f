import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from stages.encoding import EncodingSpec, model_inputs
from stages.errors import PipelineError
from stages.prepare import (
    clean_frame,
    encode_features,
    encode_target,
    prepare_frame,
    spec_from_schema,
)

TOKENS = ["", "?", "NA"]


def test_spec_comes_from_the_schema_alone(spec):
    assert spec.target == "label"
    assert spec.classes == ["no", "yes"]
    assert spec.excluded == {"id": "an identifier, not a property of the row"}
    assert spec.feature_columns == [
        "age",
        "hours",
        "hours__missing",
        "color=red",
        "color=green",
        "color=blue",
    ]
    assert spec.numeric_columns == ["age", "hours"]


def test_exact_encoding_of_a_few_rows(spec, raw_frame):
    encoded = encode_features(raw_frame, spec=spec)
    assert spec.table_columns == ["age", "hours", "hours__missing", "color"]
    assert list(encoded.columns) == spec.table_columns
    assert encoded["age"].tolist() == [25, 40, 33, 58, 19]
    assert encoded["hours"].tolist() == [40.0, 0.0, 20.5, 60.0, 10.0]  # missing: 0 ...
    assert encoded["hours__missing"].tolist() == [0, 1, 0, 0, 0]  # ... plus its indicator
    assert encoded["color"].tolist() == [0, 2, -1, 1, 0]  # codes; missing: -1
    assert encoded["color"].dtype == "int32" and encoded["age"].dtype == "float32"
    expected = np.array(
        [
            [25, 40.0, 0, 1, 0, 0],
            [40, 0.0, 1, 0, 0, 1],
            [33, 20.5, 0, 0, 0, 0],  # missing category: all zeros
            [58, 60.0, 0, 0, 1, 0],
            [19, 10.0, 0, 1, 0, 0],
        ],
        dtype="float32",
    )
    np.testing.assert_array_equal(model_inputs(encoded, spec), expected)
    np.testing.assert_array_equal(
        encode_target(raw_frame["label"], classes=spec.classes), [0, 1, 0, 1, 0]
    )


def test_unknown_category_encodes_to_all_zeros(spec, raw_frame):
    row = raw_frame.iloc[[0]].assign(color="purple")
    encoded = encode_features(row, spec=spec)
    assert encoded["color"].tolist() == [-1]
    assert model_inputs(encoded, spec)[:, 3:].tolist() == [[0, 0, 0]]


def test_a_row_encodes_the_same_alone_or_in_a_batch(spec, raw_frame):
    batch = encode_features(raw_frame, spec=spec)
    for position in range(len(raw_frame)):
        alone = encode_features(raw_frame.iloc[[position]], spec=spec)
        np.testing.assert_array_equal(alone.to_numpy()[0], batch.to_numpy()[position])


def test_clean_trims_text_maps_tokens_and_drops_duplicates_and_unlabelled(spec, raw_frame):
    messy = pd.concat([raw_frame, raw_frame.iloc[[0]]], ignore_index=True)  # a duplicate
    messy.loc[1, "color"] = "  blue "
    messy.loc[3, "color"] = "?"
    messy.loc[4, "label"] = "NA"  # unlabelled once the token becomes missing
    before = messy.copy()
    clean, counts = clean_frame(messy, spec=spec, missing_tokens=TOKENS, drop_duplicates=True)
    pd.testing.assert_frame_equal(messy, before)  # the input is not mutated
    assert counts == {
        "rows_in": 6,
        "duplicates_dropped": 1,
        "unlabelled_dropped": 1,
        "rows_out": 4,
    }
    assert clean["row_id"].tolist() == [0, 1, 2, 3]
    assert clean["color"].tolist()[1] == "blue"
    assert pd.isna(clean["color"].tolist()[3])


def test_keep_duplicates_when_asked(spec, raw_frame):
    doubled = pd.concat([raw_frame, raw_frame], ignore_index=True)
    clean, counts = clean_frame(doubled, spec=spec, missing_tokens=TOKENS, drop_duplicates=False)
    assert counts["duplicates_dropped"] == 0
    assert len(clean) == 10


def test_prepare_frame_layout(spec, raw_frame):
    prepared, counts = prepare_frame(
        raw_frame, spec=spec, missing_tokens=TOKENS, drop_duplicates=True
    )
    assert list(prepared.columns) == ["row_id", *spec.table_columns, "label"]
    assert prepared["label"].tolist() == [0, 1, 0, 1, 0]
    assert "id" not in prepared.columns
    assert counts == {"rows_in": 5, "duplicates_dropped": 0, "unlabelled_dropped": 0, "rows_out": 5}


def test_duplicates_are_found_across_batches(spec, raw_frame):
    from stages.prepare import SeenRows

    seen = SeenRows()
    first, _ = prepare_frame(
        raw_frame, spec=spec, missing_tokens=TOKENS, drop_duplicates=True, seen=seen
    )
    again = raw_frame.iloc[[1, 3]].assign(row_id=[7, 8])  # the same rows, later in the table
    second, counts = prepare_frame(
        again, spec=spec, missing_tokens=TOKENS, drop_duplicates=True, seen=seen
    )
    assert len(first) == 5 and second.empty
    assert counts["duplicates_dropped"] == 2


def test_label_outside_the_classes_is_an_error(spec):
    with pytest.raises(PipelineError, match=r"labels outside the schema's classes: \['maybe'\]"):
        encode_target(pd.Series(["no", "maybe"], name="label"), classes=spec.classes)


def test_text_column_without_vocabulary_is_refused():
    schema = pa.DataFrameSchema(
        {"name": pa.Column("str"), "y": pa.Column("str", pa.Check.isin(["a", "b"]))}
    )
    with pytest.raises(
        PipelineError, match="schema column 'name' is text without an isin vocabulary"
    ):
        spec_from_schema(schema, target="y")


def test_target_needs_two_declared_classes():
    schema = pa.DataFrameSchema({"x": pa.Column("float64"), "y": pa.Column("str")})
    with pytest.raises(PipelineError, match="needs an isin check listing at least two classes"):
        spec_from_schema(schema, target="y")


def test_spec_round_trips_through_json(spec, tmp_path):
    path = tmp_path / "encoding.json"
    spec.save(path)
    assert EncodingSpec.load(path) == spec
