"""The data stages on Dask: partition by partition they write what one pass over the whole
table writes, embedded or on a cluster, and a worker that dies mid-task costs nothing."""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from distributed.diagnostics.plugin import WorkerPlugin

from stages.cli import cli
from stages.common import io, paths

from .conftest import REPO

DATA_STAGES = ["collect", "validate", "prepare", "split"]
OUTPUTS = [
    paths.RAW_TABLE,
    paths.VALIDATED_TABLE,
    paths.QUARANTINE_TABLE,
    paths.PREPARED_TABLE,
    paths.ENCODING_SPEC,
    *(paths.split_table(name) for name in paths.SPLIT_NAMES),
    paths.VALIDATE_FAILURES,
    paths.VALIDATE_REPORT,
    paths.PREPARE_REPORT,
    paths.SPLIT_REPORT,
]


def adult_rows(rows: int) -> pd.DataFrame:
    return pd.read_csv(REPO / "data/adult.data", header=None, nrows=rows, dtype=str)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """Adult's first 1,200 rows with invalid rows on each side of the partitions' edges
    (shards of 250 rows), quarantined, with a few duplicates, as the current directory."""
    frame = adult_rows(1200)
    for row in (0, 249, 250, 251, 499, 500, 1199):  # an age no one has
        frame.iloc[row, 0] = "250"
    frame.iloc[750, 1] = "Astronaut"  # not in the workclass vocabulary
    frame.iloc[1000, 0] = "forty"  # not a number
    frame.iloc[[300, 800, 1100]] = frame.iloc[[10, 20, 30]].to_numpy()  # copies
    frame.to_csv(tmp_path / "adult.csv", header=False, index=False)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/adult.yaml").write_text((REPO / "schemas/adult.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["collect"].update(source="adult.csv", watch="adult.csv")
    params["validate"].update(on_invalid="quarantine", max_invalid_fraction=0.05)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(io, "ROW_GROUP_ROWS", 250)
    return tmp_path


