"""The README and the documentation name only params keys and command options that exist.

(Their Python snippets are run in a trained project by tests/test_pipeline.py.)
"""

import re
import typing
from pathlib import Path

import click

from stages.cli import cli
from stages.common.config import SECTIONS, leaf_fields

from .conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
KEY = re.compile(rf"`((?:{'|'.join(SECTIONS)})\.[a-z_][a-z0-9_.]*\*?)")
COMMAND = re.compile(r"python -m stages ([a-z][a-z-]*)([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def key_exists(key: str) -> bool:
    """Whether `section.key[.inner...]` names a params key or section (a mapping's own
    keys, such as a gate's metric, are free)."""
    for leaf, field in leaf_fields():
        if key == leaf or leaf.startswith(key + "."):
            return True
        if key.startswith(leaf + ".") and typing.get_origin(field.annotation) is dict:
            return True
    return False


def option_exists(command: str, option: str) -> bool:
    found = cli.commands.get(command)
    if found is None:
        return False
    flags = {flag for p in found.params for flag in (*p.opts, *p.secondary_opts)}
    return option in flags or option in ("--help", "-h")


def unknown_claims(text: str) -> list[str]:
    """Every params key, command and option named in `text` that does not exist."""
    wrong = []
    for match in KEY.finditer(text):
        key = match.group(1).rstrip(".")
        if key.endswith("*"):  # a family of keys, e.g. train.periodic_*
            section, prefix = key[:-1].split(".", 1)
            names = [f.alias or n for n, f in SECTIONS[section].model_fields.items()]
            if not any(name.startswith(prefix) for name in names):
                wrong.append(f"params key {key}")
        elif not key.endswith(".py") and not key_exists(key):
            wrong.append(f"params key {key}")
    for match in COMMAND.finditer(text):
        command, rest = match.group(1), re.split(r"&&|\||;|#", match.group(2))[0]
        if command not in cli.commands:
            wrong.append(f"command {command}")
            continue
        wrong += [
            f"{command} {option}"
            for option in OPTION.findall(rest)
            if not option_exists(command, option)
        ]
    return wrong


def test_every_key_and_option_named_in_the_docs_exists():
    for path in DOCS:
        assert unknown_claims(path.read_text()) == [], path.relative_to(REPO)


def test_the_checker_fails_on_a_removed_key_or_option():
    text = (
        "Set `train.epochs` and `train.threshold.rule`, gate on "
        "`evaluate.gates.minimum.accuracy`; run `python -m stages train --epochs 3` and "
        "`python -m stages predict rows.csv --output p.csv --no-header && dvc repro --pull`."
    )
    assert unknown_claims(text) == []
    removed = text.replace("train.epochs", "train.epoch_count").replace("--output", "--out")
    assert unknown_claims(removed) == ["params key train.epoch_count", "predict --out"]
    assert unknown_claims("`python -m stages deploy`") == ["command deploy"]
    assert unknown_claims("`train.threshold.level`") == ["params key train.threshold.level"]


def test_the_docs_site_lists_every_page_and_the_readme_stays_short():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {path.relative_to(REPO / "docs").as_posix() for path in DOCS[1:]}
    assert {page for page in pages if page not in nav} == set()
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).exists(), link


# The address the serving guide's snippets call: tests/tools/test_serve.py runs them
# against a server of its own, tests/test_pipeline.py the others.
SERVER_URL = "http://127.0.0.1:8080"


def python_snippets() -> list[tuple[Path, str]]:
    """The ```python blocks of the README and the docs, with the file each is in."""
    return [
        (path, block)
        for path in DOCS
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    ]


def test_the_cli_reference_is_generated_from_click():
    page = (REPO / "docs/reference/cli.md").read_text()
    assert "::: mkdocs-click" in page and ":module: stages.cli" in page
    assert isinstance(cli, click.Group)
