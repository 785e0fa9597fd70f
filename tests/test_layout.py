"""dvc.yaml, stages/paths.py and stages/cli.py name the same stages, params, paths and code."""

import ast
from pathlib import Path

import yaml

from stages.cli import COMMAND_PARAMS
from stages.common import paths

from .conftest import REPO, STAGES

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

OUTPUTS = {
    "collect": {paths.RAW_TABLE, paths.COLLECT_REPORT},
    "validate": {
        paths.VALIDATED_TABLE,
        paths.QUARANTINE_TABLE,
        paths.VALIDATE_REPORT,
        paths.VALIDATE_FAILURES,
        paths.VALIDATE_METRICS,
    },
    "prepare": {paths.PREPARED_TABLE, paths.ENCODING_SPEC, paths.PREPARE_REPORT},
    "split": {*(paths.split_table(name) for name in paths.SPLIT_NAMES), paths.SPLIT_REPORT},
    "baselines": {
        paths.BASELINES_PREDICTIONS,
        paths.BASELINES_METRICS,
        paths.BASELINES_TUNING,
        paths.BASELINES_FIT,
    },
    "train": {
        paths.MODEL,
        paths.NETWORK,
        paths.PROFILE,
        paths.TRAIN_REPORT,
        paths.TRAIN_PLOTS,
        paths.TRAIN_METRICS,
    },
    "evaluate": {
        paths.EVALUATE_PLOTS,
        paths.EVALUATE_METRICS,
        paths.EVALUATE_PREDICTIONS,
        paths.EVALUATE_VERDICT,
        paths.EVALUATE_INTERVALS,
        paths.EVALUATE_SLICES,
        paths.EVALUATE_DECISION,
        paths.FIGURES,
        paths.REPORT,
    },
}


def is_package(module: str) -> bool:
    return (REPO / module.replace(".", "/")).is_dir()


def stages_imports(nodes: list[ast.stmt]) -> set[str]:
    """stages.* modules imported anywhere inside `nodes` (by an import statement, or by
    the cli's `stage_module`); a package's names are its modules."""
    found = set()
    for node in (inner for outer in nodes for inner in ast.walk(outer)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stages":
            if is_package(node.module):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stages."))
        elif (  # the cli's stage_module("name")
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "stage_module"
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(f"stages.{node.args[0].value}")
    return found


def module_file(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


def module_closure(modules: set[str]) -> set[str]:
    """Every stages.* module reachable from `modules` through imports."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse(module_file(module).read_text())
        todo.extend(stages_imports(tree.body))
    return seen


def code_used_by(stage: str) -> set[str]:
    """The stages/**/*.py files `python -m stages <stage>` imports: cli.py, what it imports
    at the top, what the stage's command imports, and so on through those modules. (The
    packages' __init__.py files hold no code: tests/test_architecture.py checks it.)"""
    cli_tree = ast.parse((REPO / "stages/cli.py").read_text())
    top_level = [node for node in cli_tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    command = [n for n in cli_tree.body if isinstance(n, ast.FunctionDef) and n.name == stage]
    modules = {"stages.cli"} | module_closure(stages_imports(top_level + command))
    return {module_file(module).relative_to(REPO).as_posix() for module in modules}


def test_stages_in_order_each_running_its_command():
    assert list(DVC) == STAGES
    assert list(DVC) == list(COMMAND_PARAMS)
    for name, stage in DVC.items():
        assert stage["cmd"] == f"python -m stages {name}"


def test_each_stage_lists_exactly_the_params_it_reads():
    for name, stage in DVC.items():
        expected = set()
        for section, keys in COMMAND_PARAMS[name].items():
            expected |= {section} if keys is None else {f"{section}.{key}" for key in keys}
        assert set(stage.get("params", [])) == expected, name


def test_outputs_match_the_paths_module():
    for name, stage in DVC.items():
        declared = {
            next(iter(out)) if isinstance(out, dict) else out
            for kind in ("outs", "metrics", "plots")
            for out in stage.get(kind, [])
        }
        assert declared == OUTPUTS[name], name


def test_each_stage_depends_on_exactly_the_code_it_runs():
    for name, stage in DVC.items():
        code = {dep for dep in stage["deps"] if dep.startswith("stages/")}
        assert code == code_used_by(name), name
        assert f"stages/{name}.py" in code


def test_each_stage_reads_what_the_previous_ones_write():
    written: set[str] = set()
    for name, stage in DVC.items():
        data_deps = {d for d in stage["deps"] if not d.startswith(("stages/", "${"))}
        assert data_deps <= written, (name, data_deps - written)
        written |= OUTPUTS[name]


def test_metrics_and_plots_are_declared_for_dvc():
    top_plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    files = {file for plot in top_plots for spec in plot.values() for file in spec["y"]}
    assert files == {
        "reports/train/plots/metrics/train/loss.tsv",
        "reports/train/plots/metrics/eval/loss.tsv",
        "reports/train/plots/metrics/train/accuracy.tsv",
        "reports/train/plots/metrics/eval/accuracy.tsv",
        "reports/train/plots/best_epoch.tsv",
        *(
            f"reports/evaluate/plots/{name}.csv"
            for name in ("confusion", "roc", "precision_recall", "calibration", "importance")
        ),
    }
    assert Path(paths.TRAIN_METRICS).name == "metrics.json"


def test_metrics_files_are_kept_in_git_and_only_the_models_test_metrics_are_declared():
    """`dvc metrics show` prints the model's test metrics alone; every metrics file is kept
    in git (cache: false), so `dvc metrics diff` works in a fresh clone without a remote."""
    declared = [out for stage in DVC.values() for out in stage.get("metrics", [])]
    assert declared == [{paths.EVALUATE_METRICS: {"cache": False}}]
    kept = {
        paths.VALIDATE_METRICS,
        paths.TRAIN_METRICS,
        paths.BASELINES_METRICS,
        paths.EVALUATE_INTERVALS,
        paths.EVALUATE_SLICES,
        paths.EVALUATE_DECISION,
    }
    outs = {
        next(iter(out)): out[next(iter(out))]
        for stage in DVC.values()
        for out in stage.get("outs", [])
        if isinstance(out, dict)
    }
    assert {name: outs[name] for name in kept} == {name: {"cache": False} for name in kept}


def test_the_model_is_a_registered_artifact():
    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    assert artifacts["model"]["path"] == paths.MODEL
    assert artifacts["model"]["type"] == "model"
    assert artifacts["model"]["desc"] and artifacts["model"]["labels"]


def test_the_users_ci_workflow_is_valid_and_mirrors_ci_run():
    workflow = yaml.safe_load((REPO / ".github/workflows/pipeline.yml").read_text())
    assert workflow["name"] == "pipeline"
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads `on` as true
    steps = workflow["jobs"]["pipeline"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    ci_run = (REPO / ".ci/run").read_text()
    for command in (
        "ruff check .",
        "python -m pytest",
        "pip install -q -r requirements-dev.lock -e",
    ):
        assert command in commands and command in ci_run, command
    assert "dvc repro --pull" in commands
    assert "python -m stages compare --rev origin/main" in commands
    assert all("uses" in step or "run" in step for step in steps)
    assert "secrets.AWS_SECRET_ACCESS_KEY" in str(workflow["jobs"]["pipeline"]["env"])
