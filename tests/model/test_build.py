"""The model families' layers, losses and metrics against plain numpy arithmetic."""

import numpy as np
import pytest

from stages.model.build import build_model, training_model
from stages.model.ensemble import (
    EnsembleAccuracy,
    EnsembleMean,
    EnsembleView,
    MemberDense,
    MemberLoss,
)
from stages.model.files import load_model, save_model
from stages.model.inference import predict_logits, predict_proba, predict_values
from stages.model.layers import ColumnLinear, PeriodicEmbedding, SmoothClip

RNG = np.random.default_rng(0)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_of(tensor) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype="float64")


def test_the_ensemble_mean_is_the_mean_of_the_members_probabilities_as_logits():
    members = RNG.normal(scale=4.0, size=(6, 5, 1)).astype("float32")
    logits = numpy_of(EnsembleMean("classification")(members))
    np.testing.assert_allclose(sigmoid(logits), sigmoid(members).mean(axis=1), rtol=1e-5)

    members = RNG.normal(scale=3.0, size=(6, 5, 3)).astype("float32")
    logits = numpy_of(EnsembleMean("classification")(members))
    np.testing.assert_allclose(softmax(logits), softmax(members).mean(axis=1), rtol=1e-5)

    values = RNG.normal(size=(6, 5, 1)).astype("float32")
    np.testing.assert_allclose(
        numpy_of(EnsembleMean("regression")(values)), values.mean(axis=1), rtol=1e-6
    )
    one = values[:, :1, :]  # a single member passes through unchanged
    np.testing.assert_array_equal(numpy_of(EnsembleMean("classification")(one)), one[:, 0, :])


def test_each_member_is_trained_on_its_own_loss():
    y = np.array([0, 1, 1, 0], dtype="int32")
    members = RNG.normal(size=(4, 3, 1)).astype("float32")
    p = sigmoid(members[:, :, 0].astype("float64"))
    expected = -(y[:, None] * np.log(p) + (1 - y[:, None]) * np.log(1 - p)).mean()
    assert float(MemberLoss("binary")(y, members)) == pytest.approx(expected, rel=1e-5)

    y3 = np.array([0, 2, 1, 2], dtype="int32")
    members3 = RNG.normal(size=(4, 3, 3)).astype("float32")
    chosen = softmax(members3.astype("float64"))[np.arange(4), :, y3]
    assert float(MemberLoss("categorical")(y3, members3)) == pytest.approx(
        -np.log(chosen).mean(), rel=1e-5
    )

    target = RNG.normal(size=(4, 1)).astype("float32")
    values = RNG.normal(size=(4, 3, 1)).astype("float32")
    squared = ((values[:, :, 0] - target) ** 2).mean()
    assert float(MemberLoss("mse")(target, values)) == pytest.approx(squared, rel=1e-5)
    error = np.abs(values[:, :, 0] - target)
    huber = np.where(error <= 0.5, 0.5 * error**2, 0.5 * (0.5**2) + 0.5 * (error - 0.5))
    assert float(MemberLoss("huber", delta=0.5)(target, values)) == pytest.approx(
        huber.mean(), rel=1e-5
    )
    # The mean of the members' losses, not the loss of their mean prediction.
    assert float(MemberLoss("mse")(target, values)) > float(
        ((values[:, :, 0].mean(axis=1, keepdims=True) - target) ** 2).mean()
    )


def test_accuracy_is_that_of_the_members_mean_probability():
    members = np.array([[[3.0], [-1.0]], [[-3.0], [1.0]], [[0.5], [0.2]]], dtype="float32")
    y = np.array([1, 0, 0])
    metric = EnsembleAccuracy("binary")
    metric.update_state(y, members)
    # mean probabilities: 0.70, 0.30, 0.59 -> decisions 1, 0, 1
    assert float(metric.result()) == pytest.approx(2 / 3)


def test_periodic_embedding_is_relu_of_a_linear_map_of_cosines_and_sines():
    layer = PeriodicEmbedding([0, 2], frequencies=3, dim=4, scale=1.0)
    x = RNG.normal(size=(5, 3)).astype("float32")
    out = numpy_of(layer(x))
    assert out.shape == (5, 2 * 4)
    frequency, kernel, bias = (numpy_of(w) for w in (layer.frequency, layer.kernel, layer.bias))
    for position, column in enumerate([0, 2]):
        angles = 2 * np.pi * frequency[position] * x[:, column : column + 1]
        periodic = np.concatenate([np.cos(angles), np.sin(angles)], axis=1)
        expected = np.maximum(periodic @ kernel[position] + bias[position], 0.0)
        np.testing.assert_allclose(out[:, position * 4 : (position + 1) * 4], expected, atol=1e-5)


def test_column_linear_maps_each_columns_inputs_to_its_own_outputs():
    layer = ColumnLinear(columns=3, dim=2)
    x = RNG.normal(size=(5, 3 * 4)).astype("float32")
    out = numpy_of(layer(x))
    assert out.shape == (5, 3 * 2)
    kernel, bias = numpy_of(layer.kernel), numpy_of(layer.bias)
    for column in range(3):
        expected = np.maximum(
            x[:, column * 4 : (column + 1) * 4] @ kernel[column] + bias[column], 0
        )
        np.testing.assert_allclose(out[:, column * 2 : (column + 1) * 2], expected, atol=1e-5)


