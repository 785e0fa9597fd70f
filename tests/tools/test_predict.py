import numpy as np
import pandas as pd
import pytest

from stages.common.errors import PipelineError
from stages.data.encoding import model_inputs
from stages.data.transform import clean_frame, encode_features
from stages.model.build import build_model
from stages.model.inference import predict_proba
from stages.model.predictor import feature_schema, predict_frame

TOKENS = ["", "?", "NA"]


@pytest.fixture
def model(spec):
    n = len(spec.feature_columns)
    return build_model(
        n_features=n,
        n_classes=2,
        mean=np.zeros(n),
        variance=np.ones(n),
        hidden_units=[4],
        activation="relu",
        dropout=0.0,
        l2=0.0,
        initializer="he_normal",
    )


def predictions(raw, schema, spec, model):
    return predict_frame(
        raw,
        schema=feature_schema(schema, target="label"),
        spec=spec,
        model=model,
        missing_tokens=TOKENS,
    )


def predict(raw, schema, spec, model):
    return predictions(raw, schema, spec, model).table


def test_predictions_equal_the_model_on_the_prepare_encoding(schema, spec, model, raw_frame):
    out = predict(raw_frame.drop(columns=["label"]), schema, spec, model)
    encoded = encode_features(clean_frame(raw_frame, missing_tokens=TOKENS), spec=spec)
    expected = predict_proba(model, model_inputs(encoded, spec))
    # predict applies the head's calibration to the logits in float64: equal to the
    # model's float32 output to its rounding (1 - p of a p near 1 keeps few digits there).
    np.testing.assert_allclose(
        out[["probability_no", "probability_yes"]].to_numpy(), expected, rtol=1e-5, atol=1e-6
    )
    assert out["error"].isna().all()
    # Two classes: "yes" when its probability reaches the head's threshold (0.5 untrained).
    decided = (expected[:, 1] >= 0.5).astype(int)
    assert out["predicted"].tolist() == np.array(["no", "yes"])[decided].tolist()


def test_a_value_that_is_not_a_number_invalidates_its_row_only(schema, spec, model, raw_frame):
    raw = raw_frame.drop(columns=["label"]).astype({"age": object, "hours": object})
    raw.loc[1, "age"] = "abc"  # text in a number column (JSON or a mixed CSV column)
    raw.loc[2, "age"] = "41.5"  # a fraction where the schema wants whole numbers
    raw.loc[3, "age"] = " 38 "  # a number written as text: read as the number
    raw.loc[4, "hours"] = "NA"  # a missing-value token where the schema allows one
    out = predict(raw, schema, spec, model)
    assert out["error"][1] == "age: 'abc' is not a number"
    assert out["error"][2] == "age: '41.5' is not a whole number"
    assert out["error"][[0, 3, 4]].isna().all()
    clean = raw_frame.drop(columns=["label"]).astype({"age": "int64"})
    clean.loc[3, "age"], clean.loc[4, "hours"] = 38, None
    expected = predict(clean, schema, spec, model)
    assert out["probability_yes"][[0, 3, 4]].tolist() == pytest.approx(
        expected["probability_yes"][[0, 3, 4]].tolist(), rel=1e-6
    )


def test_the_label_column_may_be_present_and_is_ignored(schema, spec, model, raw_frame):
    with_label = predict(raw_frame, schema, spec, model)
    without = predict(raw_frame.drop(columns=["label"]), schema, spec, model)
    pd.testing.assert_frame_equal(with_label, without)


def test_invalid_rows_get_a_reason_and_keep_their_place(schema, spec, model, raw_frame):
    raw = raw_frame.drop(columns=["label"])
    raw.loc[1, "age"] = -4  # out of range
    raw.loc[3, "age"] = None  # missing where the schema forbids it
    raw.loc[4, "hours"] = None  # missing where the schema allows it
    out = predict(raw, schema, spec, model)
    assert len(out) == 5
    assert out["error"][1] == "age: '-4' fails in_range(0, 120)"
    assert out["error"][3] == "age: missing, and the schema requires a value"
    assert pd.isna(out["predicted"][1]) and pd.isna(out["predicted"][3])
    assert np.isnan(out["probability_yes"][[1, 3]]).all()
    valid = [0, 2, 4]
    assert out["error"][valid].isna().all() and out["predicted"][valid].notna().all()
    alone = predict(raw.iloc[[4]], schema, spec, model)  # a row predicts the same alone
    assert alone["probability_yes"][0] == pytest.approx(out["probability_yes"][4], rel=1e-6)


def test_a_missing_column_fails_the_whole_input(schema, spec, model, raw_frame):
    with pytest.raises(PipelineError, match=r"the rows lack 1 column\(s\) the model needs: color$"):
        predict(raw_frame.drop(columns=["color", "label"]), schema, spec, model)


