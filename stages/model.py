"""The network: a multilayer perceptron with its input transformations built in.

Pure builders, no file access. Model code uses backend-agnostic Keras 3 only (no tf.* ops),
so the same model runs on TensorFlow (the default) or JAX. Everything the model learns
from data besides its weights (scaling statistics, bin edges, vocabularies) is computed
from train rows only and saved inside the model; a classifier's calibration and decision
threshold, fitted on validation rows, live in its head (CalibratedHead).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
from keras import ops
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from stages.config import TrainParams
from stages.encoding import EncodingSpec, learn_vocabulary, value_column
from stages.errors import PipelineError
from stages.io import atomic_path

# A bin holds at least this share of the train rows, so edges do not chase noise.
MIN_BIN_SHARE = 0.0025


def _present_values(features: pd.DataFrame, indicator: str | None) -> np.ndarray:
    """Mask of the rows where a numeric column is not missing, from its indicator."""
    if indicator is not None and indicator in features.columns:
        return features[indicator].to_numpy() == 0
    return np.ones(len(features), dtype=bool)


def scaling_statistics(
    features: pd.DataFrame, *, spec: EncodingSpec, robust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance for the model's Normalization layer.

    Computed from the rows given (the train split only). Numeric columns are scaled over
    their non-missing rows; indicator and one-hot columns pass through unchanged (mean 0,
    variance 1), so a category unseen in train cannot blow up at prediction time.

    `robust` gives RealMLP's robust scaling instead (Holzmueller et al., 2024): centre
    the median, divide by the interquartile range, or where that is 0 by half the range.
    """
    mean = np.zeros(len(spec.feature_columns), dtype="float64")
    variance = np.ones(len(spec.feature_columns), dtype="float64")
    position = {name: index for index, name in enumerate(spec.feature_columns)}
    for name, indicator in spec.indicators.items():
        values = features[name].to_numpy(dtype="float64")
        values = values[_present_values(features, indicator)]
        if not values.size:
            continue
        index = position[name]
        if robust:
            low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
            spread = high - low if high > low else (values.max() - values.min()) / 2
            mean[index], variance[index] = median, spread**2 if spread > 0 else 1.0
        else:
            mean[index] = values.mean()
            spread = values.var()
            variance[index] = spread if spread > 0 else 1.0
    return mean, variance


def bin_edges(
    features: pd.DataFrame, labels: np.ndarray, *, spec: EncodingSpec, max_bins: int, seed: int
) -> tuple[list[int], list[list[float]]]:
    """Target-aware bin edges per numeric column, for piecewise-linear encoding.

    For each numeric column, a decision tree (a regression tree for a numeric target) of at
    most `max_bins` leaves fitted on that column alone (train rows only) places the edges
    where the label changes most; the
    column's train minimum and maximum close the outer bins. Returns the position of each
    numeric column among the encoded columns and its sorted edges.
    """
    indices, edges = [], []
    tree_type = DecisionTreeRegressor if spec.task == "regression" else DecisionTreeClassifier
    min_rows = max(1, round(MIN_BIN_SHARE * len(features)))
    indicators = spec.indicators
    for index, name in enumerate(spec.feature_columns):
        if name not in indicators:  # an indicator or a one-hot column: not binned
            continue
        present = _present_values(features, indicators[name])
        values = features[name].to_numpy(dtype="float64")[present]
        if values.size == 0:
            continue
        tree = tree_type(
            max_leaf_nodes=max(max_bins, 2), min_samples_leaf=min_rows, random_state=seed
        ).fit(values[:, None], np.ravel(labels)[present])
        thresholds = tree.tree_.threshold[tree.tree_.feature >= 0]
        column_edges = np.unique(np.concatenate([[values.min(), values.max()], thresholds]))
        if column_edges.size < 2:  # a constant column: one bin of width 1
            column_edges = np.array([column_edges[0], column_edges[0] + 1.0])
        indices.append(index)
        edges.append([float(edge) for edge in column_edges])
    return indices, edges


