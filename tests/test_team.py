"""Team workflow: share outputs through a DVC remote (a folder, and S3 on a local server),
and run experiments from DVC's queue."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from .helpers import run, shrunk_copy, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A shrunk copy of the project after `dvc repro`, with dvc.lock committed."""
    repo = shrunk_copy(tmp_path_factory.mktemp("team") / "repo")
    run(["dvc", "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline run"], repo)
    return repo


def push_then_repro_in_a_fresh_clone(repo: Path, clone: Path, remote: str) -> dict:
    """Make `remote` the default, push, clone, `dvc repro --pull`; return what happened."""
    run(["dvc", "remote", "default", remote], repo)
    run(["git", "commit", "-qam", f"default remote: {remote}"], repo)
    start = time.perf_counter()
    run(["dvc", "push", "--run-cache", "-q"], repo)
    pushed = time.perf_counter()
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent)
    repro = run(["dvc", "repro", "--pull"], clone)
    pulled = time.perf_counter()
    print(f"push {pushed - start:.1f} s, clone + repro --pull {pulled - pushed:.1f} s")
    return {"stages_run": stages_run(repro.stdout), "status": run(["dvc", "status"], clone).stdout}


def assert_same_outputs(repo: Path, clone: Path) -> None:
    """The same bytes (a table folder's: the same shards, each the same)."""
    from stages.common.io import file_sha256

    for name in ("models/model.keras", "reports/evaluate/metrics.json", "data/split/test.parquet"):
        assert file_sha256(clone / name) == file_sha256(repo / name), name


def test_a_fresh_clone_pulls_every_output_from_a_folder_remote(repo: Path, tmp_path: Path):
    run(["dvc", "remote", "add", "--force", "folder", str(tmp_path / "storage")], repo)
    result = push_then_repro_in_a_fresh_clone(repo, tmp_path / "clone", "folder")
    assert result["stages_run"] == []
    assert "Data and pipelines are up to date" in result["status"]
    assert_same_outputs(repo, tmp_path / "clone")
    assert any((tmp_path / "storage").rglob("*"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_fresh_clone_pulls_every_output_from_s3(repo: Path, tmp_path: Path, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("dvc_s3", reason="the s3 extra (dvc-s3) is part of the dev install")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        # Credentials come from the environment only, never from .dvc/config.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pipeline-cache")
        run(["dvc", "remote", "add", "--force", "s3", "s3://pipeline-cache/dvc"], repo)
        run(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], repo)
        result = push_then_repro_in_a_fresh_clone(repo, tmp_path / "clone", "s3")
        stored = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="pipeline-cache")
    finally:
        server.stop()
    assert result["stages_run"] == []
    assert "Data and pipelines are up to date" in result["status"]
    assert_same_outputs(repo, tmp_path / "clone")
    assert stored["KeyCount"] > 0
    assert "test-key" not in (repo / ".dvc/config").read_text()


def test_queued_experiments_show_up_with_their_metrics(repo: Path):
    for epochs in (3, 4):
        run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "-S",
                f"train.epochs={epochs}",
                "-n",
                f"epochs-{epochs}",
            ],
            repo,
        )
    run(["dvc", "exp", "run", "--run-all", "--jobs", "1"], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    experiments = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                experiments[data.get("name") or exp.get("name")] = data
    assert {"epochs-3", "epochs-4"} <= set(experiments)
    for name, epochs in (("epochs-3", 3), ("epochs-4", 4)):
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == epochs
        assert set(data["metrics"]) == {"reports/evaluate/metrics.json"}
        evaluate = data["metrics"]["reports/evaluate/metrics.json"]["data"]
        assert 0 < evaluate["accuracy"] <= 1 and evaluate["test_rows"] > 0