def test_an_unseen_category_is_predicted_as_unknown_with_a_warning(schema, spec, model, raw_frame):
    raw = raw_frame.drop(columns=["label"])
    raw.loc[1, "color"] = "purple"
    out, unseen, _ = predictions(raw, schema, spec, model)
    assert unseen == {"color": 1}
    assert out["warning"][1] == "color: unseen category 'purple', treated as unknown"
    assert out["warning"].drop(index=1).isna().all()
    assert out["error"].isna().all()
    as_missing = predict(raw.assign(color=raw["color"].where(raw.index != 1)), schema, spec, model)
    assert out["probability_yes"][1] == pytest.approx(as_missing["probability_yes"][1], rel=1e-6)


def test_extra_columns_are_ignored_and_order_is_free(schema, spec, model, raw_frame):
    raw = raw_frame.drop(columns=["label"])
    shuffled = raw[list(reversed(raw.columns))].assign(comment="new", reason="x", row_id=1)
    pd.testing.assert_frame_equal(
        predict(shuffled, schema, spec, model), predict(raw, schema, spec, model)
    )


def test_drift_is_measured_against_the_train_profile(spec, raw_frame):
    from stages.data.drift import DriftCounter, psi, train_profile
    from stages.data.transform import encode_features

    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "age": rng.integers(20, 60, 2000),
            "hours": np.where(rng.random(2000) < 0.1, np.nan, rng.normal(40, 5, 2000)),
            "color": rng.choice(["red", "green", "blue"], 2000),
        }
    )
    profile = train_profile(encode_features(train, spec=spec), spec)
    same, shifted = DriftCounter(profile), DriftCounter(profile)
    same.add(encode_features(train.sample(500, random_state=1), spec=spec))
    older = train.assign(age=train["age"] + 25, color="red")
    shifted.add(encode_features(older, spec=spec))
    calm = same.summary(threshold=0.2)
    moved = shifted.summary(threshold=0.2, unseen={"color": 0})
    assert calm["drifted"] == [] and calm["columns"]["age"]["psi"] < 0.05
    assert moved["drifted"] == ["age", "color"]
    assert moved["columns"]["hours"]["psi"] < 0.05
    assert moved["columns"]["hours"]["missing_batch"] == pytest.approx(
        calm["columns"]["hours"]["missing_train"], abs=0.001
    )
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_listed_categories_are_counted_into_the_profiles_bins_by_code():
    """Drift counts a listed category's codes without turning each into text, into the
    same bins as counting their text would."""
    from stages.data.drift import OTHER, _category_bins, _code_bins, _present_labels

    rng = np.random.default_rng(0)
    for _ in range(100):
        codes = rng.integers(0, rng.integers(1, 30), size=rng.integers(0, 50))
        listed = sorted(set(rng.integers(0, 40, size=rng.integers(0, 8)).tolist()))
        shares = {**{str(code): 0.1 for code in listed}, OTHER: 0.1}
        by_text = _category_bins(_present_labels(pd.Series(codes), "categorical"), shares)
        np.testing.assert_array_equal(_code_bins(codes, shares), by_text)


def test_rolling_drift_covers_the_latest_rows_in_constant_memory(spec):
    """What `stages serve` reports at /drift: the latest window of rows, by whole blocks."""
    from stages.data.drift import DriftCounter, RollingDrift, train_profile
    from stages.data.transform import encode_features

    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "age": rng.integers(20, 60, 2000),
            "hours": rng.normal(40, 5, 2000),
            "color": rng.choice(["red", "green", "blue"], 2000),
        }
    )
    profile = train_profile(encode_features(train, spec=spec), spec)
    rolling = RollingDrift(profile, window=1000, buckets=10)
    older = train.assign(age=train["age"] + 25)
    closed = [
        rolling.add(encode_features(older.iloc[i : i + 50], spec=spec), {"color": 1})
        for i in range(0, 1000, 50)
    ]
    assert sum(closed) == 10 and len(rolling.full) == 10
    assert rolling.summary(threshold=0.2)["drifted"] == ["age"]
    for i in range(0, 2000, 50):  # the shift has left the window: calm again
        rolling.add(encode_features(train.iloc[i : i + 50], spec=spec), {})
    assert len(rolling.full) == 10  # the oldest block leaves as a new one joins
    calm = rolling.summary(threshold=0.2)
    assert calm["rows"] == 1000 and calm["drifted"] == []
    whole = DriftCounter(profile)
    whole.add(encode_features(train.iloc[1000:], spec=spec))
    assert calm["columns"] == whole.summary(threshold=0.2)["columns"]