def test_smooth_clip_bounds_the_chosen_columns_and_leaves_the_others():
    x = np.array([[0.0, 100.0, -100.0], [1.0, 3.0, -0.5]], dtype="float32")
    out = numpy_of(SmoothClip([0, 2])(x))
    expected = x / np.sqrt(1 + (x / 3) ** 2)
    np.testing.assert_allclose(out[:, [0, 2]], expected[:, [0, 2]], rtol=1e-6)
    np.testing.assert_array_equal(out[:, 1], x[:, 1])
    assert np.abs(out[:, [0, 2]]).max() < 3


def test_flat_members_give_what_a_members_axis_gives():
    """New models pass TabM's members through the shared layers as rows; models saved
    with a members axis (rows, k, width) load and predict the same."""
    x = RNG.normal(size=(6, 3)).astype("float32")
    axis_view, axis_head = EnsembleView(4, seed=2), MemberDense(2)
    flat_view, flat_head = EnsembleView(4, seed=2, flat=True), MemberDense(2, members=4)
    on_axis, flat = axis_view(x), flat_view(x)
    assert tuple(on_axis.shape) == (6, 4, 3) and tuple(flat.shape) == (24, 3)
    on_axis = numpy_of(axis_head(on_axis))
    flat_head.build((None, 3))
    flat_head.set_weights(axis_head.get_weights())
    flat = numpy_of(flat_head(flat))
    assert flat.shape == (6, 4, 2)
    np.testing.assert_allclose(flat, on_axis, atol=1e-6)
    kernel, bias = axis_head.get_weights()
    scaling = numpy_of(axis_view.scaling)
    expected = np.einsum("bkd,kdu->bku", x[:, None, :] * scaling, kernel) + bias
    np.testing.assert_allclose(flat, expected, atol=1e-5)


def tabm(n_classes: int, **options):
    return build_model(
        n_features=3,
        n_classes=n_classes,
        mean=np.zeros(3),
        variance=np.ones(3),
        hidden_units=[8, 8],
        activation="relu",
        dropout=0.1,
        l2=0.0,
        initializer="he_normal",
        bins=([0, 1], [[-1.0, 0.0, 1.0], [-2.0, 2.0]]),
        periodic=([0, 1], 4, 3, 2.0),
        architecture="tabm",
        members=5,
        seed=1,
        **{"bin_dim": 2, "smooth_clip": [1], **options},
    )


@pytest.mark.parametrize("n_classes", [2, 3, 0])
def test_a_tabm_model_predicts_the_mean_of_its_members_and_survives_saving(n_classes, tmp_path):
    options = {"target_scale": (10.0, 2.0)} if n_classes == 0 else {}
    model = tabm(n_classes, **options)
    x = RNG.normal(size=(7, 3)).astype("float32")
    members = numpy_of(training_model(model)([x]))
    units = 1 if n_classes in (0, 2) else n_classes
    assert members.shape == (7, 5, units)
    if n_classes == 0:
        np.testing.assert_allclose(predict_values(model, x), members.mean(axis=1)[:, 0], rtol=1e-5)
    else:
        mean = sigmoid(members).mean(axis=1) if units == 1 else softmax(members).mean(axis=1)
        proba = predict_proba(model, x)
        np.testing.assert_allclose(proba[:, -units:], mean, rtol=1e-5, atol=1e-6)
    save_model(model, tmp_path / "tabm.keras")
    reloaded = load_model(tmp_path / "tabm.keras")
    for first, second in zip(model.get_weights(), reloaded.get_weights(), strict=True):
        np.testing.assert_array_equal(first, second)
    if n_classes:
        np.testing.assert_array_equal(predict_logits(reloaded, x), predict_logits(model, x))


def test_the_members_start_from_different_scalings_drawn_from_the_seed():
    first, second = tabm(2), tabm(2)
    scaling = numpy_of(first.get_layer("ensemble_view").scaling)
    assert set(np.unique(scaling)) == {-1.0, 1.0}
    assert len({tuple(row) for row in scaling}) > 1  # the members differ
    np.testing.assert_array_equal(scaling, numpy_of(second.get_layer("ensemble_view").scaling))


def test_a_saved_tabm_model_gives_the_same_probabilities_on_the_numpy_backend(tmp_path):
    """evaluate and predict load the network on Keras's numpy backend (no TensorFlow)."""
    import os
    import subprocess
    import sys

    model = tabm(3)
    x = RNG.normal(size=(9, 3)).astype("float32")
    save_model(model, tmp_path / "tabm.keras")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np\n"
        "import stages.model.inference\n"
        "from stages.model.files import load_model\n"
        "from stages.model.inference import predict_proba\n"
        "stages.model.inference.PREDICT_CHUNK_ROWS = 2  # several chunks, threaded\n"
        f"m = load_model({str(tmp_path / 'tabm.keras')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, predict_proba(m, x))\n"
        "import keras; assert keras.backend.backend() == 'numpy'\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), predict_proba(model, x), atol=1e-6)
