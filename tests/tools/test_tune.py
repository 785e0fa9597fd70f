"""`stages tune`: the search space's checks, and a seeded study on a small table that
writes its results, applies the best params, resumes after a kill exactly, and never
reads the test split."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.common.config import SearchDimension, TuneParams, parse_params
from stages.common.errors import PipelineError
from stages.tools.tune import check_space, suggest

from ..conftest import REPO
from ..helpers import run, shrunk_copy

SMALL_SPACE = {
    "learning_rate": {"kind": "float", "low": 0.001, "high": 0.02, "log": True},
    "dropout": {"kind": "float", "low": 0.0, "high": 0.3, "or_zero": True},
    "hidden_layers": {"kind": "int", "low": 1, "high": 2},
    "hidden_width": {"kind": "int", "low": 16, "high": 64, "step": 16},
}


def test_a_key_that_is_not_a_train_key_is_refused():
    space = TuneParams(space={"learnin_rate": SMALL_SPACE["learning_rate"]}).space
    with pytest.raises(PipelineError, match="learnin_rate not a train key"):
        check_space(space)
    with pytest.raises(PipelineError, match="hidden_layers needs"):
        check_space(TuneParams(space={"hidden_layers": SMALL_SPACE["hidden_layers"]}).space)


@pytest.mark.parametrize(
    ("dimension", "says"),
    [
        ({"low": 0.1, "high": 0.1}, "empty range: low 0.1 is not below high 0.1"),
        ({"low": 0.0, "high": 1.0, "log": True}, "log-scaled range needs low > 0"),
        ({"kind": "int", "low": 1.5, "high": 4}, "whole"),
        ({"kind": "choice", "choices": []}, "non-empty"),
        ({"kind": "float", "low": 1}, "needs `low` and `high`"),
    ],
)
def test_an_empty_or_malformed_range_names_its_key(dimension, says):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tune"]["space"] = {"dropout": dimension}
    with pytest.raises(PipelineError) as caught:
        parse_params(raw)
    detail = " ".join(caught.value.details)
    assert "tune.space.dropout" in detail and says in detail


def test_the_shipped_space_is_tabms_on_train_keys():
    space = TuneParams().space
    check_space(space)
    assert space["learning_rate"] == SearchDimension(kind="float", low=1e-4, high=3e-3, log=True)
    assert space["hidden_width"].step == 16 and space["periodic_scale"].log


def test_a_trial_draws_train_params_and_hidden_units_from_layers_and_width():
    import optuna

    space = TuneParams(space=SMALL_SPACE).space
    trial = optuna.trial.FixedTrial(
        {"learning_rate": 0.005, "dropout?": False, "hidden_layers": 2, "hidden_width": 32}
    )
    assert suggest(trial, space) == {
        "learning_rate": 0.005,
        "dropout": 0,
        "hidden_units": [32, 32],
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A shrunk project split (never trained), with a small space and 2 epochs a trial;
    its test split removed, so that a trial that read it would fail."""
    repo = shrunk_copy(tmp_path_factory.mktemp("tune") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tune"].update(space=SMALL_SPACE, startup_trials=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "small space"], repo)
    run(["dvc", "repro", "split"], repo)
    shutil.rmtree(repo / "data/split/test.parquet")
    return repo


def tune(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "stages", "tune", *args], repo)


def drawn(repo: Path) -> list[dict]:
    """The finished trials' params, in order."""
    table = pd.read_csv(repo / "reports/tune/trials.csv")
    finished = table[table["state"].isin(["complete", "pruned"])]
    return finished.drop(columns=["number", "state", "seconds"]).to_dict("records")


def fresh(repo: Path) -> None:
    shutil.rmtree(repo / ".tune", ignore_errors=True)
    shutil.rmtree(repo / "reports/tune", ignore_errors=True)


@pytest.mark.slow
def test_tune_writes_its_results_without_the_test_split_and_applies_the_best(repo):
    fresh(repo)
    shipped = (repo / "params.yaml").read_text()
    result = tune(repo, "--trials", "3", "--apply")
    lines = [line for line in result.stdout.splitlines() if line.startswith("tune: trial ")]
    assert len(lines) == 3 and all("accuracy" in line or "pruned" in line for line in lines)
    table = pd.read_csv(repo / "reports/tune/trials.csv")
    assert list(table["number"]) == [0, 1, 2]
    assert {"value", "epochs", "seconds", "learning_rate", "hidden_units"} <= set(table.columns)
    best = yaml.safe_load((repo / "reports/tune/best.yaml").read_text())
    assert best["metric"] == "validation accuracy"
    assert best["value"] == pytest.approx(table["value"].max(), abs=1e-6)
    assert (repo / "reports/tune/history.png").stat().st_size > 0
    assert "test split was not read" in (repo / "reports/tune/report.md").read_text()
    applied = yaml.safe_load((repo / "params.yaml").read_text())
    before = yaml.safe_load(shipped)
    assert applied["train"] == {**before["train"], **best["train"]}
    assert {key: value for key, value in applied.items() if key != "train"} == {
        key: value for key, value in before.items() if key != "train"
    }
    (repo / "params.yaml").write_text(shipped)


@pytest.mark.slow
def test_a_killed_study_resumes_and_draws_what_an_unbroken_one_draws(repo):
    fresh(repo)
    tune(repo, "--trials", "4")
    unbroken = drawn(repo)
    fresh(repo)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stages", "tune", "--trials", "4"],
        cwd=repo,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("tune: trial 1:"):  # two trials finished, the third starting
            process.send_signal(signal.SIGKILL)
            break
    process.wait(60)
    assert process.returncode == -signal.SIGKILL
    # Killed while it held the journal's lock (a symbolic link to the journal's path as the
    # stage gives it to Optuna), the run leaves it behind: the next takes it over once stale.
    from stages.tools.tune import journal_file

    here = Path.cwd()
    os.chdir(repo)
    try:
        journal = journal_file()
    finally:
        os.chdir(here)
    lock = Path(repo / ".tune/journal.log.lock")
    if not lock.is_symlink():
        os.symlink(journal, lock)
    resumed = subprocess.run(
        [sys.executable, "-m", "stages", "tune", "--trials", "4"],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # a lock never found stale would wait for ever
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "2 of 4 trials finished" in resumed.stdout
    assert drawn(repo) == unbroken
