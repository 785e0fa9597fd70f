"""Bring your own data on real tables: each table of the corpus (benchmarks/corpus.py), each
with its own kind of mess, goes through the README's two commands
(`infer-schema --update-params`, then `dvc repro`) with the params infer-schema fits, gates
included, and every output is written. Large tables are shrunk to a few thousand rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.corpus import CORPUS, project_copy, run_table

pytestmark = pytest.mark.slow
MAX_ROWS = 4000
OUTPUTS = (
    "models/model.keras",
    "reports/evaluate/metrics.json",
    "reports/evaluate/verdict.json",
    "reports/report.md",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """Every table through the two commands, each in its own copy of the project."""
    out = {}
    for table in CORPUS:
        repo = project_copy(tmp_path_factory.mktemp(table.name) / "repo")
        out[table.name] = (run_table(table, repo, max_rows=MAX_ROWS), repo)
    return out


@pytest.mark.parametrize("name", [table.name for table in CORPUS])
def test_the_two_commands_succeed_with_the_fitted_gates(results, name):
    result, repo = results[name]
    assert result["ok"], result.get("repro_output") or result["infer_output"]
    for output in OUTPUTS:
        assert (repo / output).is_file(), output
    verdict = json.loads((repo / "reports/evaluate/verdict.json").read_text())
    assert verdict["passed"] and verdict["gates"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["evaluate"]["gates"]["minimum"] == {}  # no absolute thresholds from Adult
    print(f"{name}: {result['score']} {result['network']:.4f} vs gbm {result['gbm']:.4f}")


def schema_of(results, name: str) -> dict:
    _, repo = results[name]
    return yaml.safe_load((repo / f"schemas/{name}.yaml").read_text())


def test_flights_uses_its_many_valued_categories_and_its_timestamp(results):
    schema = schema_of(results, "flights")
    assert {"tailnum", "dest"} <= set(schema["metadata"]["embedded_categories"])
    assert schema["columns"]["time_hour"]["dtype"] == "datetime64[ns]"
    _, repo = results["flights"]
    prepared = json.loads((repo / "reports/prepare/report.json").read_text())
    assert prepared["unlabelled_dropped"] > 0  # cancelled flights: counted, not a failure
    assert prepared["feature_kinds"]["embedded"] == 2 and prepared["feature_kinds"]["datetime"] == 1
    training = json.loads((repo / "reports/train/report.json").read_text())
    assert training["embedded_categories"]["tailnum"] > 50


def test_wage_leak_is_set_aside_and_reported_by_train(results):
    schema = schema_of(results, "wage")
    assert schema["metadata"]["non_features"]["logwage"].startswith("suspected target leak")
    result, repo = results["wage"]
    assert "WARNING: not a feature: 'logwage'" in result["infer_output"]
    training = json.loads((repo / "reports/train/report.json").read_text())
    assert "logwage" in training["suspected_leaks_excluded"]
    assert "warning: column 'logwage'" in result["repro_output"]


def test_titanic_names_with_spaces_and_accents_a_bom_and_crlf(results):
    schema = schema_of(results, "titanic")
    assert "Klasse (Überfahrt)" in schema["columns"]
    assert "identifier" in schema["metadata"]["non_features"]["Passagier Name"]
    _, repo = results["titanic"]
    raw = pd.read_parquet(repo / "data/raw/table.parquet")
    assert raw.columns[0] == "survived"  # no byte-order mark glued to the first name


def test_no_table_leaks_a_traceback(results):
    for name, (result, _) in results.items():
        output = result["infer_output"] + result.get("repro_output", "")
        assert "Traceback" not in output, name


def test_the_files_people_send_are_read_as_meant(results):
    """A European CSV's numbers and day-first dates, a whole-number score as a quantity, a
    post-outcome column kept out, a table of categories whose repeats are observations."""
    weather = schema_of(results, "weather")
    assert weather["columns"]["date"]["dtype"] == "datetime64[ns]"
    assert weather["metadata"]["date_formats"] == {"date": "%d.%m.%Y"}
    assert weather["columns"]["avg_hg"]["dtype"] == "float64"
    inspections = schema_of(results, "inspections")
    assert "isin" not in (inspections["columns"]["inspection_score"].get("checks") or {})
    _, repo = results["inspections"]
    assert "r2" in json.loads((repo / "reports/evaluate/metrics.json").read_text())
    crashes = schema_of(results, "crashes")
    assert crashes["metadata"]["non_features"]["injSeverity"].startswith("suspected target leak")
    _, repo = results["passengers"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["prepare"]["drop_duplicates"] is False
    cancer = schema_of(results, "cancer")
    assert "mean.radius" in cancer["columns"]
