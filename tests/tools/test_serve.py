"""`stages serve` as a client sees it: a real server process on a free localhost port, called
over HTTP, answering as `stages predict` does on the same rows."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.serve import Server

from ..conftest import REPO
from ..helpers import run, shrunk_copy

pytestmark = pytest.mark.slow

PROBABILITIES = ["probability_<=50K", "probability_>50K"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A shrunk copy of the project, trained (`dvc repro train`), with 200 Adult rows it
    never saw in rows.csv and `stages predict`'s answers for them in expected.parquet."""
    repo = shrunk_copy(tmp_path_factory.mktemp("serve") / "repo")
    run(["dvc", "repro", "train"], repo)
    names = yaml.safe_load((repo / "params.yaml").read_text())["collect"]["names"]
    adult = pd.read_csv(
        REPO / "data/adult.data", names=names, skipinitialspace=True, na_values=["?"]
    )
    rows = adult.iloc[1000:1200].drop(columns=["income"]).reset_index(drop=True)
    rows.to_csv(repo / "rows.csv", index=False)
    run(["python", "-m", "stages", "predict", "rows.csv", "--output", "expected.parquet"], repo)
    return repo


@pytest.fixture(scope="module")
def rows(repo) -> pd.DataFrame:
    return pd.read_csv(repo / "rows.csv")


@pytest.fixture(scope="module")
def expected(repo) -> pd.DataFrame:
    return pd.read_parquet(repo / "expected.parquet").drop(columns=["row"])


@pytest.fixture(scope="module")
def server(repo):
    with Server(repo) as server:
        yield server


def as_frame(predictions: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(predictions)


def assert_same(answer: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(answer.columns) == list(expected.columns)
    assert answer["predicted"].tolist() == expected["predicted"].tolist()
    np.testing.assert_allclose(
        answer[PROBABILITIES].to_numpy(dtype=float),
        expected[PROBABILITIES].to_numpy(dtype=float),
        rtol=1e-6,
    )
    for column in ("error", "warning"):
        assert answer[column].fillna("").tolist() == expected[column].fillna("").tolist()


def records(rows: pd.DataFrame) -> list[dict]:
    return json.loads(rows.to_json(orient="records"))


def test_every_mlflow_payload_answers_as_predict(server, rows, expected):
    shuffled = rows[list(reversed(rows.columns))]  # column order is free
    split = json.loads(rows.to_json(orient="split", index=False))
    payloads = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records(shuffled)},
        "instances": {"instances": records(rows)},
        "inputs as columns": {
            "inputs": {name: [row[name] for row in records(rows)] for name in rows.columns}
        },
        "inputs as rows": {"inputs": split["data"]},
    }
    for name, payload in payloads.items():
        status, body = server.post("/invocations", payload)
        assert status == 200, (name, body)
        assert_same(as_frame(body["predictions"]), expected)
    csv = rows.to_csv(index=False).encode()
    status, body = server.post("/invocations", csv, content_type="text/csv")
    assert status == 200, body
    assert_same(as_frame(body["predictions"]), expected)


def oip_inputs(rows: pd.DataFrame, datatypes: dict[str, str]) -> list[dict]:
    return [
        {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": datatypes[name],
            "data": [[value] for value in json.loads(rows[name].to_json(orient="values"))],
        }
        for name in rows.columns
    ]


def test_the_open_inference_protocol_answers_as_predict(server, rows, expected):
    status, metadata = server.get("/v2/models/model")
    assert status == 200
    datatypes = {item["name"]: item["datatype"] for item in metadata["inputs"]}
    assert datatypes["age"] == "INT64" and datatypes["workclass"] == "BYTES"
    assert [item["name"] for item in metadata["outputs"]] == list(expected.columns)
    payload = {"id": "42", "inputs": oip_inputs(rows, datatypes)}
    status, body = server.post("/v2/models/model/infer", payload)
    assert status == 200, body
    assert body["model_name"] == "model" and body["id"] == "42"
    outputs = {item["name"]: item for item in body["outputs"]}
    assert outputs["predicted"]["datatype"] == "BYTES" and outputs["predicted"]["shape"] == [200]
    answer = pd.DataFrame({name: item["data"] for name, item in outputs.items()})
    answer = answer.replace({"error": {"": None}, "warning": {"": None}})
    assert_same(answer, expected)
    # The specification's example shape: a flat [rows] tensor, and the outputs asked for.
    two = rows.iloc[:2]
    flat = [
        {**tensor, "shape": [2], "data": [value for (value,) in tensor["data"]]}
        for tensor in oip_inputs(two, datatypes)
    ]
    status, body = server.post(
        "/v2/models/model/infer", {"inputs": flat, "outputs": [{"name": "predicted"}]}
    )
    assert status == 200, body
    assert [item["name"] for item in body["outputs"]] == ["predicted"]
    assert body["outputs"][0]["data"] == expected["predicted"][:2].tolist()


def test_a_missing_number_and_an_unseen_category_answer_200_with_the_row_reason(server, rows):
    odd = records(rows.iloc[:3])
    odd[0]["age"] = None
    odd[1]["workclass"] = "Astronaut"
    odd[2]["hours-per-week"] = "forty"
    status, body = server.post("/invocations", {"dataframe_records": odd})
    assert status == 200, body
    first, second, third = body["predictions"]
    assert first["error"] == "age: missing, and the schema requires a value"
    assert first["predicted"] is None and first["probability_>50K"] is None
    assert second["error"] is None and second["predicted"] in ("<=50K", ">50K")
    assert second["warning"] == "workclass: unseen category 'Astronaut', treated as unknown"
    assert third["error"] == "hours-per-week: 'forty' is not a number"