@keras.saving.register_keras_serializable(package="stages")
class PiecewiseLinearEncoding(keras.layers.Layer):
    """Encodes each chosen input column as one value in [0, 1] per bin between its edges.

    Bin t of a column reads 0 below its left edge, 1 above its right edge and rises
    linearly in between (Gorishniy et al., 2022, "On Embeddings for Numerical Features in
    Tabular Deep Learning"). Columns with fewer edges have their spare bins fixed at 0.
    """

    def __init__(self, indices: list[int], edges: list[list[float]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.indices = [int(index) for index in indices]
        self.edges = [[float(edge) for edge in column] for column in edges]
        bins = max(len(column) for column in self.edges) - 1
        left = np.zeros((len(self.edges), bins), dtype="float32")
        width = np.ones((len(self.edges), bins), dtype="float32")
        mask = np.zeros((len(self.edges), bins), dtype="float32")
        for row, column in enumerate(self.edges):
            count = len(column) - 1
            left[row, :count] = column[:-1]
            width[row, :count] = np.maximum(np.diff(column), 1e-12)
            mask[row, :count] = 1.0
        self._left, self._width, self._mask = left, width, mask
        self.bins = bins

    def call(self, inputs):
        values = ops.take(inputs, self.indices, axis=1)[:, :, None]
        ramps = ops.clip((values - self._left) / self._width, 0.0, 1.0) * self._mask
        return ops.reshape(ramps, (-1, len(self.indices) * self.bins))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.indices) * self.bins)

    def get_config(self) -> dict:
        return {**super().get_config(), "indices": self.indices, "edges": self.edges}


@keras.saving.register_keras_serializable(package="stages")
class SmoothClip(keras.layers.Layer):
    """RealMLP's smooth clipping of the chosen (scaled) columns: x / sqrt(1 + (x / 3)^2),
    about x near 0 and never beyond +-3; the other columns pass unchanged."""

    def __init__(self, indices: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.indices = [int(index) for index in indices]

    def build(self, input_shape) -> None:
        mask = np.zeros(int(input_shape[-1]), dtype="float32")
        mask[self.indices] = 1.0 / 3.0
        self._mask = mask
        super().build(input_shape)

    def call(self, inputs):
        return inputs / ops.sqrt(1.0 + ops.square(inputs * self._mask))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "indices": self.indices}


def _per_column_linear_relu(by_column, kernel, bias):
    """Inputs laid out column-major, (columns, rows, width), through each column's own
    linear layer (kernel (columns, width, dim), bias (columns, dim)) and ReLU, as
    (rows, columns * dim). One batched matrix product: an einsum is a slow loop on the
    numpy backend."""
    embedded = ops.relu(ops.matmul(by_column, kernel) + bias[:, None, :])
    columns, dim = kernel.shape[0], kernel.shape[2]
    return ops.reshape(ops.transpose(embedded, (1, 0, 2)), (-1, columns * dim))


@keras.saving.register_keras_serializable(package="stages")
class ColumnLinear(keras.layers.Layer):
    """A linear layer and ReLU per column group: (rows, columns * width) -> (rows, columns
    * dim), column c's `width` inputs feeding only its own `dim` outputs. On the
    piecewise-linear bins this is the published MLP-T-LR's embedding (Gorishniy et al.,
    2022): each number gets a learned shape of its own before the shared layers."""

    def __init__(self, columns: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.columns, self.dim = int(columns), int(dim)

    def build(self, input_shape) -> None:
        width = int(input_shape[-1]) // self.columns
        bound = width**-0.5
        uniform = keras.initializers.RandomUniform(-bound, bound)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.columns, width, self.dim), initializer=uniform
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.columns, self.dim), initializer=uniform
        )
        super().build(input_shape)

    def call(self, inputs):
        width = self.kernel.shape[1]
        by_column = ops.transpose(ops.reshape(inputs, (-1, self.columns, width)), (1, 0, 2))
        return _per_column_linear_relu(by_column, self.kernel, self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.columns * self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "columns": self.columns, "dim": self.dim}


def embedding_width(vocabulary_size: int, *, max_dim: int) -> int:
    """Width of a category's embedding: grows with its vocabulary (about 1.6 n^0.56, the
    rule of thumb of fast.ai's tabular models), at most `max_dim`."""
    return int(max(2, min(max_dim, round(1.6 * (vocabulary_size + 1) ** 0.56))))


