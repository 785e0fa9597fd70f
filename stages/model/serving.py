"""The raw-column model: the trained numeric core wrapped in the row transform, for serving.

Training works on a numeric core (stages/model/: backend-agnostic Keras, fast, the same on
TensorFlow or JAX). For serving, `serving_model` wraps that core in layers that do what
stages/data/transform.py does to a raw row: trim text and turn missing-value tokens into
missing, look categories up in their vocabularies (the schema's, or the one learned from
train rows; anything else is out of vocabulary), turn a missing number into 0 plus its
indicator, and split a date into its parts. So `keras.models.load_model` on
models/model.keras, the SavedModel that `stages export` writes, and `stages predict` give
the same outputs on the same raw rows.

Inputs, one per raw feature column, each of shape (rows, 1), keyed `c<position>_<name>` (the
column's position among the spec's features, and its name with anything but letters,
digits and _ made _; `raw_inputs` builds them from a table):
text (tf.string) for a category, float32 for a number or a yes/no (NaN: missing), float64
seconds since 1970-01-01 UTC for a date (NaN: missing). String lookups need TensorFlow:
this model runs on the TensorFlow backend only; the core runs anywhere.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pandas as pd
from keras import ops

from stages.data.encoding import EncodingSpec, FeatureSpec
from stages.data.transform import parse_dates

# The core's own layers register themselves on import, so `import stages.serving` is all a
# caller needs before keras.models.load_model("models/model.keras").
from stages.model import ensemble, head, layers  # noqa: F401


@keras.saving.register_keras_serializable(package="stages")
class CleanText(keras.layers.Layer):
    """Trims text and turns missing-value tokens into "" (missing), as `clean_frame` does."""

    def __init__(self, tokens: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.tokens = [str(token) for token in tokens]

    def call(self, text):
        import tensorflow as tf

        text = tf.strings.strip(text)
        for token in self.tokens:
            text = tf.where(tf.equal(text, token), tf.constant(""), text)
        return text

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "tokens": self.tokens}


@keras.saving.register_keras_serializable(package="stages")
class NumberColumn(keras.layers.Layer):
    """A number (NaN: missing) as its value (0 when missing), then, when the column may be
    missing, its indicator."""

    def __init__(self, indicator: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.indicator = bool(indicator)

    def call(self, values):
        values = ops.cast(values, "float32")
        absent = ops.isnan(values)
        out = [ops.where(absent, 0.0, values)]
        if self.indicator:
            out.append(ops.cast(absent, "float32"))
        return ops.concatenate(out, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 if self.indicator else 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "indicator": self.indicator}


@keras.saving.register_keras_serializable(package="stages")
class DateParts(keras.layers.Layer):
    """Seconds since 1970-01-01 UTC (NaN: missing) as year, month, day, weekday (Monday 0)
    and hour (with minutes as a fraction), 0 when missing, then the indicator when the
    column may be missing: the parts `encode_features` takes from a date."""

    def __init__(self, indicator: bool, **kwargs) -> None:
        # Not autocast: seconds since 1970 in float32 lose their minutes (2^24 < 1.7e9).
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.indicator = bool(indicator)

    def call(self, seconds):
        seconds = ops.cast(seconds, "float64")
        absent = ops.isnan(seconds)
        seconds = ops.where(absent, 0.0, seconds)
        days = ops.floor(seconds / 86400.0)
        # Civil date from a day count (H. Hinnant's days_from_civil, inverted).
        z = days + 719468.0
        era = ops.floor(z / 146097.0)
        doe = z - era * 146097.0
        yoe = ops.floor(
            (doe - ops.floor(doe / 1460.0) + ops.floor(doe / 36524.0) - ops.floor(doe / 146096.0))
            / 365.0
        )
        doy = doe - (365.0 * yoe + ops.floor(yoe / 4.0) - ops.floor(yoe / 100.0))
        mp = ops.floor((5.0 * doy + 2.0) / 153.0)
        day = doy - ops.floor((153.0 * mp + 2.0) / 5.0) + 1.0
        month = ops.where(mp < 10.0, mp + 3.0, mp - 9.0)
        year = yoe + era * 400.0 + ops.cast(month <= 2.0, "float64")
        weekday = (days + 3.0) - 7.0 * ops.floor((days + 3.0) / 7.0)
        hour = ops.floor((seconds - days * 86400.0) / 60.0) / 60.0
        parts = [ops.where(absent, 0.0, part) for part in (year, month, day, weekday, hour)]
        if self.indicator:
            parts.append(ops.cast(absent, "float64"))
        return ops.cast(ops.concatenate(parts, axis=1), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 6 if self.indicator else 5)

    def get_config(self) -> dict:
        return {**super().get_config(), "indicator": self.indicator}


@keras.saving.register_keras_serializable(package="stages")
class NoColumns(keras.layers.Layer):
    """A float matrix of no columns, one row per input row: the numeric input of a core
    whose every feature is an embedded category."""

    def call(self, rows):
        return ops.zeros((ops.shape(rows)[0], 0), dtype="float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 0)


def input_name(index: int, column: str) -> str:
    """A name TensorFlow accepts for the input of a column (any text may be a column name)."""
    return f"c{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", column)[:40]


def serving_model(
    core: keras.Model,
    *,
    spec: EncodingSpec,
    vocabularies: dict[str, list[str]],
    missing_tokens: list[str],
) -> keras.Model:
    """The core wrapped in the row transform: a model that takes raw columns."""
    inputs: dict[str, keras.KerasTensor] = {}
    numbers, codes = [], []
    for index, feature in enumerate(spec.features):
        name = input_name(index, feature.name)
        if feature.kind in ("numeric", "datetime"):
            dtype = "float64" if feature.kind == "datetime" else "float32"
            column = inputs[name] = keras.Input(shape=(1,), dtype=dtype, name=name)
            layer = NumberColumn if feature.kind == "numeric" else DateParts
            numbers.append(layer(feature.nullable, name=f"{name}_value", dtype="float32")(column))
            continue
        column = inputs[name] = keras.Input(shape=(1,), dtype="string", name=name)
        text = CleanText(missing_tokens, name=f"{name}_clean")(column)
        if feature.kind == "categorical":
            onehot = keras.layers.StringLookup(
                vocabulary=feature.vocabulary or [],
                num_oov_indices=1,
                output_mode="one_hot",
                name=f"{name}_lookup",
            )(text)
            numbers.append(onehot[:, 1:])  # the out-of-vocabulary column dropped: all zeros
        else:
            codes.append(
                keras.layers.StringLookup(
                    # An empty vocabulary (no value frequent enough in train rows) cannot be
                    # set: a value no cleaned text takes stands in, so every row gets code 0.
                    vocabulary=vocabularies[feature.name] or ["\x00"],
                    num_oov_indices=1,
                    output_mode="int",
                    name=f"{name}_lookup",
                )(text)
            )
    joined = None
    if codes:
        joined = keras.layers.Concatenate(name="codes")(codes) if len(codes) > 1 else codes[0]
    if len(numbers) > 1:
        matrix = keras.layers.Concatenate(name="features", dtype="float32")(numbers)
    else:
        matrix = numbers[0] if numbers else NoColumns(name="features")(joined)
    core_inputs = matrix if joined is None else [matrix, ops.cast(joined, "int32")]
    return keras.Model(inputs, core(core_inputs), name="raw_columns")


def core_model(model: keras.Model) -> keras.Model:
    """The numeric core of a model: itself, or the core a raw-column model wraps (its only
    layer that is a model)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    return model


def takes_raw_columns(model: keras.Model) -> bool:
    return core_model(model) is not model


def raw_inputs(frame: pd.DataFrame, spec: EncodingSpec) -> dict[str, np.ndarray]:
    """Raw rows (cleaned or not) as the serving model's inputs, by column name."""
    import tensorflow as tf

    return {
        input_name(index, feature.name): _column_input(frame[feature.name], feature, tf)
        for index, feature in enumerate(spec.features)
    }


def _column_input(column: pd.Series, feature: FeatureSpec, tf):
    if feature.kind == "numeric":
        values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
        return tf.constant(values.astype("float32").reshape(-1, 1))
    if feature.kind == "datetime":
        stamps = parse_dates(column, date_format=feature.date_format)
        seconds = stamps.astype("int64").to_numpy() // 10**9
        values = np.where(stamps.isna().to_numpy(), np.nan, seconds.astype("float64"))
        return tf.constant(values.reshape(-1, 1), dtype=tf.float64)
    text = column.astype("string").fillna("").to_numpy(dtype=object).astype(str)
    return tf.constant(text.reshape(-1, 1))
