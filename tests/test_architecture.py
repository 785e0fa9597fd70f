"""The package's shape: stages, tools and library apart, the library in layers, short
functions.

stages/<stage>.py are the seven DVC stages (run by stages/cli.py only), stages/tools/ the
commands a person runs by hand, and the library: common < data < model < evaluation <
training, each importing only from the layers before it.
"""

import ast
from pathlib import Path

import yaml

from .conftest import REPO

PACKAGE = REPO / "stages"
STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
LAYERS = ["common", "data", "model", "evaluation", "training"]
# Besides the stages: the command line, `python -m stages`, and `import stages.serving`
# kept for code that loads the model with Keras alone.
TOP_LEVEL = {"__init__", "__main__", "cli", "serving"}
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imported(path: Path) -> set[str]:
    """The stages.* modules a module imports (a package's names are its modules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stages":
            if (REPO / node.module.replace(".", "/")).is_dir():
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stages."))
    return found


def kind(module: str) -> str:
    """stage, tools, a library layer, or a top-level module's own name."""
    parts = module.split(".")
    if len(parts) == 2:
        return "stage" if parts[1] in STAGES else parts[1]
    return parts[1]


def test_the_top_level_holds_the_seven_stages_and_the_command_line():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == set(STAGES) | TOP_LEVEL
    assert len(STAGES) == 7
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name[0] != "_"}
    assert folders == {"tools", *LAYERS}


def test_no_stage_is_imported_by_another_module():
    for module, path in modules().items():
        stages = {name for name in imported(path) if kind(name) == "stage"}
        assert not stages, f"{module} imports {stages}: a stage is run, never imported"


def test_tools_import_only_the_library():
    for module, path in modules().items():
        if kind(module) == "tools":
            kinds = {kind(name) for name in imported(path)} - {"tools"}
            assert kinds <= set(LAYERS), (module, kinds)


def test_the_library_imports_only_its_earlier_layers():
    for module, path in modules().items():
        if kind(module) not in LAYERS:
            continue
        allowed = set(LAYERS[: LAYERS.index(kind(module)) + 1])
        kinds = {kind(name) for name in imported(path)}
        assert kinds <= allowed, f"{module} imports {kinds - allowed}"


def test_packages_hold_no_code():
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        assert all(
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
        ), path


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's length: from the first statement after its docstring to its end (the
    signature, such as a builder's keyword arguments, and the docstring are not counted;
    nor are decorators, such as a command's options)."""
    body = node.body
    if ast.get_docstring(node) is not None and len(body) > 1:
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def long_functions() -> dict[str, int]:
    """Functions whose body runs over MAX_FUNCTION_LINES lines."""
    found = {}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = body_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    found[f"{module}.{node.name}"] = lines
    return found


def test_no_function_is_longer_than_a_screen():
    assert long_functions() == {}


def test_a_function_is_measured_from_its_first_statement_to_its_end():
    statements = "\n".join(f"    x{i} = ({i},\n        {i})" for i in range(5))
    signature = "def f(\n    a,\n    b,\n):\n"
    with_docstring = ast.parse(f'{signature}    """Says\n    what."""\n{statements}\n')
    without = ast.parse(f"{signature}{statements}\n")
    assert body_lines(with_docstring.body[0]) == body_lines(without.body[0]) == 10