def run_stages(*names: str) -> str:
    """What the stages said."""
    said = ""
    for name in names:
        result = CliRunner().invoke(cli, [name], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        said += result.output
    return said


def digests(outputs: list[str] = OUTPUTS) -> dict[str, str]:
    """Each output's bytes (a table folder's shards one by one)."""
    found = {}
    for output in outputs:
        path = Path(output)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            found[file.as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def test_partitions_find_the_failures_and_quarantine_of_the_whole_table(project):
    from stages.common.config import ValidateParams
    from stages.data.transform import clean_frame, unparsed_values
    from stages.data.validation import apply_policy, sorted_cases, validate_frame
    from stages.validate import load_validation_schema

    run_stages("collect", "validate")
    assert len(io.partitions(paths.RAW_TABLE)) == 5
    # The whole table judged at once, as one frame.
    params = yaml.safe_load(Path("params.yaml").read_text())
    schema = load_validation_schema("schemas/adult.yaml", params["dataset"]["target"])
    raw = io.read_table(paths.RAW_TABLE)
    tokens = params["prepare"]["missing_tokens"]
    frame = clean_frame(raw, missing_tokens=tokens, schema=schema)
    earlier = unparsed_values(raw, frame, missing_tokens=tokens, schema=schema)
    validated, cases = validate_frame(frame, schema=schema, earlier=earlier)
    written = pd.read_csv(paths.VALIDATE_FAILURES)
    expected = sorted_cases(cases)
    assert len(written) == len(expected) == 12  # row 1000: "forty", then missing
    assert written["index"].tolist() == expected["index"].tolist()
    assert written[["column", "check"]].equals(expected[["column", "check"]].astype(str))
    assert written["failure_case"].astype(str).tolist() == expected["failure_case"].tolist()
    valid, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report={},
        schema=schema,
        policy=ValidateParams(on_invalid="quarantine", max_invalid_fraction=0.05),
        columns=("row_id", "reason"),
        source="raw",
    )
    assert error is None
    found = pd.read_parquet(paths.QUARANTINE_TABLE)
    assert found["row_id"].tolist() == [0, 249, 250, 251, 499, 500, 750, 1000, 1199]
    pd.testing.assert_frame_equal(found, quarantine.reset_index(drop=True), check_dtype=False)
    kept = pd.read_parquet(paths.VALIDATED_TABLE)
    assert kept["row_id"].tolist() == valid.index.tolist()
    pd.testing.assert_frame_equal(
        kept.drop(columns="row_id"), valid.reset_index(drop=True), check_dtype=False
    )


@pytest.mark.slow
def test_a_two_worker_cluster_writes_what_the_embedded_engine_writes(project, monkeypatch):
    from distributed import LocalCluster

    run_stages(*DATA_STAGES)
    embedded = digests()
    assert pd.read_json(paths.PREPARE_REPORT, typ="series")["duplicates_dropped"] == 3
    for output in OUTPUTS:
        shutil.rmtree(output) if Path(output).is_dir() else Path(output).unlink()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        said = run_stages(*DATA_STAGES)
    assert said.count(f"Dask cluster at {cluster.scheduler_address}") == 3, said
    assert digests() == embedded


class DieOnce(WorkerPlugin):
    """A worker plugin: the worker that starts the first `prepare_partition` task dies
    there, abruptly; the marker file keeps the restarted worker from dying again."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        first = not os.path.exists(self.marker)
        if finish == "executing" and "prepare_partition" in str(key) and first:
            Path(self.marker).write_text(str(key))
            os._exit(1)


@pytest.mark.slow
def test_a_worker_killed_during_prepare_costs_nothing(project, monkeypatch):
    from distributed import Client, LocalCluster

    run_stages("collect", "validate", "prepare")
    prepared = [paths.PREPARED_TABLE, paths.ENCODING_SPEC, paths.PREPARE_REPORT]
    embedded = digests(prepared)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = project / "killed"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(DieOnce(str(marker)))
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        said = run_stages("prepare")
    assert f"Dask cluster at {cluster.scheduler_address}" in said
    assert marker.read_text().startswith("prepare_partition")  # a worker did die
    assert digests(prepared) == embedded


def split_ids() -> dict[str, list[int]]:
    return {
        name: sorted(pd.read_parquet(paths.split_table(name))["row_id"])
        for name in paths.SPLIT_NAMES
    }


def test_a_large_table_is_split_by_row_id_hash_whatever_its_partitions(project, monkeypatch):
    from stages import split

    run_stages("collect", "validate", "prepare", "split")
    in_memory = json.loads(Path(paths.SPLIT_REPORT).read_text())
    monkeypatch.setattr(split, "EXACT_ROWS", 100)  # the 1,196 prepared rows are "large"
    said = run_stages("split")
    assert "by row-id hash" in said
    hashed = json.loads(Path(paths.SPLIT_REPORT).read_text())
    for name in paths.SPLIT_NAMES:  # the same numbers per class as in memory, to a row
        for label, rows in in_memory[name]["classes"].items():
            assert abs(hashed[name]["classes"][label] - rows) <= 1, (name, label)
    first = split_ids()
    every = sorted(pd.read_parquet(paths.PREPARED_TABLE)["row_id"])
    assert sorted(row for ids in first.values() for row in ids) == every  # each row once
    for name in paths.SPLIT_NAMES:
        written = pd.read_parquet(paths.split_table(name))
        counts = written["target"].value_counts().to_dict()
        assert sum(counts.values()) == hashed[name]["rows"]
    # The same table in other partitions: the same rows in each split.
    table = io.read_table(paths.PREPARED_TABLE)
    monkeypatch.setattr(io, "ROW_GROUP_ROWS", 170)
    with io.ShardWriter(paths.PREPARED_TABLE) as writer:
        writer.write(table)
    assert len(io.partitions(paths.PREPARED_TABLE)) == -(-len(table) // 170) == 7
    run_stages("split")
    assert split_ids() == first
    # Another seed, another split.
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["dataset"]["seed"] += 1
    Path("params.yaml").write_text(yaml.safe_dump(params))
    run_stages("split")
    assert split_ids() != first


def test_the_hash_split_stratifies_a_numeric_target_on_its_deciles():
    import numpy as np

    from stages.data import hashsplit

    rng = np.random.default_rng(0)
    target = rng.lognormal(size=20_000)
    edges = hashsplit.regression_edges(target[:5_000], validation=0.1, test=0.2)
    assert len(edges) == 9
    strata = hashsplit.Strata(edges=edges)
    keys = hashsplit.row_keys(np.arange(20_000), seed=3)
    histogram = np.zeros((strata.count, 1 << hashsplit.BITS), dtype=np.int64)
    np.add.at(histogram, (strata.of(target), (keys >> hashsplit.SHIFT).astype(np.int64)), 1)
    places = hashsplit.thresholds(histogram, validation=0.1, test=0.2, stratify=True)
    bins = (keys >> hashsplit.SHIFT).astype(np.int64)
    found = {(s, b): keys[(strata.of(target) == s) & (bins == b)] for s, b, _ in places}
    cuts = hashsplit.cut_keys(places, found, strata.count)
    frame = pd.DataFrame({"row_id": np.arange(20_000), "target": target})
    codes = hashsplit.HashAssigner(3, strata, cuts).codes(frame)
    for stratum in range(strata.count):  # each decile split 70 / 10 / 20, to a row
        inside = codes[strata.of(target) == stratum]
        n = len(inside)
        assert (inside == 2).sum() == round(0.2 * n) and (inside == 1).sum() == round(0.1 * n)


def test_an_unreachable_cluster_is_a_clear_error_and_writes_nothing(project, monkeypatch):
    from stages.common import engine

    run_stages("collect")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", "2s")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:1: cannot reach the Dask scheduler" in (
        result.output
    )
    assert not Path(paths.VALIDATED_TABLE).exists()


def test_a_large_test_split_is_judged_in_one_pass_as_the_whole_split_is(project, monkeypatch):
    """baselines and evaluate on a test split past EXACT_ROWS (here 100 rows, in partitions
    of 100) add up per partition what they compute on the whole split: the same decisions,
    metrics, slices and files; ROC AUC and the curves from score histograms, within a
    hair."""
    import numpy as np

    from stages import baselines, evaluate

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"]["epochs"] = 2
    params["evaluate"].update(slices=["age", "workclass"], resamples=200, interval_rows=1000)
    params["evaluate"]["gates"] = {}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(io, "ROW_GROUP_ROWS", 100)
    run_stages(*DATA_STAGES, "baselines", "train", "evaluate")
    assert len(io.partitions(paths.split_table("test"))) > 1
    names = ["metrics", "intervals", "slices", "calibration"]
    whole = {name: json.loads(Path(f"reports/evaluate/{name}.json").read_text()) for name in names}
    whole_rows = pd.read_parquet(paths.EVALUATE_PREDICTIONS)
    whole_plots = {
        name: pd.read_csv(f"reports/evaluate/plots/{name}.csv")
        for name in ("confusion", "calibration", "roc", "importance")
    }
    whole_baselines = json.loads(Path(paths.BASELINES_METRICS).read_text())
    baseline_rows = pd.read_parquet(paths.BASELINES_PREDICTIONS)
    monkeypatch.setattr(baselines, "EXACT_ROWS", 100)
    run_stages("baselines")
    pd.testing.assert_frame_equal(pd.read_parquet(paths.BASELINES_PREDICTIONS), baseline_rows)
    for name, scores in json.loads(Path(paths.BASELINES_METRICS).read_text()).items():
        assert scores == pytest.approx(whole_baselines[name], abs=1e-3), name
    monkeypatch.setattr(evaluate, "EXACT_ROWS", 100)
    judged = []
    judge = evaluate.judge_streamed
    monkeypatch.setattr(
        evaluate, "judge_streamed", lambda *args, **kw: judged.append(1) or judge(*args, **kw)
    )
    said = run_stages("evaluate")
    assert judged == [1]
    streamed = {
        name: json.loads(Path(f"reports/evaluate/{name}.json").read_text()) for name in names
    }
    pd.testing.assert_frame_equal(pd.read_parquet(paths.EVALUATE_PREDICTIONS), whole_rows)
    pd.testing.assert_frame_equal(
        pd.read_csv("reports/evaluate/plots/confusion.csv"), whole_plots["confusion"]
    )
    pd.testing.assert_frame_equal(
        pd.read_csv("reports/evaluate/plots/importance.csv"), whole_plots["importance"]
    )
    auc = whole["metrics"].pop("roc_auc")
    assert abs(streamed["metrics"].pop("roc_auc") - auc) < 1e-3
    for metric, value in whole["metrics"].items():
        assert streamed["metrics"][metric] == pytest.approx(value, abs=2e-6), metric
    assert streamed["slices"] == whole["slices"]  # every sampled row: the same groups
    assert streamed["calibration"] == whole["calibration"]
    for name in ("model", "baselines"):
        flat = pd.json_normalize(whole["intervals"][name]).iloc[0]
        again = pd.json_normalize(streamed["intervals"][name]).iloc[0]
        assert np.allclose(np.stack(again.to_numpy()), np.stack(flat.to_numpy()), atol=1e-3)
    roc = pd.read_csv("reports/evaluate/plots/roc.csv")
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    assert (roc[["fpr", "tpr"]].iloc[-1] == 1.0).all()
    assert "test rows" in said and Path(paths.REPORT).exists()