@keras.saving.register_keras_serializable(package="stages")
class CategoryEmbedding(keras.layers.Layer):
    """Embeds high-cardinality categories, given as int codes (0: out of vocabulary).

    It holds each column's vocabulary, learned from train rows, in its config, so the
    saved model carries everything needed to turn raw text into codes (see
    `model_vocabularies`)."""

    def __init__(
        self, names: list[str], vocabularies: list[list[str]], dims: list[int], **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.names = [str(name) for name in names]
        self.vocabularies = [[str(value) for value in values] for values in vocabularies]
        self.dims = [int(dim) for dim in dims]
        self.tables = [
            keras.layers.Embedding(len(values) + 1, dim, name=f"embedding_{index}")
            for index, (values, dim) in enumerate(zip(self.vocabularies, self.dims, strict=True))
        ]

    def build(self, input_shape) -> None:
        for table in self.tables:
            table.build((input_shape[0],))
        super().build(input_shape)

    def call(self, codes):
        codes = ops.cast(codes, "int32")
        parts = [table(codes[:, index]) for index, table in enumerate(self.tables)]
        return ops.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.dims))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "names": self.names,
            "vocabularies": self.vocabularies,
            "dims": self.dims,
        }


@keras.saving.register_keras_serializable(package="stages")
class PeriodicEmbedding(keras.layers.Layer):
    """PLR embeddings of the chosen (scaled) numeric columns: each value x becomes
    ReLU(Linear([cos(2 pi f x), sin(2 pi f x)])) with frequencies f learned per column,
    initialised from N(0, scale^2), and a linear layer per column (Gorishniy et al., 2022,
    "On Embeddings for Numerical Features in Tabular Deep Learning"; the published
    rtdl_num_embeddings.PeriodicEmbeddings, lite=False)."""

    def __init__(
        self, indices: list[int], frequencies: int, dim: int, scale: float, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.indices = [int(index) for index in indices]
        self.frequencies, self.dim, self.scale = int(frequencies), int(dim), float(scale)

    def build(self, input_shape) -> None:
        n, width = len(self.indices), 2 * self.frequencies
        self.frequency = self.add_weight(
            name="frequency",
            shape=(n, self.frequencies),
            initializer=keras.initializers.TruncatedNormal(stddev=self.scale),
        )
        bound = width**-0.5
        uniform = keras.initializers.RandomUniform(-bound, bound)
        self.kernel = self.add_weight(
            name="kernel", shape=(n, width, self.dim), initializer=uniform
        )
        self.bias = self.add_weight(name="bias", shape=(n, self.dim), initializer=uniform)
        super().build(input_shape)

    def call(self, inputs):
        values = ops.transpose(ops.take(inputs, self.indices, axis=1))[:, :, None]
        angles = 2.0 * np.pi * self.frequency[:, None, :] * values  # (columns, rows, k)
        periodic = ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)
        return _per_column_linear_relu(periodic, self.kernel, self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.indices) * self.dim)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "indices": self.indices,
            "frequencies": self.frequencies,
            "dim": self.dim,
            "scale": self.scale,
        }


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


@keras.saving.register_keras_serializable(package="stages")
class CalibratedHead(keras.layers.Layer):
    """Logits to class probabilities: sigmoid (one logit, two classes) or softmax of
    `scale * logits + shift`. It also holds a two-class model's decision threshold.

    Scale 1, shift 0 and threshold 0.5 while training (the loss sees the logits as they
    are); train then sets them from the validation split (stages/calibration.py). They are
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


# The classifier's last two layers: its logits and the calibrated head.
LOGITS, HEAD = "logits", "probability"


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


def model_vocabularies(model: keras.Model) -> dict[str, list[str]]:
    """The learned vocabulary of each embedded category the model holds (none: {})."""
    for layer in model.layers:
        if isinstance(layer, CategoryEmbedding):
            return dict(zip(layer.names, layer.vocabularies, strict=True))
    return {}


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


def _on_ensemble_mean(metric_class):
    """A regression metric computed on the mean of the members' values."""

    class OnMean(metric_class):
        def update_state(self, y_true, y_pred, sample_weight=None):
            prediction = _ensemble_prediction(y_pred, "regression")
            target = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
            return super().update_state(target, prediction, sample_weight=sample_weight)

    OnMean.__name__ = f"Ensemble{metric_class.__name__}"
    return OnMean