def test_each_error_answers_its_status_in_json(server, rows):
    cases = [
        (server.post("/invocations", b"{not json"), 400, "not valid JSON"),
        (
            server.post("/invocations", {"dataframe_records": records(rows.drop(columns="age"))}),
            400,
            "age",
        ),
        (server.post("/invocations", b"age\n39", content_type="text/plain"), 415, "text/plain"),
        (server.post("/invocations", {"rows": []}), 400, "dataframe_split"),
        (server.get("/v2/models/other"), 404, "unknown model 'other'"),
        (server.post("/v2/models/other/infer", {"inputs": []}), 404, "unknown model"),
        (server.get("/invocations"), 405, "Method Not Allowed"),
        (server.get("/no/such/route"), 404, "Not Found"),
        (
            server.post(
                "/v2/models/model/infer",
                {"inputs": [{"name": "age", "datatype": "INT64", "shape": [2], "data": [1]}]},
            ),
            400,
            "shape [2] but 1 values",
        ),
    ]
    for (status, body), want, text in cases:
        assert status == want, body
        assert isinstance(body, dict), body
        assert text in json.dumps(body), body


def test_sixteen_concurrent_requests_answer_as_sequential_ones(server, rows):
    chunks = [records(rows.iloc[i * 12 : i * 12 + 12]) for i in range(16)]
    sequential = [server.post("/invocations", {"dataframe_records": c}) for c in chunks]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(
            pool.map(lambda c: server.post("/invocations", {"dataframe_records": c}), chunks)
        )
    assert all(status == 200 for status, _ in sequential)
    assert concurrent == sequential


def test_metrics_count_requests_rows_and_errors(server, rows):
    before = server.metrics()
    server.post("/invocations", {"dataframe_records": records(rows.iloc[:5])})
    server.get("/v2/models/other")
    after = server.metrics()
    key = 'stages_serve_rows_total{result="predicted"}'
    assert after[key] == before.get(key, 0) + 5
    ok = 'stages_serve_requests_total{route="/invocations",status="200"}'
    assert after[ok] == before.get(ok, 0) + 1
    assert after['stages_serve_errors_total{status="404"}'] >= 1
    count = 'stages_serve_request_seconds_count{route="/invocations"}'
    assert after[count] > before.get(count, 0)


def test_drift_summarises_the_served_rows(server):
    status, drift = server.get("/drift")
    assert status == 200
    assert drift["rows"] > 0 and "age" in drift["columns"]
    assert drift["threshold"] == 0.2


def test_the_documented_python_snippets_that_call_a_server_run(server, repo, rows):
    from ..test_docs import SERVER_URL, python_snippets

    rows.to_csv(repo / "new_rows.csv", index=False)
    snippets = [code for _, code in python_snippets() if SERVER_URL in code]
    assert snippets
    for code in snippets:
        code = code.replace(SERVER_URL, f"http://127.0.0.1:{server.port}")
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[0] in ("<=50K", ">50K")


def test_the_server_runs_without_tensorflow(server):
    maps = Path(f"/proc/{server.process.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system")
    assert "tensorflow" not in maps.read_text()
    status, version = server.get("/version")
    assert status == 200 and version["keras_backend"] == "numpy"


def test_a_token_guards_every_route_but_liveness(repo, rows):
    with Server(repo, env={"SERVE_TOKEN": "s3cret"}, args=["--max-body-mb", "0.01"]) as guarded:
        assert guarded.get("/v2/health/live", token=None)[0] == 200
        for path in ("/v2/health/ready", "/ping", "/metrics", "/v2/models/model"):
            status, body = guarded.get(path, token=None)
            assert status == 401 and "Bearer" in json.dumps(body), (path, body)
            assert guarded.get(path, token="wrong")[0] == 401
        assert guarded.get("/v2/health/ready")[0] == 200
        status, body = guarded.post("/invocations", {"dataframe_records": records(rows)})
        assert status == 413 and "serve.max_body_mb" in body["message"]
        assert "s3cret" not in guarded.log()


def test_several_worker_processes_answer_as_one(repo, rows, expected):
    with Server(repo, args=["--workers", "2"]) as workers:
        status, body = workers.post("/invocations", {"dataframe_records": records(rows)})
        assert status == 200, body
        assert_same(as_frame(body["predictions"]), expected)


def test_readiness_is_503_until_a_model_is_loaded(repo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "params.yaml").write_text((repo / "params.yaml").read_text())
    with Server(empty, wait=False) as unready:
        unready.wait_live()
        deadline = time.monotonic() + 30
        while "cannot be loaded" not in unready.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = unready.get("/v2/health/ready")
        assert status == 503 and "not ready" in body["error"]
        assert unready.get("/ping")[0] == 503


def test_sigterm_lets_a_request_in_flight_finish(repo, rows):
    many = pd.concat([rows] * 400, ignore_index=True)  # 80,000 rows, a few seconds to score
    body = io.StringIO()
    many.to_csv(body, index=False)
    with Server(repo) as server:
        answer: dict = {}

        def call() -> None:
            answer["result"] = server.post(
                "/invocations", body.getvalue().encode(), content_type="text/csv", timeout=120
            )

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)  # the request is in flight
        os.kill(server.process.pid, signal.SIGTERM)
        caller.join(120)
        status, predictions = answer["result"]
        assert status == 200 and len(predictions["predictions"]) == len(many)
        assert server.process.wait(60) == 0
