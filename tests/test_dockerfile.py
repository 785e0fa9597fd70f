"""The Dockerfile, read as Docker reads it (no container runtime here): it installs from
the lock file, copies every file `stages serve` loads, and runs the server in exec form."""

import fnmatch
import json
import shlex

import yaml

from stages.common import paths

from .conftest import REPO


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    joined = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def copied() -> list[str]:
    sources = []
    for word, rest in instructions():
        if word == "COPY":
            sources += shlex.split(rest)[:-1]
    return sources


def test_the_image_installs_the_locked_versions_on_python_3_11():
    steps = instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip install --no-cache-dir -r requirements.lock" in runs
    assert '".[serve]"' in runs
    assert "requirements.lock" in copied()


def test_the_image_holds_every_file_the_server_loads():
    schema = yaml.safe_load((REPO / "params.yaml").read_text())["dataset"]["schema"]
    needed = [paths.NETWORK, paths.PROFILE, paths.ENCODING_SPEC, paths.PARAMS, schema, "stages"]
    sources = copied()
    for path in needed:
        assert any(path == source.rstrip("/") or path.startswith(source) for source in sources), (
            path
        )


def test_dockerignore_lets_every_copied_path_through():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            if fnmatch.fnmatch(path, pattern.removeprefix("!").rstrip("/")):
                keep = negated
        return keep

    for source in copied():
        assert included(source.rstrip("/")), source
    assert not included("data/adult.data") and not included(".venv")


def test_the_server_runs_in_exec_form_on_every_interface():
    commands = [rest for word, rest in instructions() if word == "CMD"]
    command = json.loads(commands[-1])  # exec form: SIGTERM reaches the server
    assert command[:4] == ["python", "-m", "stages", "serve"]
    assert "0.0.0.0" in command
    exposed = [rest for word, rest in instructions() if word == "EXPOSE"]
    assert exposed == [command[command.index("--port") + 1]]
