import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from stages.common.errors import PipelineError
from stages.data.encoding import EncodingSpec, model_inputs
from stages.data.preparation import drop_rows, encode_target, prepare_frame, spec_from_schema
from stages.data.transform import clean_frame, encode_features

TOKENS = ["", "?", "NA"]


def test_spec_comes_from_the_schema_alone(spec):
    assert spec.target == "label"
    assert spec.classes == ["no", "yes"]
    assert spec.excluded == {"id": "an identifier, not a property of the row"}
    assert spec.feature_columns == [
        "x:age",
        "x:hours",
        "m:hours",
        "x:color=red",
        "x:color=green",
        "x:color=blue",
    ]
    assert spec.numeric_columns == ["x:age", "x:hours"]


def test_exact_encoding_of_a_few_rows(spec, raw_frame):
    encoded = encode_features(raw_frame, spec=spec)
    assert spec.table_columns == ["x:age", "x:hours", "m:hours", "x:color"]
    assert list(encoded.columns) == spec.table_columns
    assert encoded["x:age"].tolist() == [25, 40, 33, 58, 19]
    assert encoded["x:hours"].tolist() == [40.0, 0.0, 20.5, 60.0, 10.0]  # missing: 0 ...
    assert encoded["m:hours"].tolist() == [0, 1, 0, 0, 0]  # ... plus its indicator
    assert encoded["x:color"].tolist() == [0, 2, -1, 1, 0]  # codes; missing: -1
    assert encoded["x:color"].dtype == "int32" and encoded["x:age"].dtype == "float32"
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
    assert encoded["x:color"].tolist() == [-1]
    assert model_inputs(encoded, spec)[:, 3:].tolist() == [[0, 0, 0]]


def test_a_row_encodes_the_same_alone_or_in_a_batch(spec, raw_frame):
    batch = encode_features(raw_frame, spec=spec)
    for position in range(len(raw_frame)):
        alone = encode_features(raw_frame.iloc[[position]], spec=spec)
        np.testing.assert_array_equal(alone.to_numpy()[0], batch.to_numpy()[position])


def test_clean_trims_text_and_maps_tokens_before_validation(raw_frame):
    messy = raw_frame.copy()
    messy.loc[1, "color"] = "  blue "
    messy.loc[3, "color"] = "?"
    messy.loc[4, "label"] = "NA"
    before = messy.copy()
    clean = clean_frame(messy, missing_tokens=TOKENS)
    pd.testing.assert_frame_equal(messy, before)  # the input is not mutated
    assert clean["color"].tolist()[1] == "blue"
    assert pd.isna(clean["color"].tolist()[3]) and pd.isna(clean["label"].tolist()[4])


def test_drop_rows_drops_duplicates_and_unlabelled(spec, raw_frame):
    messy = pd.concat([raw_frame, raw_frame.iloc[[0]]], ignore_index=True)  # a duplicate
    messy.loc[4, "label"] = None
    kept, counts = drop_rows(messy, spec=spec, row_id="row_id", drop_duplicates=True)
    assert counts == {
        "rows_in": 6,
        "duplicates_dropped": 1,
        "unlabelled_dropped": 1,
        "rows_out": 4,
    }
    assert kept["row_id"].tolist() == [0, 1, 2, 3]


def test_keep_duplicates_when_asked(spec, raw_frame):
    doubled = pd.concat([raw_frame, raw_frame], ignore_index=True)
    kept, counts = drop_rows(doubled, spec=spec, row_id="row_id", drop_duplicates=False)
    assert counts["duplicates_dropped"] == 0
    assert len(kept) == 10


def test_prepare_frame_layout(spec, raw_frame):
    prepared, counts = prepare_frame(raw_frame, spec=spec, drop_duplicates=True)
    assert list(prepared.columns) == ["row_id", *spec.table_columns, "target"]
    assert prepared["target"].tolist() == [0, 1, 0, 1, 0]
    assert "id" not in prepared.columns
    assert counts == {"rows_in": 5, "duplicates_dropped": 0, "unlabelled_dropped": 0, "rows_out": 5}


def test_later_copies_are_every_copy_but_the_first_whatever_the_order():
    import numpy as np

    from stages.data.preparation import later_copies

    hashes = np.array([7, 3, 7, 9, 3, 7], dtype="uint64")
    rows = np.array([50, 10, 20, 30, 40, 60])
    assert later_copies(hashes, rows).tolist() == [40, 50, 60]
    shuffled = np.random.default_rng(0).permutation(len(rows))
    assert later_copies(hashes[shuffled], rows[shuffled]).tolist() == [40, 50, 60]


