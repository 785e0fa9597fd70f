import subprocess
import sys
from pathlib import Path

import pytest

from stages.common.errors import PipelineError
from stages.tools.compare import compare_metrics

from ..helpers import run

BASE = {"accuracy": 0.86, "log_loss": 0.30, "baseline": {"logistic": {"accuracy": 0.85}}}


def test_compare_flags_only_regressions_beyond_the_tolerance():
    current = {"accuracy": 0.845, "log_loss": 0.305, "baseline": {"logistic": {"accuracy": 0.9}}}
    rows = compare_metrics(
        BASE, current, names=["accuracy", "log_loss", "baseline.logistic.accuracy"], tolerance=0.01
    )
    assert [(row["metric"], row["regressed"]) for row in rows] == [
        ("accuracy", True),  # 0.015 worse
        ("log_loss", False),  # 0.005 worse: within tolerance
        ("baseline.logistic.accuracy", False),  # better
    ]
    assert rows[0]["change"] == pytest.approx(-0.015)
    worse_loss = compare_metrics(
        BASE, {**BASE, "log_loss": 0.32}, names=["log_loss"], tolerance=0.01
    )
    assert worse_loss[0]["regressed"] is True  # lower log loss is better


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(PipelineError, match="metric 'roc_auc' is not in the metrics at the base"):
        compare_metrics(BASE, BASE, names=["roc_auc"], tolerance=0)


SCORE_STAGE = """stages:
  score:
    cmd: python score.py
    deps: [score.py]
    params: [accuracy]
    metrics: [metrics.json]
"""
SCORE_SCRIPT = """import json, yaml
accuracy = yaml.safe_load(open("params.yaml"))["accuracy"]
json.dump({"accuracy": accuracy}, open("metrics.json", "w"))
"""


@pytest.mark.slow
def test_compare_command_fails_on_a_made_up_regression(tmp_path: Path):
    """A DVC-tracked metrics file at a git revision against the workspace's."""
    (tmp_path / "dvc.yaml").write_text(SCORE_STAGE)
    (tmp_path / "score.py").write_text(SCORE_SCRIPT)
    (tmp_path / "params.yaml").write_text("accuracy: 0.86\n")
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["dvc", "repro", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "base"], tmp_path)

    def compare(accuracy: float) -> subprocess.CompletedProcess:
        (tmp_path / "params.yaml").write_text(f"accuracy: {accuracy}\n")
        run(["dvc", "repro", "-q"], tmp_path)
        command = [sys.executable, "-m", "stages", "compare", "--rev", "HEAD"]
        command += ["--metric", "accuracy", "--tolerance", "0.01", "--target", "metrics.json"]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)

    regressed = compare(0.84)
    assert regressed.returncode == 1
    assert "accuracy: 0.86 at HEAD -> 0.84 now (-0.02) REGRESSED" in regressed.stdout
    assert "error: accuracy regressed against HEAD by more than 0.01" in regressed.stderr
    within = compare(0.855)
    assert within.returncode == 0, within.stderr
    assert "accuracy: 0.86 at HEAD -> 0.855 now (-0.005) ok" in within.stdout


@pytest.mark.slow
def test_compare_names_a_revision_or_a_file_it_cannot_read(tmp_path: Path):
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9}')
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "base"], tmp_path)
    base = [sys.executable, "-m", "stages", "compare", "--metric", "accuracy"]
    no_rev = subprocess.run(
        [*base, "--rev", "no-such-branch", "--target", "metrics.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert no_rev.returncode == 1 and "no-such-branch" in no_rev.stderr
    assert "Traceback" not in no_rev.stderr
    no_file = subprocess.run(
        [*base, "--rev", "HEAD", "--target", "missing.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert no_file.returncode == 1 and "missing.json" in no_file.stderr
    assert "Traceback" not in no_file.stderr
