"""The benchmark command's quick mode runs and reports every figure."""

import json
import subprocess
import sys

import pytest

from .conftest import REPO, STAGES

pytestmark = pytest.mark.slow


def test_quick_benchmarks_report_every_figure(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "quick"
    overhead = results["overhead"][0]
    assert overhead["pipeline_s"] > 0 and overhead["script_s"] > 0
    assert overhead["ratio"] == pytest.approx(
        overhead["pipeline_s"] / overhead["script_s"], rel=0.05
    )
    assert set(overhead["stage_s"]) == set(STAGES)
    # A changed learning rate re-runs train and evaluate only.
    assert overhead["param_change_reran"] == ["evaluate", "train"]
    assert overhead["param_change_s"] > 0 and overhead["param_change_ratio"] > 0
    assert results["noop"]["noop_repro_s"] > 0 and results["noop"]["help_s"] > 0
    stages = results["data_stages"][0]["stages"]
    assert set(stages) == {"collect", "validate", "prepare", "split"}
    assert all(row["peak_mb"] > 0 and row["rows_per_s"] > 0 for row in stages.values())
    assert results["training_input"]["ratio"] > 0
    assert "| overhead | pipeline s |" in result.stdout
