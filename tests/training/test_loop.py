import numpy as np
import pandas as pd
import pytest

from stages.common.config import TrainParams
from stages.data.encoding import EncodingSpec, FeatureSpec
from stages.data.splitting import split_frame
from stages.model.build import build_model
from stages.model.inference import predict_proba
from stages.model.statistics import scaling_statistics
from stages.training.callbacks import OverfittingMonitor, best_epoch, overfit_epochs
from stages.training.loop import train_model

from ..conftest import labelled_frame

DIVERGING = {
    "accuracy": [0.70, 0.78, 0.84, 0.90, 0.95],
    "val_accuracy": [0.69, 0.76, 0.79, 0.80, 0.79],
    "loss": [0.6, 0.5, 0.4, 0.3, 0.2],
    "val_loss": [0.61, 0.52, 0.47, 0.49, 0.55],
}
HEALTHY = {
    "accuracy": [0.70, 0.78, 0.82, 0.84, 0.85],
    "val_accuracy": [0.71, 0.78, 0.81, 0.83, 0.84],
    "loss": [0.6, 0.5, 0.45, 0.42, 0.40],
    "val_loss": [0.6, 0.5, 0.46, 0.43, 0.41],
}

SPEC = EncodingSpec(
    target="label",
    classes=["neg", "pos"],
    features=[
        FeatureSpec(name="x1", kind="numeric", nullable=True),
        FeatureSpec(name="x2", kind="numeric", nullable=False),
    ],
)


def tiny_params(**overrides) -> TrainParams:
    values = dict(
        hidden_units=[8], learning_rate=0.01, batch_size=32, epochs=2, patience=0, dropout=0.0
    )
    return TrainParams(**{**values, **overrides})


def prepared(rows: int) -> pd.DataFrame:
    """A prepared table as prepare writes it (names prefixed, `target` holding the class)."""
    frame = labelled_frame(rows)
    frame["x1__missing"] = np.float32(0)
    frame.loc[frame.index % 10 == 3, ["x1", "x1__missing"]] = [0.0, 1.0]
    return frame[["row_id", "x1", "x1__missing", "x2", "label"]].set_axis(
        ["row_id", "x:x1", "m:x1", "x:x2", "target"], axis=1
    )


def fit(splits, live_dir, *, seed: int, **params):
    """train_model on the splits' train and validation rows with tiny params."""
    return train_model(
        train=splits["train"],
        validation=splits["validation"],
        spec=SPEC,
        params=tiny_params(**params),
        seed=seed,
        live_dir=live_dir,
    )


def test_overfitting_monitor_flags_a_diverging_history_and_not_a_healthy_one():
    flagged = overfit_epochs(DIVERGING, gap=0.05)
    assert [item["epoch"] for item in flagged] == [4, 5]
    assert flagged[0]["gap"] == pytest.approx(0.10)
    assert overfit_epochs(HEALTHY, gap=0.05) == []


def test_overfitting_callback_records_epochs_as_they_end(capsys):
    monitor = OverfittingMonitor(gap=0.05)
    for epoch in range(5):
        monitor.on_epoch_end(
            epoch,
            {
                "accuracy": DIVERGING["accuracy"][epoch],
                "val_accuracy": DIVERGING["val_accuracy"][epoch],
            },
        )
    assert [item["epoch"] for item in monitor.flagged] == [4, 5]
    assert (
        "epoch 4: validation accuracy 0.8000 trails training accuracy 0.9000"
        in capsys.readouterr().out
    )


def test_best_epoch_follows_the_monitored_metric():
    assert best_epoch(DIVERGING, monitor="val_loss") == 3
    assert best_epoch(DIVERGING, monitor="val_accuracy") == 4


def test_scaling_statistics_come_from_train_rows_only():
    frame = prepared(400)
    frame.loc[frame.index % 2 == 0, "x:x2"] += 100.0  # shift half the rows
    splits = split_frame(frame, target="target", validation=0.1, test=0.2, seed=0)
    train = splits["train"]
    mean, variance = scaling_statistics(train[SPEC.feature_columns], spec=SPEC)
    present = train.loc[train["m:x1"] == 0, "x:x1"]
    np.testing.assert_allclose(mean, [present.mean(), 0.0, train["x:x2"].mean()], rtol=1e-5)
    np.testing.assert_allclose(
        variance, [present.var(ddof=0), 1.0, train["x:x2"].var(ddof=0)], rtol=1e-4
    )
    assert mean[2] != pytest.approx(frame["x:x2"].mean(), rel=1e-3)

    model = build_model(
        n_features=3,
        n_classes=2,
        mean=mean,
        variance=variance,
        hidden_units=[4],
        activation="relu",
        dropout=0.0,
        l2=0.0,
        initializer="he_normal",
    )
    scaling = model.get_layer("scaling")
    np.testing.assert_allclose(np.ravel(scaling.mean), mean, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(scaling.variance), variance, rtol=1e-6)