def test_copies_found_elsewhere_are_dropped(spec, raw_frame):
    from stages.data.preparation import row_hashes

    first = raw_frame.assign(row_id=range(5))
    again = raw_frame.iloc[[1, 3]].assign(row_id=[7, 8])  # the same rows, later in the table
    assert (
        row_hashes(first.drop(columns="row_id").iloc[[1, 3]])
        == row_hashes(again.drop(columns="row_id"))
    ).all()
    import numpy as np

    kept, counts = prepare_frame(again, spec=spec, drop_duplicates=True, copies=np.array([7, 8]))
    assert kept.empty and counts["duplicates_dropped"] == 2


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
    with pytest.raises(PipelineError, match="in its isin check, has 0 class"):
        spec_from_schema(schema, target="y")


def test_spec_round_trips_through_json(spec, tmp_path):
    path = tmp_path / "encoding.json"
    spec.save(path)
    assert EncodingSpec.load(path) == spec


def test_user_columns_named_like_the_pipelines_own_do_not_collide(raw_frame):
    """A user's `row_id`, `target`, `reason` or `x__missing` is just another column."""
    frame = raw_frame.assign(row_id=[9, 8, 7, 6, 5], target=[1.0, None, 2.0, 3.0, 4.0])
    frame["m:hours"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    schema = pa.DataFrameSchema(
        {
            "row_id": pa.Column("int64"),
            "target": pa.Column("float64", nullable=True),
            "m:hours": pa.Column("float64"),
            "hours": pa.Column("float64", nullable=True),
            "label": pa.Column("str", pa.Check.isin(["no", "yes"])),
        }
    )
    spec = spec_from_schema(schema, target="label")
    prepared, _ = prepare_frame(
        frame.assign(row_id_1=range(5)), spec=spec, drop_duplicates=True, row_id="row_id_1"
    )
    assert prepared["row_id"].tolist() == [0, 1, 2, 3, 4]  # the pipeline's own row number
    assert prepared["x:row_id"].tolist() == [9, 8, 7, 6, 5]  # the user's column
    assert prepared["m:target"].tolist() == [0, 1, 0, 0, 0]
    assert prepared["x:m:hours"].tolist() == [1, 2, 3, 4, 5]
    assert prepared["m:hours"].tolist() == [0, 1, 0, 0, 0]
    assert prepared["target"].tolist() == [0, 1, 0, 1, 0]
    assert len(set(prepared.columns)) == len(prepared.columns)


def test_dates_become_their_parts():
    schema = pa.DataFrameSchema(
        {
            "when": pa.Column("datetime64[ns]", nullable=True),
            "label": pa.Column("str", pa.Check.isin(["a", "b"])),
        }
    )
    spec = spec_from_schema(schema, target="label")
    raw = pd.DataFrame(
        {"when": ["2013-01-05T10:30:00Z", "2024-12-31", None], "label": ["a", "b", "a"]}
    )
    encoded = encode_features(clean_frame(raw, missing_tokens=TOKENS, schema=schema), spec=spec)
    assert encoded["x:year:when"].tolist() == [2013, 2024, 0]
    assert encoded["x:month:when"].tolist() == [1, 12, 0]
    assert encoded["x:weekday:when"].tolist() == [5, 1, 0]  # a Saturday, a Tuesday
    assert encoded["x:hour:when"].tolist() == [10.5, 0, 0]
    assert encoded["m:when"].tolist() == [0, 0, 1]


def test_embedded_category_stays_text_until_train():
    schema = pa.DataFrameSchema(
        {
            "plane": pa.Column("str", nullable=True),
            "label": pa.Column("str", pa.Check.isin(["a", "b"])),
        },
        metadata={"embedded_categories": {"plane": "many values"}},
    )
    spec = spec_from_schema(schema, target="label")
    assert [feature.kind for feature in spec.features] == ["embedded"]
    assert spec.feature_columns == []  # not in the numeric matrix: the model's second input
    encoded = encode_features(pd.DataFrame({"plane": ["N1", None]}), spec=spec)
    assert encoded["x:plane"].tolist()[0] == "N1" and pd.isna(encoded["x:plane"].tolist()[1])
