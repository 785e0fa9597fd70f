"""End to end: `dvc repro` in a temporary copy of the repository, on shrunken params."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import STAGES
from .helpers import run, shrunk_copy, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = shrunk_copy(tmp_path_factory.mktemp("pipeline") / "repo")
    # A threshold other than 0.5, so that deciding at it can be told from deciding at 0.5.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["threshold"].update(rule="fixed", value=0.4)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "threshold 0.4"], repo)
    return repo


@pytest.fixture(scope="module")
def first_repro(repo: Path) -> subprocess.CompletedProcess:
    return run(["dvc", "repro"], repo)


def test_repro_runs_every_stage_and_writes_every_output(repo: Path, first_repro):
    assert stages_run(first_repro.stdout) == STAGES
    assert "collect: 400 rows x 15 columns" in first_repro.stdout
    assert json.loads((repo / "reports/collect/report.json").read_text())["rows"] == 400
    assert json.loads((repo / "reports/validate/report.json").read_text())["valid"] is True

    splits = {
        n: pd.read_parquet(repo / f"data/split/{n}.parquet")
        for n in ("train", "validation", "test")
    }
    ids = [set(frame["row_id"]) for frame in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert (
        sum(map(len, ids))
        == json.loads((repo / "reports/prepare/report.json").read_text())["rows_out"]
    )

    train_report = json.loads((repo / "reports/train/report.json").read_text())
    assert train_report["epochs_run"] == 2
    assert train_report["seed"] == 42
    eval_loss = (repo / "reports/train/plots/metrics/eval/loss.tsv").read_text().splitlines()
    assert eval_loss[0] == "step\tloss" and len(eval_loss) == 3

    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert metrics["test_rows"] == len(splits["test"])
    # 2 epochs on 240 rows already rank most test rows right (majority-class accuracy: 0.76)
    assert 0.7 < metrics["roc_auc"] <= 1 and 0.7 < metrics["accuracy"] <= 1
    assert 0 < metrics["threshold"] < 1 and "calibration_error" in metrics
    baselines = json.loads((repo / "reports/baselines/metrics.json").read_text())
    assert set(baselines) == {"majority", "logistic", "hist_gradient_boosting"}
    intervals = json.loads((repo / "reports/evaluate/intervals.json").read_text())
    for name, (low, high) in intervals["model"].items():
        # The binned calibration error is not a smooth statistic: on 80 test rows its
        # percentile interval need not hold the value on every row.
        if name != "calibration_error":
            assert low <= metrics[name] <= high, name
    assert set(intervals["difference"]) == set(baselines)
    slices = json.loads((repo / "reports/evaluate/slices.json").read_text())
    assert list(slices) == ["sex", "race"]
    assert sum(group["rows"] for group in slices["sex"]["groups"]) == metrics["test_rows"]
    calibration = json.loads((repo / "reports/evaluate/calibration.json").read_text())
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    assert calibration["threshold"]["rule"] == "fixed"
    verdict = json.loads((repo / "reports/evaluate/verdict.json").read_text())
    assert verdict["passed"] is True and verdict["gates"][0]["metric"] == "accuracy"
    predictions = pd.read_parquet(repo / "reports/evaluate/predictions.parquet")
    assert predictions["row_id"].tolist() == splits["test"]["row_id"].tolist()
    for name in ("confusion", "roc", "precision_recall", "calibration", "importance"):
        assert (repo / f"reports/evaluate/plots/{name}.csv").stat().st_size > 0
    importance = pd.read_csv(repo / "reports/evaluate/plots/importance.csv")
    assert len(importance) == 14 and importance["importance"].is_monotonic_decreasing
    assert (repo / "models/model.keras").stat().st_size > 0
    report = (repo / "reports/report.md").read_text()
    assert report.split("\n")[2].startswith("On ")  # the conclusion opens the report
    assert "## Test metrics against baselines" in report and "| accuracy |" in report
    figures = [
        "training_curves",
        "confusion",
        "roc_pr",
        "calibration",
        "importance",
        "slices",
    ]
    for name in figures:
        png = repo / f"reports/evaluate/figures/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](evaluate/figures/{name}.png)" in report, name
    assert not list(repo.rglob(".tmp-*"))  # no partial file left behind


def test_second_repro_runs_nothing(repo: Path, first_repro):
    second = run(["dvc", "repro"], repo)
    assert stages_run(second.stdout) == []
    assert "Data and pipelines are up to date" in second.stdout


def test_metrics_and_plots_show(repo: Path, first_repro):
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    (workspace,) = metrics.values()
    files = workspace["data"]
    assert set(files) == {"reports/evaluate/metrics.json"}  # the model's test metrics alone
    assert "roc_auc" in files["reports/evaluate/metrics.json"]["data"]
    table = run(["dvc", "metrics", "show"], repo).stdout
    assert max(len(line) for line in table.splitlines()) < 200  # read at a glance
    baselines = run(["dvc", "metrics", "show", "reports/baselines/metrics.json"], repo).stdout
    assert "hist_gradient_boosting.accuracy" in baselines
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)
    assert {"loss", "accuracy", "confusion", "roc", "importance"} <= set(plots["data"])


def test_metrics_files_are_in_git_and_the_model_is_an_artifact(repo: Path, first_repro, tmp_path):
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout
    kept = [f"reports/evaluate/{name}.json" for name in ("metrics", "intervals", "slices")]
    kept += ["reports/evaluate/calibration.json", "reports/baselines/metrics.json"]
    for name in kept:
        assert name in status, name  # not ignored: git keeps it
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "trained"], repo)
    run(["git", "tag", "-a", "model@v1.0.0", "-m", "first model"], repo)
    target = tmp_path / "fetched.keras"
    run(["dvc", "artifacts", "get", str(repo), "model", "--rev", "v1.0.0", "-o", str(target)], repo)
    assert target.read_bytes() == (repo / "models/model.keras").read_bytes()


def test_training_again_reproduces_the_same_model_byte_for_byte(repo: Path, first_repro):
    lock = (repo / "dvc.lock").read_text()
    forced = run(["dvc", "repro", "--force", "--single-item", "train"], repo)
    assert stages_run(forced.stdout) == ["train"]
    assert (repo / "dvc.lock").read_text() == lock
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo).stdout


def test_predict_on_the_raw_test_rows_equals_evaluate(repo: Path, first_repro):
    from stages.common.config import load_params
    from stages.data.encoding import EncodingSpec
    from stages.data.schema import load_schema
    from stages.data.sources import read_source
    from stages.data.transform import clean_frame, encode_features
    from stages.data.validation import validate_frame
    from stages.model.predictor import feature_schema

    evaluated = pd.read_parquet(repo / "reports/evaluate/predictions.parquet")
    raw_lines = (repo / "data/adult.data").read_text().splitlines()
    # The raw test rows as a user would have them: same format, label column removed.
    lines = [raw_lines[row].rsplit(",", 1)[0] for row in evaluated["row_id"]]
    (repo / "new_rows.data").write_text("\n".join(lines) + "\n")
    run([sys.executable, "-m", "stages", "predict", "new_rows.data", "--output", "out.csv"], repo)
    predicted = pd.read_csv(repo / "out.csv")
    assert predicted["row"].tolist() == list(range(len(evaluated)))
    assert predicted["error"].isna().all()
    assert predicted["predicted"].tolist() == evaluated["predicted"].tolist()
    # Neither evaluate nor predict starts TensorFlow: the network runs on numpy.
    command = (
        "import runpy, sys\n"
        "sys.argv = ['stages', 'predict', 'new_rows.data', '--output', 'again.csv']\n"
        "try:\n    runpy.run_module('stages', run_name='__main__')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        "print('tensorflow' in sys.modules)\n"
    )
    assert run([sys.executable, "-c", command], repo).stdout.splitlines()[-1] == "False"
    # Both decide at the model's stored threshold (0.4 here), not at 0.5.
    from stages.model.files import load_model
    from stages.model.head import decision_threshold

    threshold = decision_threshold(load_model(repo / "models/network.keras"))
    assert threshold != 0.5
    at_threshold = np.where(predicted["probability_>50K"] >= threshold, ">50K", "<=50K")
    assert predicted["predicted"].tolist() == at_threshold.tolist()
    for column in ("probability_<=50K", "probability_>50K"):
        np.testing.assert_allclose(predicted[column], evaluated[column], rtol=1e-6, atol=1e-7)

    # Encodings at predict time equal the training-time encodings, row for row.
    params = load_params(repo / "params.yaml")
    spec = EncodingSpec.load(repo / "data/prepared/encoding.json")
    collect = params.collect.model_copy(
        update={"source": str(repo / "new_rows.data"), "names": params.collect.names[:-1]}
    )
    schema = feature_schema(load_schema(repo / params.dataset.schema_path), target=spec.target)
    clean = clean_frame(
        read_source(params=collect), missing_tokens=params.prepare.missing_tokens, schema=schema
    )
    validated, cases = validate_frame(clean, schema=schema)
    assert cases.empty
    at_predict = encode_features(validated, spec=spec)
    prepared = pd.read_parquet(repo / "data/prepared/table.parquet").set_index("row_id")
    at_training = prepared.loc[evaluated["row_id"], spec.table_columns]
    np.testing.assert_array_equal(at_predict.to_numpy(), at_training.to_numpy())


def test_load_model_the_saved_model_and_predict_agree_on_raw_rows(repo: Path, first_repro):
    """models/model.keras takes raw columns: keras.models.load_model on it, the SavedModel
    `stages export` writes, and `stages predict` give the same probabilities."""
    import keras
    import tensorflow as tf

    import stages.serving
    from stages.common.config import load_params
    from stages.data.encoding import EncodingSpec
    from stages.data.sources import read_source
    from stages.model.head import decision_threshold

    lines = (repo / "data/adult.data").read_text().splitlines()[:300]
    lines = [line.rsplit(",", 1)[0].replace(" Private,", " Privateer,") for line in lines]
    (repo / "raw_rows.data").write_text("\n".join(lines) + "\n")
    run([sys.executable, "-m", "stages", "predict", "raw_rows.data", "--output", "raw.csv"], repo)
    by_predict = pd.read_csv(repo / "raw.csv")["probability_>50K"].to_numpy()
    assert pd.read_csv(repo / "raw.csv")["warning"].str.contains("Privateer").sum() > 100

    run([sys.executable, "-m", "stages", "export", "--output", "models/saved_model"], repo)
    params = load_params(repo / "params.yaml")
    collect = params.collect.model_copy(
        update={"source": str(repo / "raw_rows.data"), "names": params.collect.names[:-1]}
    )
    spec = EncodingSpec.load(repo / "data/prepared/encoding.json")
    inputs = stages.serving.raw_inputs(read_source(params=collect), spec)
    loaded = keras.models.load_model(repo / "models/model.keras")  # safe mode
    by_keras = loaded.predict(inputs, verbose=0)[:, 0]
    saved = tf.saved_model.load(str(repo / "models/saved_model"))
    by_saved_model = np.asarray(saved.serve(inputs))[:, 0]
    # predict runs the network on Keras's numpy backend: equal to float32 rounding.
    np.testing.assert_allclose(by_keras, by_predict, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_saved_model, by_predict, rtol=1e-5, atol=1e-6)
    # The raw-column model carries the decision threshold predict applies.
    threshold = decision_threshold(loaded)
    reported = json.loads((repo / "reports/evaluate/metrics.json").read_text())["threshold"]
    assert round(threshold, 6) == reported
    predicted = pd.read_csv(repo / "raw.csv")["predicted"]
    assert (predicted == np.where(by_predict >= threshold, ">50K", "<=50K")).all()
    drift = json.loads((repo / "raw.drift.json").read_text())
    assert drift["columns"]["workclass"]["unseen_batch"] > 0.3


def test_changing_train_params_reruns_only_train_and_evaluate(repo: Path, first_repro):
    before = json.loads((repo / "reports/split/report.json").read_text())
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["epochs"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = run(["dvc", "repro"], repo)
    assert stages_run(rerun.stdout) == ["train", "evaluate"]
    assert json.loads((repo / "reports/train/report.json").read_text())["epochs_run"] == 3
    assert json.loads((repo / "reports/split/report.json").read_text()) == before


def test_predict_reads_new_rows_on_their_own_terms(repo: Path, first_repro):
    """New rows come as people export them, whatever the training source looked like: a
    CSV with a header (columns shuffled, no leading spaces), Parquet, a JSON array, JSON
    Lines and an Excel workbook all give the predictions of the headerless original, read
    over several batches."""
    from stages.common.config import load_params
    from stages.data.sources import read_source

    params = load_params(repo / "params.yaml")
    raw = read_source(
        params=params.collect.model_copy(update={"source": str(repo / "data/adult.data")})
    )
    rows = raw.drop(columns=["income"]).head(300)
    lines = (repo / "data/adult.data").read_text().splitlines()[:300]
    (repo / "plain.data").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    batches = ["--batch-rows", "120"]
    run(
        [
            sys.executable,
            "-m",
            "stages",
            "predict",
            "plain.data",
            "--output",
            "plain.csv",
            *batches,
        ],
        repo,
    )
    expected = pd.read_csv(repo / "plain.csv")
    shuffled = rows[list(reversed(rows.columns))]
    shuffled.to_csv(repo / "headed.csv", index=False)
    shuffled.to_parquet(repo / "rows.parquet")
    shuffled.to_json(repo / "rows.json", orient="records")
    shuffled.to_json(repo / "rows.jsonl", orient="records", lines=True)
    shuffled.to_excel(repo / "rows.xlsx", index=False)
    for name in ("headed.csv", "rows.parquet", "rows.json", "rows.jsonl", "rows.xlsx"):
        out = f"{name}.out.csv"
        run([sys.executable, "-m", "stages", "predict", name, "--output", out, *batches], repo)
        got = pd.read_csv(repo / out)
        assert got["error"].isna().all(), (name, got["error"].dropna().head())
        assert got["predicted"].tolist() == expected["predicted"].tolist(), name
        np.testing.assert_allclose(got["probability_>50K"], expected["probability_>50K"], rtol=1e-6)
    # A folder of shards in, a folder of shards out: one per input shard, rows numbered on.
    (repo / "rows_in").mkdir()
    for index, start in enumerate((0, 100, 200)):
        shuffled.iloc[start : start + 100].to_parquet(repo / f"rows_in/part-{index:05d}.parquet")
    run([sys.executable, "-m", "stages", "predict", "rows_in", "--output", "rows_out"], repo)
    shards = sorted((repo / "rows_out").iterdir())
    assert [shard.name for shard in shards] == [f"part-{i:05d}.parquet" for i in range(3)]
    got = pd.read_parquet(repo / "rows_out")
    assert got["row"].tolist() == list(range(300))
    assert got["predicted"].tolist() == expected["predicted"].tolist()
    # A header can be forced either way: read as data, the header line is refused.
    forced = subprocess.run(
        [
            *[sys.executable, "-m", "stages", "predict", "headed.csv"],
            "--no-header",
            "--output",
            "f.csv",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert forced.returncode != 0 and "headed.csv" in forced.stderr + forced.stdout
    assert "the first line was read as data: --header" in forced.stderr + forced.stdout
    assert not (repo / "f.csv").exists()


def test_the_documented_python_snippets_run(repo: Path, first_repro):
    """Every ```python block of the README and the docs runs in the trained project (with
    `new_rows.csv`: raw rows with a header, as the snippets read them)."""
    from stages.common.config import load_params
    from stages.data.sources import read_source

    from .test_docs import SERVER_URL, python_snippets

    params = load_params(repo / "params.yaml")
    raw = read_source(
        params=params.collect.model_copy(update={"source": str(repo / "data/adult.data")})
    )
    raw.drop(columns=["income"]).head(50).to_csv(repo / "new_rows.csv", index=False)
    snippets = [(path, code) for path, code in python_snippets() if SERVER_URL not in code]
    assert snippets
    for path, code in snippets:  # those that call a server run in tests/tools/test_serve.py
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True
        )
        assert done.returncode == 0, (path.name, done.stderr[-2000:])


def test_predict_skips_or_refuses_invalid_rows_and_warns_of_drift(repo: Path, first_repro):
    """Over several batches: `skip` writes an invalid row's reason in its place, `fail`
    stops naming it and writes nothing; shifted ages are named as drift; export writes
    over an existing folder."""
    lines = [
        line.rsplit(",", 1)[0] for line in (repo / "data/adult.data").read_text().split("\n")[:300]
    ]
    bad = list(lines)
    fields = bad[150].split(",")
    fields[0] = "150"  # outside the schema's range
    bad[150] = ",".join(fields)
    (repo / "bad.data").write_text("\n".join(bad) + "\n")
    predict = [sys.executable, "-m", "stages", "predict", "bad.data", "--batch-rows", "120"]
    out = run([*predict, "--output", "skip.csv"], repo)
    skipped = pd.read_csv(repo / "skip.csv")
    assert len(skipped) == 300 and "age" in skipped.loc[150, "error"]
    assert pd.isna(skipped.loc[150, "predicted"]) and skipped["error"].notna().sum() == 1
    refused = subprocess.run(
        [*predict, "--output", "fail.csv", "--on-invalid", "fail"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "age" in refused.stderr
    assert "Traceback" not in refused.stderr and not (repo / "fail.csv").exists()

    older = []
    for line in lines:
        fields = line.split(",")
        fields[0] = str(int(fields[0]) + 40)
        older.append(",".join(fields))
    (repo / "older.data").write_text("\n".join(older) + "\n")
    out = run([sys.executable, "-m", "stages", "predict", "older.data", "--output", "o.csv"], repo)
    assert "warning: column 'age' drifted from the train split" in out.stdout
    assert json.loads((repo / "o.drift.json").read_text())["drifted"] == ["age"]

    for _ in range(2):  # the second export replaces the first
        run([sys.executable, "-m", "stages", "export", "--output", "exported"], repo)
    assert (repo / "exported/saved_model.pb").exists()


def test_the_baselines_stage_tunes_boosting_on_the_validation_split(
    repo: Path, first_repro, tmp_path
):
    """tuned_gradient_boosting, run on a copy of the split: its study's choice in
    tuning.json, its test metrics beside the others."""
    for name in ("params.yaml", "data/prepared/encoding.json", *[
        f"data/split/{split}.parquet" for split in ("train", "validation", "test")
    ]):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if (repo / name).is_dir():  # a table: a folder of shards
            shutil.copytree(repo / name, tmp_path / name)
        else:
            (tmp_path / name).write_bytes((repo / name).read_bytes())
    done = run(
        [
            *[sys.executable, "-m", "stages", "baselines"],
            *["--baselines", "majority,tuned_gradient_boosting", "--baseline-trials", "3"],
        ],
        tmp_path,
    )
    assert "tuned_gradient_boosting: 3 trials on the validation split" in done.stdout
    tuning = json.loads((tmp_path / "reports/baselines/tuning.json").read_text())
    assert tuning["trials"] == 3 and set(tuning["params"]) == {
        "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization", "max_features"
    }  # fmt: skip
    metrics = json.loads((tmp_path / "reports/baselines/metrics.json").read_text())
    assert set(metrics) == {"majority", "tuned_gradient_boosting"}
    assert 0 <= metrics["tuned_gradient_boosting"]["accuracy"] <= 1