def training_model(model: keras.Model) -> keras.Model:
    """The model that is fitted: the same layers and weights as `model`, with the members'
    outputs as its output, so each member's loss is its own."""
    return keras.Model(model.inputs, model.get_layer(MEMBERS).output, name="members")


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
    bins: tuple[list[int], list[list[float]]] | None = None,
    target_scale: tuple[float, float] | None = None,
    vocabularies: dict[str, list[str]] | None = None,
    max_embedding_dim: int = 16,
    architecture: str = "mlp",
    members: int = 1,
    periodic: tuple[list[int], int, int, float] | None = None,
    seed: int | None = None,
    bin_dim: int = 0,
    smooth_clip: list[int] | None = None,
) -> keras.Model:
    """An MLP: scaled inputs (plus piecewise-linear bins of the numeric columns, when
    `bins` gives their edges; with `bin_dim`, each column's bins through a linear layer and
    ReLU of its own this wide, ColumnLinear; with `smooth_clip`, those scaled columns
    smoothly clipped, SmoothClip), then Dense (+ Dropout) blocks, then a head: sigmoid or
    softmax for classes; for regression (`n_classes` 0), one linear unit rescaled by
    `target_scale` = (mean, standard deviation) of the train targets, so the network
    works at unit scale and predicts in the target's own units. With `vocabularies`
    (embedded categories, in the spec's order) the model takes a second input, their int
    codes, embedded and joined to the scaled numbers.

    With `periodic` = (column positions, frequencies, width, scale) the numeric columns are
    also given PLR embeddings (PeriodicEmbedding). `architecture` "tabm" makes the network
    a TabM-mini ensemble of `members` MLPs sharing every hidden layer (EnsembleView, one
    output layer each); "mlp" is one MLP. Either way the layer named MEMBERS gives each
    member's outputs (rows, members, units), which training fits (`training_model`), and
    EnsembleMean turns them into the model's logits or values.

    The input transformations and the head compute in float32 even under mixed precision
    (raw values such as 1e6 overflow float16).
    """
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="scaling", dtype="float32")(
        inputs
    )
    if smooth_clip:
        x = SmoothClip(smooth_clip, name="smooth_clip", dtype="float32")(x)
    if bins is not None and bins[0]:
        encoded = PiecewiseLinearEncoding(*bins, name="numeric_bins", dtype="float32")(inputs)
        if bin_dim > 0:
            encoded = ColumnLinear(len(bins[0]), bin_dim, name="bin_embeddings")(encoded)
        x = keras.layers.Concatenate(name="inputs_and_bins", dtype="float32")([x, encoded])
    if periodic is not None and periodic[0]:
        embedded = PeriodicEmbedding(*periodic, name="numeric_periodic", dtype="float32")(x)
        x = keras.layers.Concatenate(name="inputs_and_periodic", dtype="float32")([x, embedded])
    model_inputs = [inputs]
    if vocabularies:
        codes = keras.Input(shape=(len(vocabularies),), dtype="int32", name="categories")
        embedded = CategoryEmbedding(
            list(vocabularies),
            list(vocabularies.values()),
            [embedding_width(len(v), max_dim=max_embedding_dim) for v in vocabularies.values()],
            name="category_embeddings",
        )(codes)
        x = keras.layers.Concatenate(name="numbers_and_embeddings")([x, embedded])
        model_inputs.append(codes)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    tabm = architecture == "tabm"
    if tabm:
        x = EnsembleView(members, seed=seed, flat=True, name="ensemble_view")(x)
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
    units = 1 if n_classes in (0, 2) else n_classes
    if tabm:
        x = MemberDense(units, members=members, name="member_outputs", dtype="float32")(x)
    else:
        x = keras.layers.Dense(units, name="member_outputs", dtype="float32")(x)
        x = keras.layers.Reshape((1, units), name="one_member", dtype="float32")(x)
    if n_classes == 0:
        mean_target, std_target = target_scale or (0.0, 1.0)
        x = keras.layers.Rescaling(
            scale=std_target, offset=mean_target, name=MEMBERS, dtype="float32"
        )(x)
        outputs = EnsembleMean("regression", name="prediction", dtype="float32")(x)
    else:
        x = keras.layers.Identity(name=MEMBERS, dtype="float32")(x)
        logits = EnsembleMean("classification", name=LOGITS, dtype="float32")(x)
        outputs = CalibratedHead(name=HEAD, dtype="float32")(logits)
    return keras.Model(
        model_inputs if len(model_inputs) > 1 else inputs, outputs, name=architecture
    )


