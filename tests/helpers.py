"""Helpers for the tests that run DVC in a temporary copy of the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from benchmarks.run import copy_project_files


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # dvc.yaml runs `python -m stages ...`: the interpreter running the tests comes first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@localhost",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def shrunk_copy(target: Path) -> Path:
    """The project's files (as git sees them, without dvc.lock) in a fresh git repository
    at `target`, with params shrunk to 400 rows and 2 epochs."""
    copy_project_files(target)
    params_path = target / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["collect"]["max_rows"] = 400
    params["train"].update(epochs=2, batch_size=32, learning_rate=0.01)
    params["split"].update(validation=0.15, test=0.25)
    params["evaluate"]["gates"] = {"minimum": {"accuracy": 0.7}}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], target)
    run(["git", "add", "-A"], target)
    run(["git", "commit", "-qm", "copy"], target)  # DVCLive needs a commit
    return target
