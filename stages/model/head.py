"""The classifier's head: its calibration (temperature, shift) and decision threshold,
stored inside the model so every way of serving applies them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOGITS, HEAD = "logits", "probability"  # the layers' names


@keras.saving.register_keras_serializable(package="stages")
class CalibratedHead(keras.layers.Layer):
    """Logits to class probabilities: sigmoid (one logit, two classes) or softmax of
    `scale * logits + shift`. It also holds a two-class model's decision threshold.

    Scale 1, shift 0 and threshold 0.5 while training (the loss sees the logits as they
    are); train then sets them from the validation split (stages/model/calibration.py). They are
    weights the optimizer never touches, saved with the model."""

    def build(self, input_shape) -> None:
        units = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones", trainable=False)
        self.shift = self.add_weight(
            name="shift", shape=(units,), initializer="zeros", trainable=False
        )
        self.threshold = self.add_weight(
            name="threshold",
            shape=(),
            initializer=keras.initializers.Constant(0.5),
            trainable=False,
        )
        super().build(input_shape)

    def call(self, logits):
        z = ops.cast(logits, "float32") * self.scale + self.shift
        if self.shift.shape[0] == 1:
            return keras.activations.sigmoid(z)
        return keras.activations.softmax(z, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


def _head(model: keras.Model) -> CalibratedHead | None:
    """The classifier's head, in the model or in the core a raw-column model wraps."""
    for layer in model.layers:
        if isinstance(layer, CalibratedHead):
            return layer
        if isinstance(layer, keras.Model) and (inner := _head(layer)) is not None:
            return inner
    return None


def set_decision(model: keras.Model, *, scale: float, shift: list[float], threshold: float) -> None:
    """Store the fitted calibration and the decision threshold in a classifier's head."""
    head = _head(model)
    head.scale.assign(float(scale))
    head.shift.assign(np.asarray(shift, dtype="float32"))
    head.threshold.assign(float(threshold))


def decision(model: keras.Model) -> dict[str, float | list[float]] | None:
    """A classifier's calibration (scale, shift) and threshold; None for a regressor."""
    head = _head(model)
    if head is None:
        return None
    shift = np.asarray(keras.ops.convert_to_numpy(head.shift.value), dtype="float64")
    return {
        "scale": float(keras.ops.convert_to_numpy(head.scale.value)),
        "shift": [float(value) for value in shift],
        "threshold": float(keras.ops.convert_to_numpy(head.threshold.value)),
    }


def decision_threshold(model: keras.Model) -> float | None:
    """The threshold a two-class model decides with; None for more classes or regression."""
    held = decision(model)
    if held is None or len(held["shift"]) != 1:
        return None
    return held["threshold"]


def logits_model(model: keras.Model) -> keras.Model:
    """A classifier cut before its head: the same inputs, its logits as output."""
    return keras.Model(model.inputs, model.get_layer(LOGITS).output, name="logits")
