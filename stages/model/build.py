"""The network: a multilayer perceptron with its input transformations built in.

Pure builders, no file access. Model code uses backend-agnostic Keras 3 only (no tf.* ops),
so the same model runs on TensorFlow (the default) or JAX. Everything the model learns
from data besides its weights (scaling statistics, bin edges, vocabularies) is computed
from train rows only and saved inside the model; a classifier's calibration and decision
threshold, fitted on validation rows, live in its head (CalibratedHead).
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from stages.common.config import TrainParams
from stages.data.encoding import EncodingSpec, embedded_vocabularies
from stages.model.ensemble import (
    MEMBERS,
    EnsembleAccuracy,
    EnsembleMean,
    EnsembleView,
    MemberDense,
    MemberLoss,
    on_ensemble_mean,
)
from stages.model.head import HEAD, LOGITS, CalibratedHead
from stages.model.layers import (
    CategoryEmbedding,
    ColumnLinear,
    PeriodicEmbedding,
    PiecewiseLinearEncoding,
    SmoothClip,
    embedding_width,
)
from stages.model.statistics import bin_edges, scaling_statistics

# The classifier's last two layers: its logits and the calibrated head.


def model_vocabularies(model: keras.Model) -> dict[str, list[str]]:
    """The learned vocabulary of each embedded category the model holds (none: {})."""
    for layer in model.layers:
        if isinstance(layer, CategoryEmbedding):
            return dict(zip(layer.names, layer.vocabularies, strict=True))
    return {}


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
    x = _numeric_inputs(
        inputs,
        mean=mean,
        variance=variance,
        bins=bins,
        bin_dim=bin_dim,
        periodic=periodic,
        smooth_clip=smooth_clip,
    )
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
    tabm = architecture == "tabm"
    if tabm:
        x = EnsembleView(members, seed=seed, flat=True, name="ensemble_view")(x)
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
    outputs = _head(
        x, n_classes=n_classes, members=members if tabm else 0, target_scale=target_scale
    )
    return keras.Model(
        model_inputs if len(model_inputs) > 1 else inputs, outputs, name=architecture
    )


def _numeric_inputs(
    inputs,
    *,
    mean: np.ndarray,
    variance: np.ndarray,
    bins: tuple[list[int], list[list[float]]] | None,
    bin_dim: int,
    periodic: tuple[list[int], int, int, float] | None,
    smooth_clip: list[int] | None,
):
    """The scaled columns, smoothly clipped, with their bins and PLR embeddings joined."""
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
    return x


def _head(x, *, n_classes: int, members: int, target_scale: tuple[float, float] | None):
    """Each member's output layer (one per TabM member, `members` > 0; else one Dense),
    the MEMBERS layer, and their mean: rescaled values, or logits through CalibratedHead."""
    units = 1 if n_classes in (0, 2) else n_classes
    if members:
        x = MemberDense(units, members=members, name="member_outputs", dtype="float32")(x)
    else:
        x = keras.layers.Dense(units, name="member_outputs", dtype="float32")(x)
        x = keras.layers.Reshape((1, units), name="one_member", dtype="float32")(x)
    if n_classes == 0:
        mean_target, std_target = target_scale or (0.0, 1.0)
        x = keras.layers.Rescaling(
            scale=std_target, offset=mean_target, name=MEMBERS, dtype="float32"
        )(x)
        return EnsembleMean("regression", name="prediction", dtype="float32")(x)
    x = keras.layers.Identity(name=MEMBERS, dtype="float32")(x)
    logits = EnsembleMean("classification", name=LOGITS, dtype="float32")(x)
    return CalibratedHead(name=HEAD, dtype="float32")(logits)


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
            on_ensemble_mean(keras.metrics.MeanAbsoluteError)(name="mae"),
            on_ensemble_mean(keras.metrics.RootMeanSquaredError)(name="rmse"),
            on_ensemble_mean(keras.metrics.R2Score)(name="r2"),
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
    rows: int | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The model for these train rows, and its compiled training model (same weights):
    its scaling statistics and bin edges are fitted on them (and on nothing else), its
    layers and optimizer come from params. The numeric columns get PLR embeddings on a
    large enough table, else piecewise-linear bins: with the embeddings the bins add work
    but no accuracy (Adult, 5 seeds: 0.8706 without them, 0.8708 with). `rows`: the train
    rows in all, when `train` is a sample of them."""
    features = train[spec.table_columns]
    robust = params.scaling == "robust"
    mean, variance = scaling_statistics(features, spec=spec, robust=robust)
    numeric = [spec.feature_columns.index(name) for name in spec.indicators]
    periodic = None
    if params.periodic_frequencies > 0 and (rows or len(train)) >= params.periodic_min_rows:
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
        vocabularies=embedded_vocabularies(
            train, spec, max_size=params.max_vocabulary, min_count=params.min_category_rows
        ),
        max_embedding_dim=params.embedding_dim,
        architecture=params.model,
        members=params.members,
        periodic=periodic,
        seed=seed,
        bin_dim=params.bin_embedding_dim,
        smooth_clip=numeric if robust else None,
    )
    trainer = training_model(model)
    _compile_from_params(
        trainer,
        params,
        n_classes=n_classes,
        target_std=target_scale[1] if target_scale else 1.0,
        steps_per_epoch=steps_per_epoch,
    )
    return model, trainer


def _compile_from_params(
    trainer: keras.Model,
    params: TrainParams,
    *,
    n_classes: int,
    target_std: float,
    steps_per_epoch: int,
) -> None:
    compile_model(
        trainer,
        n_classes=n_classes,
        optimizer=params.optimizer,
        learning_rate=params.learning_rate,
        regression_loss=params.regression_loss,
        target_std=target_std,
        steps_per_execution=params.steps_per_execution,
        weight_decay=params.weight_decay,
        clip_norm=params.clip_norm,
        decay_steps=params.epochs * steps_per_epoch if params.schedule == "cosine" else 0,
    )