def compile_model(
    model: keras.Model,
    *,
    n_classes: int,
    optimizer: str,
    learning_rate: float,
    regression_loss: str = "mse",
    target_std: float = 1.0,
    steps_per_execution: int = 1,
    weight_decay: float = 0.0,
    clip_norm: float = 0.0,
    decay_steps: int = 0,
) -> None:
    """Attach the optimizer, the per-member loss that fits the task and metrics of the
    members' mean (accuracy for classes; MAE, RMSE and R2 for regression, `n_classes` 0)
    to a training model (`training_model`). With `decay_steps`, the learning rate follows
    a cosine from `learning_rate` down to 0 over that many steps."""
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    if n_classes == 0:
        kind = "huber" if regression_loss == "huber" else "mse"
        metrics = [
            _on_ensemble_mean(keras.metrics.MeanAbsoluteError)(name="mae"),
            _on_ensemble_mean(keras.metrics.RootMeanSquaredError)(name="rmse"),
            _on_ensemble_mean(keras.metrics.R2Score)(name="r2"),
        ]
    else:
        kind = "binary" if n_classes == 2 else "categorical"
        metrics = [EnsembleAccuracy(kind)]
    rate = learning_rate
    if decay_steps > 0:
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    options = {"clipnorm": clip_norm} if clip_norm > 0 else {}
    if weight_decay > 0:
        options["weight_decay"] = weight_decay
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=rate, **options),
        loss=MemberLoss(kind, delta=target_std),
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )


def make_model(
    train: pd.DataFrame,
    labels: np.ndarray,
    *,
    spec: EncodingSpec,
    params: TrainParams,
    seed: int,
    steps_per_epoch: int = 1,
) -> tuple[keras.Model, keras.Model]:
    """The model for these train rows, and its compiled training model (same weights):
    its scaling statistics and bin edges are fitted on them (and on nothing else), its
    layers and optimizer come from params. The numeric columns get PLR embeddings on a
    large enough table, else piecewise-linear bins: with the embeddings the bins add work
    but no accuracy (Adult, 5 seeds: 0.8706 without them, 0.8708 with)."""
    features = train[spec.table_columns]
    robust = params.scaling == "robust"
    mean, variance = scaling_statistics(features, spec=spec, robust=robust)
    numeric = [spec.feature_columns.index(name) for name in spec.indicators]
    periodic = None
    if params.periodic_frequencies > 0 and len(train) >= params.periodic_min_rows:
        periodic = (
            numeric,
            params.periodic_frequencies,
            params.periodic_dim,
            params.periodic_scale,
        )
    bins = None
    if params.numeric_bins > 0 and periodic is None:
        bins = bin_edges(features, labels, spec=spec, max_bins=params.numeric_bins, seed=seed)
    n_classes = len(spec.classes)  # 0 for regression
    vocabularies = {
        feature.name: learn_vocabulary(
            train[value_column(feature.name)],
            max_size=params.max_vocabulary,
            min_count=params.min_category_rows,
        )
        for feature in spec.embedded
    }
    target_scale = None
    if n_classes == 0:
        spread = float(np.std(labels))
        target_scale = (float(np.mean(labels)), spread if spread > 0 else 1.0)
    model = build_model(
        n_features=len(spec.feature_columns),
        n_classes=n_classes,
        mean=mean,
        variance=variance,
        hidden_units=params.hidden_units,
        activation=params.activation,
        dropout=params.dropout,
        l2=params.l2,
        initializer=params.initializer,
        bins=bins,
        target_scale=target_scale,
        vocabularies=vocabularies,
        max_embedding_dim=params.embedding_dim,
        architecture=params.model,
        members=params.members,
        periodic=periodic,
        seed=seed,
        bin_dim=params.bin_embedding_dim,
        smooth_clip=numeric if robust else None,
    )
    trainer = training_model(model)
    compile_model(
        trainer,
        n_classes=n_classes,
        optimizer=params.optimizer,
        learning_rate=params.learning_rate,
        regression_loss=params.regression_loss,
        target_std=target_scale[1] if target_scale else 1.0,
        steps_per_execution=params.steps_per_execution,
        weight_decay=params.weight_decay,
        clip_norm=params.clip_norm,
        decay_steps=params.epochs * steps_per_epoch if params.schedule == "cosine" else 0,
    )
    return model, trainer


