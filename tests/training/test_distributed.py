"""Data-parallel training in two worker processes on localhost (Keras 3 on JAX)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO
from ..helpers import run, shrunk_copy

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(repos: list[Path], port: int) -> tuple[float, list[str]]:
    """Run `stages train` once per repository, as process i of len(repos)."""
    base = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cluster = len(repos) > 1
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "stages", "train"],
            cwd=repo,
            env={
                **base,
                **(
                    {
                        "TRAIN_COORDINATOR": f"127.0.0.1:{port}",
                        "TRAIN_NUM_PROCESSES": str(len(repos)),
                        "TRAIN_PROCESS_ID": str(index),
                    }
                    if cluster
                    else {}
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index, repo in enumerate(repos)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            process.kill()
    elapsed = time.perf_counter() - started
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    return elapsed, outputs


def test_two_workers_train_one_model_and_hold_identical_weights(tmp_path):
    repos = [shrunk_copy(tmp_path / f"worker{index}") for index in range(2)]
    for repo in repos:  # every machine has its own checkout and the same data
        run(["dvc", "repro", "split"], repo)

    elapsed, outputs = _train(repos, _free_port())
    models = [(repo / "models/model.keras").read_bytes() for repo in repos]
    assert models[0] == models[1]
    for repo in repos:
        report = json.loads((repo / "reports/train/report.json").read_text())
        assert report["processes"] == 2 and report["backend"] == "jax"
        assert report["epochs_run"] == 2
    assert "train: 240 rows" in outputs[0]

    single, _ = _train([repos[0]], 0)
    report = json.loads((repos[0] / "reports/train/report.json").read_text())
    assert report["processes"] == 1 and report["backend"] == "tensorflow"
    print(f"two workers {elapsed:.1f} s, one worker {single:.1f} s (ratio {elapsed / single:.2f})")


def test_two_workers_streaming_the_split_read_their_own_shards(tmp_path):
    """A train split of more rows than train.shuffle_rows streams from its shards: each
    process is dealt its own shards every epoch, and both take the same steps to the same
    weights."""
    import pandas as pd
    import yaml

    from stages.common import io

    repos = [shrunk_copy(tmp_path / f"worker{index}") for index in range(2)]
    for repo in repos:
        run(["dvc", "repro", "split"], repo)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["train"]["shuffle_rows"] = 100
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        train = pd.read_parquet(repo / "data/split/train.parquet")
        with io.ShardWriter(repo / "data/split/train.parquet") as writer:
            for start in range(0, len(train), 60):  # four shards of 60 rows
                writer.write(train.iloc[start : start + 60])
    _train(repos, _free_port())
    models = [(repo / "models/model.keras").read_bytes() for repo in repos]
    assert models[0] == models[1]
    for repo in repos:
        report = json.loads((repo / "reports/train/report.json").read_text())
        assert report["processes"] == 2 and report["streamed_shards"] == 4
        # Each process is dealt two shards: 120 rows, 7 batches of 16 an epoch.
        assert report["optimizer_steps"] == 2 * 7


def test_an_incomplete_cluster_description_is_a_clear_error():
    env = {**os.environ, "TRAIN_COORDINATOR": "127.0.0.1:1", "TRAIN_NUM_PROCESSES": "2"}
    result = subprocess.run(  # fails before it reads or writes anything
        [sys.executable, "-m", "stages", "train"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "missing: TRAIN_PROCESS_ID" in result.stderr
    assert "Traceback" not in result.stderr
