"""The network: a multilayer perceptron with its input scaling built in.

Pure builders, no file access. Model code uses backend-agnostic Keras 3 only (no tf.* ops),
so the same model runs on TensorFlow (the default) or JAX.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.encoding import EncodingSpec


def scaling_statistics(
    features: pd.DataFrame, *, spec: EncodingSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance for the model's Normalization layer.

    Computed from the rows given (the train split only). Numeric columns are scaled over
    their non-missing rows; indicator and one-hot columns pass through unchanged (mean 0,
    variance 1), so a category unseen in train cannot blow up at prediction time.
    """
    mean = np.zeros(len(spec.feature_columns), dtype="float64")
    variance = np.ones(len(spec.feature_columns), dtype="float64")
    position = {name: index for index, name in enumerate(spec.feature_columns)}
    for feature in spec.features:
        if feature.kind != "numeric":
            continue
        values = features[feature.name].to_numpy(dtype="float64")
        indicator = f"{feature.name}__missing"
        if indicator in features.columns:
            values = values[features[indicator].to_numpy() == 0]
        if values.size:
            index = position[feature.name]
            mean[index] = values.mean()
            spread = values.var()
            variance[index] = spread if spread > 0 else 1.0
    return mean, variance


def build_model(
    *,
    n_features: int,
    n_classes: int,
    mean: np.ndarray,
    variance: np.ndarray,
    hidden_units: list[int],
    activation: str,
    dropout: float,
    l2: float,
    initializer: str,
):
    """An MLP: Normalization, then Dense (+ Dropout) blocks, then a sigmoid or softmax head."""
    import keras

    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="scaling")(inputs)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    for index, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=initializer,
            kernel_regularizer=regularizer,
            name=f"hidden_{index}",
        )(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{index}")(x)
    if n_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    else:
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="probability")(x)
    return keras.Model(inputs, outputs, name="mlp")


def compile_model(model, *, n_classes: int, optimizer: str, learning_rate: float) -> None:
    """Attach the optimizer and the loss that fits the task."""
    import keras

    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )


def predict_proba(model, features: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities, shape (rows, classes), whatever the head."""
    raw = np.asarray(model.predict(features, batch_size=batch_size, verbose=0), dtype="float64")
    if raw.shape[1] == 1:
        return np.hstack([1.0 - raw, raw])
    return raw
