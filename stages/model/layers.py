"""Input layers of the network: piecewise-linear and periodic embeddings of numbers,
category embeddings, per-column linear maps and smooth clipping. No file access.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


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
