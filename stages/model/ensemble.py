"""TabM's parameter-efficient ensemble: the member view, per-member dense layers, the
mean over members, and the per-member loss and accuracy that train every member.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="stages")
class EnsembleView(keras.layers.Layer):
    """TabM-mini's only per-member weights: k copies of the input row, each multiplied
    elementwise by its own learned scaling, initialised to random signs (Gorishniy et al.,
    2024, "TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling").
    (rows, width) -> (rows, k, width); with `flat`, (rows * k, width), member rows side by
    side, which the shared layers after it take as plain rows (one matrix product per
    layer, where a (rows, k, width) input is a product per row on the numpy backend)."""

    def __init__(self, k: int, seed: int | None = None, flat: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k = int(k)
        self.seed = seed
        self.flat = bool(flat)

    def build(self, input_shape) -> None:
        width = int(input_shape[-1])
        signs = np.where(np.random.default_rng(self.seed).random((self.k, width)) < 0.5, -1, 1)
        self.scaling = self.add_weight(
            name="scaling",
            shape=(self.k, width),
            initializer=keras.initializers.Constant(signs.astype("float32")),
        )
        super().build(input_shape)

    def call(self, inputs):
        members = inputs[:, None, :] * ops.cast(self.scaling, inputs.dtype)
        return ops.reshape(members, (-1, inputs.shape[-1])) if self.flat else members

    def compute_output_shape(self, input_shape):
        if self.flat:
            rows = None if input_shape[0] is None else input_shape[0] * self.k
            return (rows, input_shape[-1])
        return (input_shape[0], self.k, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k, "seed": self.seed, "flat": self.flat}


@keras.saving.register_keras_serializable(package="stages")
class MemberDense(keras.layers.Layer):
    """k separate linear layers, member i on its own copy: (rows, k, d) -> (rows, k, units);
    TabM's output heads (LinearEnsemble), initialised uniform in +-1/sqrt(d). With
    `members` k, the input is EnsembleView's flat (rows * k, d)."""

    def __init__(self, units: int, members: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.members = None if members is None else int(members)

    def build(self, input_shape) -> None:
        k = self.members or int(input_shape[1])
        width = int(input_shape[-1])
        bound = width**-0.5
        uniform = keras.initializers.RandomUniform(-bound, bound)
        self.kernel = self.add_weight(
            name="kernel", shape=(k, width, self.units), initializer=uniform
        )
        self.bias = self.add_weight(name="bias", shape=(k, self.units), initializer=uniform)
        super().build(input_shape)

    def call(self, inputs):
        k, width = self.kernel.shape[0], self.kernel.shape[1]
        by_member = ops.transpose(ops.reshape(inputs, (-1, k, width)), (1, 0, 2))
        outputs = ops.matmul(by_member, ops.cast(self.kernel, inputs.dtype))  # (k, rows, units)
        return ops.transpose(outputs, (1, 0, 2)) + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        if self.members:
            rows = None if input_shape[0] is None else input_shape[0] // self.members
            return (rows, self.members, self.units)
        return (input_shape[0], input_shape[1], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "members": self.members}


@keras.saving.register_keras_serializable(package="stages")
class EnsembleMean(keras.layers.Layer):
    """The ensemble's prediction from its members' outputs (rows, k, units): the mean of
    their probabilities, given as logits (sigmoid or softmax of which is that mean, so a
    head calibrates it as any logits), or for regression the mean of their values. One
    member passes through unchanged."""

    def __init__(self, task: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.task = task

    def call(self, members):
        members = ops.cast(members, "float32")
        if members.shape[1] == 1:
            return members[:, 0, :]
        if self.task == "regression":
            return ops.mean(members, axis=1)
        if members.shape[-1] == 1:  # logit of the mean probability, computed stably
            positive = ops.logsumexp(ops.log_sigmoid(members), axis=1)
            return positive - ops.logsumexp(ops.log_sigmoid(-members), axis=1)
        return ops.logsumexp(ops.log_softmax(members, axis=-1), axis=1) - np.log(members.shape[1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        return {**super().get_config(), "task": self.task}


# The training model's output: every member's logits (or values), before EnsembleMean.
MEMBERS = "members"


class MemberLoss(keras.losses.Loss):
    """The mean over the k members of each member's own loss (TabM trains every member
    on its own predictions, not on their mean): binary or categorical cross-entropy from
    logits, or for regression squared error or Huber. y_pred: (rows, k, units)."""

    def __init__(self, kind: str, delta: float = 1.0, **kwargs) -> None:
        super().__init__(name=f"{kind}_per_member", **kwargs)
        self.kind, self.delta = kind, float(delta)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        k = y_pred.shape[1]
        if self.kind == "categorical":
            labels = ops.cast(ops.reshape(y_true, (-1, 1)), "int32") + ops.zeros((1, k), "int32")
            losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
            return ops.mean(losses, axis=1)
        target = ops.cast(ops.reshape(y_true, (-1, 1)), "float32")
        values = y_pred[:, :, 0]
        if self.kind == "binary":
            losses = ops.binary_crossentropy(
                target + ops.zeros_like(values), values, from_logits=True
            )
        elif self.kind == "huber":
            error = ops.abs(values - target)
            quadratic = ops.minimum(error, self.delta)
            losses = 0.5 * quadratic**2 + self.delta * (error - quadratic)
        else:
            losses = ops.square(values - target)
        return ops.mean(losses, axis=1)


def _ensemble_prediction(y_pred, kind: str):
    """The ensemble's prediction from (rows, k, units) member outputs: mean probabilities
    (rows, classes) for a classifier, mean values (rows, 1) for a regressor."""
    y_pred = ops.cast(y_pred, "float32")
    if kind == "binary":
        return ops.mean(ops.sigmoid(y_pred), axis=1)
    if kind == "categorical":
        return ops.mean(ops.softmax(y_pred, axis=-1), axis=1)
    return ops.mean(y_pred, axis=1)


class EnsembleAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy of the ensemble's mean probabilities."""

    def __init__(self, kind: str, name: str = "accuracy", **kwargs) -> None:
        def correct(y_true, y_pred):
            proba = _ensemble_prediction(y_pred, kind)
            truth = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            if kind == "binary":
                decided = ops.cast(proba[:, 0] > 0.5, "int32")
            else:
                decided = ops.cast(ops.argmax(proba, axis=-1), "int32")
            return ops.cast(ops.equal(decided, truth), "float32")

        super().__init__(correct, name=name, **kwargs)


def on_ensemble_mean(metric_class):
    """A regression metric computed on the mean of the members' values."""

    class OnMean(metric_class):
        def update_state(self, y_true, y_pred, sample_weight=None):
            prediction = _ensemble_prediction(y_pred, "regression")
            target = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
            return super().update_state(target, prediction, sample_weight=sample_weight)

    OnMean.__name__ = f"Ensemble{metric_class.__name__}"
    return OnMean