def test_robust_scaling_centres_the_median_and_divides_by_the_quartile_range():
    frame = prepared(400)
    frame["x:x2"] = np.where(frame.index % 10 == 0, 1e6, 0.0)  # quartiles equal: half the range
    mean, variance = scaling_statistics(frame[SPEC.feature_columns], spec=SPEC, robust=True)
    present = frame.loc[frame["m:x1"] == 0, "x:x1"].to_numpy()
    low, median, high = np.quantile(present, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(mean, [median, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(variance, [(high - low) ** 2, 1.0, 5e5**2], rtol=1e-6)


@pytest.mark.parametrize("family", ["mlp", "tabm"])
def test_train_model_end_to_end_on_a_tiny_table(tmp_path, monkeypatch, family):
    import keras

    monkeypatch.chdir(tmp_path)  # DVCLive looks for a git repository from here
    frame = prepared(300)
    splits = split_frame(frame, target="target", validation=0.2, test=0.2, seed=0)
    tabm = family == "tabm"
    model, report = fit(
        splits, tmp_path / "live", seed=3, model=family, members=4, bin_embedding_dim=4 * tabm
    )
    assert report["model"] == family and report["members"] == (4 if tabm else 1)
    assert report["periodic_embeddings"] is False and report["bin_embeddings"] is tabm
    assert report["epochs_run"] == 2
    assert report["train_rows"] == len(splits["train"])
    assert report["seed"] == 3
    assert set(report["best"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    for name in ("train/loss.tsv", "eval/loss.tsv", "train/accuracy.tsv", "eval/accuracy.tsv"):
        lines = (tmp_path / "live/plots/metrics" / name).read_text().splitlines()
        assert len(lines) == 3  # header plus one line per epoch

    x_test = splits["test"][SPEC.feature_columns].to_numpy("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    proba = predict_proba(reloaded, x_test)
    assert proba.shape == (len(x_test), 2)
    np.testing.assert_allclose(proba, predict_proba(model, x_test), rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_calibration_and_threshold_are_fitted_on_validation_rows_and_saved_in_the_model(
    tmp_path, monkeypatch
):
    import keras

    from stages.model.head import decision, decision_threshold

    monkeypatch.chdir(tmp_path)
    splits = split_frame(prepared(400), target="target", validation=0.3, test=0.1, seed=0)
    model, report = fit(splits, tmp_path / "live", seed=3, threshold={"rule": "balanced_accuracy"})
    fitted = report["calibration"]
    assert fitted["method"] == "temperature" and fitted["threshold_rule"] == "balanced_accuracy"
    assert fitted["temperature"] == pytest.approx(1 / fitted["scale"], rel=1e-5)
    assert fitted["validation"]["log_loss_after"] <= fitted["validation"]["log_loss_before"]
    assert fitted["threshold"] == decision_threshold(model) != 0.5
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert decision(reloaded) == decision(model)
    x_val = splits["validation"][SPEC.feature_columns].to_numpy("float32")
    np.testing.assert_allclose(predict_proba(reloaded, x_val), predict_proba(model, x_val))


def test_piecewise_linear_encoding_exact_values():
    from stages.model.layers import PiecewiseLinearEncoding

    layer = PiecewiseLinearEncoding(indices=[0, 2], edges=[[0.0, 10.0, 20.0], [1.0, 3.0]])
    inputs = np.array(
        [[5.0, 99.0, 2.0], [15.0, 99.0, 0.0], [-3.0, 99.0, 3.0], [25.0, 99.0, 9.0]],
        dtype="float32",
    )
    expected = [
        [0.5, 0.0, 0.5, 0.0],  # column 0 half way up bin 1; column 2 half way; spare bin 0
        [1.0, 0.5, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 1.0, 1.0, 0.0],
    ]
    np.testing.assert_allclose(np.asarray(layer(inputs)), expected, atol=1e-6)


def test_bin_edges_are_fitted_on_the_rows_given_and_follow_the_label():
    from stages.model.statistics import bin_edges

    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 100, size=2000)
    frame = pd.DataFrame({"x:x1": x1, "m:x1": 0.0, "x:x2": rng.normal(size=2000)}, dtype="float32")
    labels = (x1 > 60).astype(int)  # the label flips at 60
    indices, edges = bin_edges(frame, labels, spec=SPEC, max_bins=4, seed=0)
    assert indices == [0, 2]  # positions of x1 and x2 among the encoded columns
    assert edges[0][0] == pytest.approx(frame["x:x1"].min())
    assert edges[0][-1] == pytest.approx(frame["x:x1"].max())
    assert any(abs(edge - 60) < 1 for edge in edges[0])
    first_half = bin_edges(frame.iloc[:1000], labels[:1000], spec=SPEC, max_bins=4, seed=0)
    assert first_half[1][0][-1] == pytest.approx(frame["x:x1"].iloc[:1000].max())


def test_saved_model_files_are_byte_identical_for_identical_weights(tmp_path):
    import time

    import keras

    from stages.model.files import save_model

    model = build_model(
        n_features=3,
        n_classes=3,
        mean=np.zeros(3),
        variance=np.ones(3),
        hidden_units=[4],
        activation="relu",
        dropout=0.0,
        l2=0.0,
        initializer="he_normal",
        bins=([0], [[0.0, 1.0, 2.0]]),
    )
    save_model(model, tmp_path / "a.keras")
    time.sleep(1.1)  # Keras would stamp a different save time
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    reloaded = keras.models.load_model(tmp_path / "a.keras")  # safe mode
    x = np.array([[0.5, 1.0, -1.0]], dtype="float32")
    np.testing.assert_allclose(predict_proba(reloaded, x), predict_proba(model, x), rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("family", [{"model": "mlp"}, {"model": "tabm", "members": 4}])
def test_balanced_class_weights_raise_the_minority_class_recall(tmp_path, monkeypatch, family):
    from stages.training.batches import class_weights

    monkeypatch.chdir(tmp_path)
    # One positive in ten, overlapping the negatives: unweighted, the model favours "neg".
    frame = prepared(1200)
    frame["target"] = (np.arange(1200) % 10 == 0).astype("int32")
    rng = np.random.default_rng(1)
    frame["x:x1"] = (rng.normal(size=1200) + 1.0 * frame["target"]).astype("float32")
    splits = split_frame(frame, target="target", validation=0.2, test=0.3, seed=0)
    weights = class_weights(
        splits["train"]["target"].to_numpy(), classes=SPEC.classes, mode="balanced"
    )
    assert weights[1] / weights[0] == pytest.approx(9.0, rel=0.05)

    recalls = {}
    for mode in ("none", "balanced"):
        model, report = fit(splits, tmp_path / mode, seed=3, epochs=10, class_weight=mode, **family)
        x_test = splits["test"][SPEC.feature_columns].to_numpy("float32")
        predicted = predict_proba(model, x_test).argmax(axis=1)
        positives = splits["test"]["target"].to_numpy() == 1
        recalls[mode] = float((predicted[positives] == 1).mean())
    assert report["class_weights"]["pos"] == pytest.approx(weights[1], rel=1e-5)
    assert recalls["balanced"] >= recalls["none"] + 0.3, recalls


@pytest.mark.parametrize(
    "family",
    [{}, {"architecture": "tabm", "members": 3, "periodic": ([0, 1], 4, 2, 1.0), "seed": 0}],
)
def test_under_mixed_precision_inputs_and_head_stay_float32(tmp_path, family):
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = build_model(
            n_features=2,
            n_classes=2,
            mean=np.array([1e6, 0.0]),
            variance=np.array([1e10, 1.0]),
            hidden_units=[8],
            activation="relu",
            dropout=0.0,
            l2=0.0,
            initializer="he_normal",
            bins=([0], [[0.0, 1e6, 2e6]]),
            **family,
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert policies["scaling"] == policies["numeric_bins"] == "float32"
    if family:
        assert policies["numeric_periodic"] == policies["member_outputs"] == "float32"
        assert policies["ensemble_view"] == "mixed_float16"
    assert policies["hidden_1"] == "mixed_float16"
    assert policies["probability"] == "float32"
    x = np.array([[1.5e6, 1.0], [2.5e5, -1.0]], dtype="float32")  # beyond float16's range
    proba = predict_proba(model, x)
    assert np.isfinite(proba).all() and proba.dtype == np.float64


def test_several_steps_per_execution_train_the_same_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = split_frame(prepared(300), target="target", validation=0.2, test=0.2, seed=0)
    runs = [
        fit(splits, tmp_path / f"live{steps}", seed=2, steps_per_execution=steps)
        for steps in (1, 4)
    ]
    # 180 rows in batches of 32: 6 steps an epoch, run as executions of 3 steps, not 4
    # (an execution running past the epoch's end would take the next epoch's batches).
    assert runs[1][1]["steps_per_execution"] == 3
    assert runs[0][1]["optimizer_steps"] == runs[1][1]["optimizer_steps"] == 12
    np.testing.assert_allclose(
        runs[0][1]["history"]["loss"], runs[1][1]["history"]["loss"], rtol=1e-4
    )
    for first, second in zip(runs[0][0].get_weights(), runs[1][0].get_weights(), strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-5)


def test_the_training_report_names_the_best_epoch_and_the_flagged_ones():
    from stages.training.loop import training_report

    params = tiny_params(monitor="val_loss", overfit_gap=0.03, model="tabm", members=3)
    report = training_report(
        DIVERGING, spec=SPEC, params=params, score="accuracy", train_rows=10, seed=1
    )
    assert report["best_epoch"] == 3 and report["epochs_run"] == 5
    assert report["best"]["val_loss"] == 0.47
    assert [flag["epoch"] for flag in report["overfit_epochs"]] == [3, 4, 5]
    assert report["overfitting"] and report["model"] == "tabm" and report["members"] == 3
    assert report["train_rows"] == 10 and report["seed"] == 1


def test_training_callbacks_follow_the_params(tmp_path):
    from stages.training.callbacks import training_callbacks

    watched = training_callbacks(tiny_params(patience=3), score="r2", live_dir=tmp_path)
    assert watched.stopper.patience == 3 and watched.stopper.monitor == "val_loss"
    assert watched.watch.score == "r2" and watched.backup.path is None
    unwatched = training_callbacks(
        tiny_params(patience=0), score="accuracy", live_dir=tmp_path, backup_path=tmp_path / "b"
    )
    assert unwatched.stopper is None and unwatched.backup.path == tmp_path / "b"


def test_training_batches_are_a_seeded_permutation_per_epoch_and_resume_exactly():
    from stages.training.batches import epoch_batches, evaluation_batches

    rows = 103
    numbers = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    codes = np.arange(rows, dtype=np.int32).reshape(rows, 1)
    row_ids = np.arange(rows, dtype=np.int32)  # the target slot carries each row's id
    arrays = (numbers, codes, row_ids)

    def stream(**kwargs):
        options = dict(batch_size=10, seed=7, first_epoch=0, epochs=3, n_inputs=2)
        return epoch_batches(arrays, **{**options, **kwargs})

    batches = list(stream().as_numpy_iterator())
    assert len(batches) == 3 * 11  # 10 full batches and one of 3, per epoch
    for (batch_numbers, batch_codes), ids in batches:  # inputs grouped, rows kept together
        np.testing.assert_array_equal(batch_numbers[:, 0], ids * 2)
        np.testing.assert_array_equal(batch_codes[:, 0], ids)
    epochs = [np.concatenate([ids for _, ids in batches[e * 11 : (e + 1) * 11]]) for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(rows))  # every row once per epoch
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    resumed = [ids for _, ids in stream(first_epoch=2).as_numpy_iterator()]
    np.testing.assert_array_equal(np.concatenate(resumed), epochs[2])
    again = [ids for _, ids in stream().as_numpy_iterator()]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(epochs))

    # Two processes: whole batches only, each keeping its own stride of every one.
    halves = [
        [ids for _, ids in stream(process=p, processes=2).as_numpy_iterator()] for p in (0, 1)
    ]
    assert len(halves[0]) == len(halves[1]) == 3 * 10
    full = [ids for e in range(3) for _, ids in batches[e * 11 : e * 11 + 10]]
    for first, second, whole in zip(*halves, full, strict=True):
        np.testing.assert_array_equal(first, whole[0::2])
        np.testing.assert_array_equal(second, whole[1::2])

    in_order = [
        ids for _, ids in evaluation_batches(arrays, batch_size=10, n_inputs=2).as_numpy_iterator()
    ]
    np.testing.assert_array_equal(np.concatenate(in_order), row_ids)
    assert [len(ids) for ids in in_order] == [10] * 10 + [3]


@pytest.mark.parametrize("inside_repro", [True, False])
def test_the_training_logger_opens_no_dvc_repository_inside_dvc_repro(tmp_path, inside_repro):
    """Inside `dvc repro` DVCLive logs without importing DVC; by hand it loads DVC to look
    for a repository, as DVCLive always does (experiments, Studio)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from stages.training.callbacks import open_live\n"
        "live = open_live(Path('live'))\n"
        "live.log_metric('loss', 0.5)\n"
        "live.next_step()\n"
        "live.end()\n"
        "print('dvc.repo' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    if inside_repro:
        env["DVC_ROOT"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(not inside_repro)
    logged = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert logged["loss"] == 0.5 and logged["step"] == 0
