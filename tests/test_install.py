"""The lock files pin every dependency, and the environment the tests run in is the lock's."""

import tomllib
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO


def pins(path) -> dict[str, list[Requirement]]:
    found: dict[str, list[Requirement]] = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            requirement = Requirement(line)
            found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    for lock, names in (
        (runtime, project["dependencies"] + project["optional-dependencies"]["serve"]),
        (dev, project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        for name in names:
            assert canonicalize_name(Requirement(name).name) in lock, name
        for requirements in lock.values():
            for requirement in requirements:
                assert str(requirement.specifier).startswith("=="), requirement
    for name, requirements in runtime.items():  # the pipeline's pins are the tests' pins
        assert [str(r) for r in requirements] == [str(r) for r in dev[name]], name


def test_this_environment_was_installed_from_the_dev_lock():
    """What the README's test command installs is what the tests run on."""
    wrong = []
    for name, requirements in pins("requirements-dev.lock").items():
        for requirement in requirements:
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            try:
                installed = version(name)
            except PackageNotFoundError:
                installed = None
            if installed != str(requirement.specifier).removeprefix("=="):
                wrong.append(f"{name}: {installed} installed, {requirement.specifier} locked")
    assert not wrong, wrong


def test_the_pipeline_lock_holds_what_the_inference_commands_import():
    """evaluate and predict load Keras on its numpy backend, which imports JAX when it loads:
    every distribution they import must be in the pipeline's own lock, not only the dev one."""
    import json
    import os
    import subprocess
    import sys
    from importlib.metadata import packages_distributions

    code = (
        "import json, sys; import stages.evaluate, stages.tools.predict, keras; "
        "top = sorted({m.split('.')[0] for m in sys.modules}); "
        "print(json.dumps([keras.backend.backend(), top]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "numpy"},
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    backend, modules = json.loads(loaded.stdout.splitlines()[-1])
    assert backend == "numpy"
    owners = packages_distributions()
    runtime = pins("requirements.lock")
    imported = {canonicalize_name(owner) for module in modules for owner in owners.get(module, [])}
    missing = imported - set(runtime) - {"tabular-dvc-pipeline"}
    assert "jax" in modules
    assert not missing, missing
