"""The raw-column model: load_model on it, its SavedModel and the row transform agree."""

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from stages.data.encoding import to_inputs
from stages.data.preparation import spec_from_schema
from stages.data.transform import clean_frame, encode_features
from stages.model.build import build_model
from stages.model.files import save_model
from stages.model.inference import predict_proba
from stages.model.serving import core_model, raw_inputs, serving_model, takes_raw_columns

TOKENS = ["", "?", "NA"]
SCHEMA = pa.DataFrameSchema(
    {
        "age": pa.Column("int64"),
        "hours per week": pa.Column("float64", nullable=True),
        "Farbe (Ü)": pa.Column("str", pa.Check.isin(["red", "green", "blue"]), nullable=True),
        "plane": pa.Column("str", nullable=True),
        "when": pa.Column("datetime64[ns]", nullable=True),
        "member": pa.Column("bool"),
        "label": pa.Column("str", pa.Check.isin(["no", "yes"])),
    },
    metadata={"embedded_categories": {"plane": "many values"}},
)
RAW = pd.DataFrame(
    {
        "age": [25, 40, 33, 58, 19, 70],
        "hours per week": [40.0, None, 20.5, 60.0, 10.0, 1e6],
        "Farbe (Ü)": ["red", " blue ", None, "purple", "?", "green"],
        "plane": ["N1", "N2", None, "N9", "N1", " N2"],
        "when": [
            "2013-01-05T10:30:00Z",
            "1999-12-31",
            None,
            "2024-02-29 23:59",
            "1970-01-01",
            "1900-03-01",
        ],
        "member": [True, False, True, True, False, False],
    }
)


@pytest.fixture(scope="module")
def models():
    spec = spec_from_schema(SCHEMA, target="label")
    vocabularies = {"plane": ["N1", "N2"]}
    n = len(spec.feature_columns)
    rng = np.random.default_rng(0)
    core = build_model(
        n_features=n,
        n_classes=2,
        mean=rng.normal(size=n),
        variance=rng.uniform(0.5, 2, size=n),
        hidden_units=[8],
        activation="relu",
        dropout=0.0,
        l2=0.0,
        initializer="he_normal",
        vocabularies=vocabularies,
    )
    raw = serving_model(core, spec=spec, vocabularies=vocabularies, missing_tokens=TOKENS)
    return spec, vocabularies, core, raw


def through_the_transform(spec, vocabularies, core) -> np.ndarray:
    clean = clean_frame(RAW, missing_tokens=TOKENS, schema=SCHEMA)
    return predict_proba(core, to_inputs(encode_features(clean, spec=spec), spec, vocabularies))


def test_the_raw_column_model_equals_the_core_on_the_row_transform(models):
    spec, vocabularies, core, raw = models
    assert takes_raw_columns(raw) and core_model(raw) is core and not takes_raw_columns(core)
    expected = through_the_transform(spec, vocabularies, core)
    np.testing.assert_allclose(predict_proba(raw, raw_inputs(RAW, spec)), expected, rtol=1e-5)


def test_saved_file_and_saved_model_agree_with_the_transform(models, tmp_path):
    import keras
    import tensorflow as tf

    spec, vocabularies, core, raw = models
    expected = through_the_transform(spec, vocabularies, core)
    save_model(raw, tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(predict_proba(loaded, raw_inputs(RAW, spec)), expected, rtol=1e-5)
    loaded.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    saved = tf.saved_model.load(str(tmp_path / "saved"))  # keep it: serve uses its variables
    served = saved.serve(raw_inputs(RAW, spec))
    np.testing.assert_allclose(np.asarray(served)[:, 0], expected[:, 1], rtol=1e-5)


def test_export_wraps_a_model_file_that_holds_only_the_core(models, tmp_path):
    """What several JAX workers save (the core alone) still exports as a raw-column model."""
    import tensorflow as tf

    from stages.tools.export import export_saved_model

    spec, vocabularies, core, _ = models
    save_model(core, tmp_path / "core.keras")
    spec.save(tmp_path / "encoding.json")
    export_saved_model(
        tmp_path / "core.keras",
        tmp_path / "saved",
        spec_path=tmp_path / "encoding.json",
        missing_tokens=TOKENS,
    )
    saved = tf.saved_model.load(str(tmp_path / "saved"))
    served = np.asarray(saved.serve(raw_inputs(RAW, spec)))[:, 0]
    expected = through_the_transform(spec, vocabularies, core)[:, 1]
    np.testing.assert_allclose(served, expected, rtol=1e-5)
