"""Training resumes after an interruption and ends with the weights of an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.data.splitting import split_frame
from stages.training.loop import train_model

from ..helpers import run, shrunk_copy
from .test_loop import SPEC, prepared, tiny_params

PARAMS = dict(epochs=6, patience=2, dropout=0.2, batch_size=16)


class Interrupted(Exception):
    pass


def _interrupt_at(epoch: int, batch: int):
    import keras

    class Interrupt(keras.callbacks.Callback):
        """Stops the run part-way through an epoch, as a kill would."""

        def on_epoch_begin(self, index, logs=None):
            self.epoch = index

        def on_train_batch_end(self, index, logs=None):
            if self.epoch == epoch and index == batch:
                raise Interrupted

    return Interrupt()


@pytest.fixture(scope="module")
def splits():
    return split_frame(prepared(400), target="target", validation=0.2, test=0.2, seed=0)


def _train(
    tmp: Path, splits, name: str, *, key: str = "k", backup=True, extra=(), train=None, **params
):
    model, report = train_model(
        train=splits["train"] if train is None else train,
        validation=splits["validation"],
        spec=SPEC,
        params=tiny_params(**{**PARAMS, **params}),
        seed=5,
        live_dir=tmp / name,
        backup_path=tmp / "backup.npz" if backup else None,
        backup_key=key,
        extra_callbacks=extra,
    )
    return model.get_weights(), report


def _assert_same(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_run_resumes_and_ends_with_the_weights_of_an_unbroken_one(
    tmp_path, monkeypatch, splits, capsys
):
    monkeypatch.chdir(tmp_path)  # DVCLive looks for a git repository from here
    unbroken, unbroken_report = _train(tmp_path, splits, "unbroken", backup=False)

    with pytest.raises(Interrupted):
        _train(tmp_path, splits, "first", extra=(_interrupt_at(epoch=3, batch=5),))
    assert (tmp_path / "backup.npz").exists()
    capsys.readouterr()
    resumed, report = _train(tmp_path, splits, "first")
    assert "resuming after epoch 3 of 6" in capsys.readouterr().out
    _assert_same(unbroken, resumed)
    assert report["resumed_after_epoch"] == 3
    assert report["history"] == unbroken_report["history"]
    assert report["best_epoch"] == unbroken_report["best_epoch"]
    # DVCLive carries on counting: one line per epoch, steps 0, 1, 2, ...
    lines = (tmp_path / "first/plots/metrics/train/loss.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[0]) for line in lines[1:]]
    assert steps == list(range(report["epochs_run"]))


def test_a_backup_from_other_inputs_is_ignored(tmp_path, monkeypatch, splits, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Interrupted):
        _train(tmp_path, splits, "old", key="old", extra=(_interrupt_at(epoch=2, batch=0),))
    fresh, _ = _train(tmp_path, splits, "fresh", backup=False)
    capsys.readouterr()
    weights, report = _train(tmp_path, splits, "new", key="new")
    out = capsys.readouterr().out
    assert "ignoring the backup" in out and "other data, params or code" in out
    assert "resuming" not in out
    assert report["resumed_after_epoch"] is None
    _assert_same(fresh, weights)
    # The stale backup was replaced by the new run's (the stage discards it once its
    # outputs are written; train_model alone keeps it).
    assert json.loads(str(np.load(tmp_path / "backup.npz")["meta"]))["key"] == "new"


def test_the_backup_key_changes_with_data_params_and_code(tmp_path):
    from stages.training.resume import backup_key

    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    key = backup_key(files=[data], settings={"lr": 0.1})
    assert key == backup_key(files=[data], settings={"lr": 0.1})
    assert key != backup_key(files=[data], settings={"lr": 0.2})
    data.write_bytes(b"other rows")
    assert key != backup_key(files=[data], settings={"lr": 0.1})


@pytest.mark.slow
def test_dvc_repro_after_sigkill_resumes_and_reproduces_the_unbroken_model(tmp_path):
    """Kill `dvc repro` (its whole process group) while train is mid-run, run it again:
    it resumes, and the model file is byte-identical to a run that was never killed."""
    repo = shrunk_copy(tmp_path / "repo")
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["collect"]["max_rows"] = 3000
    params["train"].update(epochs=8, batch_size=8, patience=3, numeric_bins=4)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "more epochs"], repo)
    run(["dvc", "repro", "split"], repo)

    backup = repo / ".resume/train.npz"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    process = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    completed = 0
    while completed < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        try:
            with np.load(backup) as saved:
                completed = json.loads(str(saved["meta"]))["completed"]
        except (FileNotFoundError, OSError, ValueError, KeyError):
            continue
    assert completed >= 2, "training never got two epochs into the run"
    time.sleep(0.2)  # into the next epoch
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (repo / "models/model.keras").exists()

    assert list((repo / "reports").glob(".tmp-train-*"))  # the killed run's staging folder
    resumed = run(["dvc", "repro"], repo)
    assert "train: resuming after epoch" in resumed.stdout
    assert not list((repo / "reports").glob(".tmp-train-*"))
    assert not backup.exists()  # removed once the outputs are in place
    killed_then_resumed = (repo / "models/model.keras").read_bytes()
    report = json.loads((repo / "reports/train/report.json").read_text())
    assert 2 <= report["resumed_after_epoch"] < report["epochs_run"]
    lines = (repo / "reports/train/plots/metrics/eval/loss.tsv").read_text().splitlines()
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(report["epochs_run"]))

    run(["dvc", "repro", "--force", "train"], repo)  # no backup: an unbroken run
    assert (repo / "models/model.keras").read_bytes() == killed_then_resumed


def test_a_run_streamed_from_row_groups_resumes_to_the_weights_of_an_unbroken_one(
    tmp_path, monkeypatch, splits, capsys
):
    """More train rows than train.shuffle_rows: batches stream from the Parquet file's row
    groups, window by window, and a resumed run still ends where an unbroken one does."""
    from stages.training.stream import TrainRows

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train.parquet"
    splits["train"].to_parquet(path, index=False, row_group_size=40)
    rows = TrainRows.from_parquet(path)
    assert rows.rows > 100 and len(rows.shard_rows) > 3
    streamed = dict(train=rows, shuffle_rows=100)
    unbroken, unbroken_report = _train(tmp_path, splits, "unbroken", backup=False, **streamed)
    with pytest.raises(Interrupted):
        _train(tmp_path, splits, "first", extra=(_interrupt_at(epoch=3, batch=5),), **streamed)
    capsys.readouterr()
    resumed, report = _train(tmp_path, splits, "first", **streamed)
    assert "resuming after epoch 3 of 6" in capsys.readouterr().out
    _assert_same(unbroken, resumed)
    assert report["history"] == unbroken_report["history"]
    # In memory, the same rows take other batches (one permutation of every row per
    # epoch), and so other weights: the streamed run did stream.
    in_memory, _ = _train(tmp_path, splits, "in_memory", backup=False)
    assert any(not np.array_equal(a, b) for a, b in zip(unbroken, in_memory, strict=True))