# Most rows per call into the model when predicting. Small enough that an ensemble's
# intermediate arrays stay near the CPU's caches: on 2 cores, Adult's network scored
# faster in calls of 8,192 rows than of 4,096, 16,384 or 32,768.
PREDICT_CHUNK_ROWS = 8_192


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _outputs(model: keras.Model, features) -> np.ndarray:
    """The model's outputs for inputs as it takes them (an array, a tuple of arrays, or a
    dict of them by input name), one call per chunk of rows.

    On the numpy backend the chunks run on every core at once, each matrix product on a
    single thread: the backend's other operations (copies, activations, cos and sin) use
    one core, so threads over chunks keep both busy (Adult's network on 2 cores: 150,000
    to 160,000 rows/s, against 92,000 to 99,000 one chunk at a time). Each row's result is
    the same either way."""
    if isinstance(features, dict):
        rows = len(next(iter(features.values())))
        take = lambda a, b: {name: part[a:b] for name, part in features.items()}  # noqa: E731
    elif isinstance(features, tuple | list):
        rows = len(features[0])
        take = lambda a, b: tuple(part[a:b] for part in features)  # noqa: E731
    else:
        rows = len(features)
        take = lambda a, b: features[a:b]  # noqa: E731
    workers = usable_cpus() if keras.backend.backend() == "numpy" else 1
    # As many chunks as the rows need, rounded up to a multiple of the workers, all of
    # one size: no worker is left with the last, lone chunk.
    count = -(-rows // PREDICT_CHUNK_ROWS)
    count = max(1, -(-count // workers) * workers)
    size = max(1, -(-rows // count))
    starts = range(0, rows, size)

    def call(start: int) -> np.ndarray:
        return np.asarray(model.predict_on_batch(take(start, start + size)))

    workers = min(workers, len(starts))
    if workers < 2:
        chunks = [call(start) for start in starts]
    else:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            chunks = list(pool.map(call, starts))
    return np.concatenate(chunks).astype("float64")


def predict_proba(model: keras.Model, features) -> np.ndarray:
    """Class probabilities, shape (rows, classes), whatever the head."""
    raw = _outputs(model, features)
    if raw.shape[1] == 1:
        return np.hstack([1.0 - raw, raw])
    return raw


def predict_values(model: keras.Model, features) -> np.ndarray:
    """A regression model's predictions, shape (rows,), in the target's units."""
    return _outputs(model, features).reshape(-1)


def predict_logits(model: keras.Model, features) -> np.ndarray:
    """A classifier's logits, before its calibrated head."""
    return _outputs(logits_model(model), features)


def class_probabilities(model: keras.Model, features) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's calibrated and uncalibrated class probabilities (rows x classes),
    from one pass of the network: its head's calibration applied to its logits in float64
    (equal to the head's own float32 output to rounding)."""
    from stages.calibration import probabilities

    logits = predict_logits(model, features)
    held = decision(model)
    calibrated = probabilities(logits, scale=held["scale"], shift=held["shift"])
    return calibrated, probabilities(logits)


def save_model(model: keras.Model, target: str | Path) -> None:
    """Save a .keras file atomically, and byte-for-byte the same for the same weights.

    Keras stamps the save time into the archive (metadata.json and an entry's date) and
    numbers shared objects by their memory address (config.json); all are made stable
    here, so DVC sees a retrained but identical model as unchanged and a fresh clone's
    `dvc repro` reproduces dvc.lock exactly.
    """
    with atomic_path(target, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as archive:
            entries = [(info, archive.read(info)) for info in archive.infolist()]
        with zipfile.ZipFile(tmp, "w") as archive:
            for info, data in entries:
                if info.filename == "metadata.json":
                    metadata = json.loads(data)
                    metadata.pop("date_saved", None)
                    data = json.dumps(metadata).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
                fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                fixed.compress_type = info.compress_type
                fixed.external_attr = info.external_attr
                archive.writestr(fixed, data)


def load_model(path: str | Path) -> keras.Model:
    """Load a model saved by `save_model`, in Keras safe mode (no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run the train stage first")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        reason = " ".join(str(exc).split())[:300]
        raise PipelineError(f"{path}: cannot load the model ({reason})") from None


def _renumber_shared_objects(node, numbers: dict[int, int]):
    """Replace each `shared_object_id` (a memory address) by its order of appearance."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node
