"""A corpus of broken inputs and params (tests/broken/): each stops the right stage with a
one-line message naming the file, column or key, exit code 1, no traceback, and nothing
written by the failing stage or after it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stages import paths

from .test_cli import invoke, workdir  # noqa: F401  (workdir is a fixture)

BROKEN = Path(__file__).parent / "broken"
STAGES = ["collect", "validate", "prepare", "split"]
OUTPUTS = {
    "collect": [paths.RAW_TABLE, paths.COLLECT_REPORT],
    "validate": [paths.VALIDATED_TABLE, paths.QUARANTINE_TABLE],
    "prepare": [paths.PREPARED_TABLE, paths.ENCODING_SPEC],
    "split": [paths.split_table(name) for name in paths.SPLIT_NAMES],
}

# (input file in tests/broken, params changes, stage that must fail, message it must print)
CASES = {
    "truncated gzip": (
        "truncated.csv.gz",
        {},
        "collect",
        "the compressed file is damaged or cut short",
    ),
    "binary junk": (
        "binary_junk.csv",
        {},
        "collect",
        "binary_junk.csv: cannot decode the text as utf-8",
    ),
    "empty file": ("empty.csv", {}, "collect", "empty.csv: the file is empty"),
    "header only": ("header_only.csv", {}, "collect", "header_only.csv: no data rows"),
    "wrong delimiter": (
        "wrong_delimiter.csv",
        {},
        "validate",
        "column '<table>', check column_in_dataframe",
    ),
    "latin-1 bytes": (
        "latin1.csv",
        {},
        "collect",
        "latin1.csv: cannot decode the text as utf-8 at byte",
    ),
    "one class": (
        "one_class.csv",
        {},
        "validate",
        "target column 'label' has 1 class(es) in 60 valid rows",
    ),
    "text in a number": (
        "text_in_number.csv",
        {},
        "validate",
        "column 'age', check coerce_dtype('int64')",
    ),
    "infinity": (
        "infinity.csv",
        {},
        "validate",
        "column 'hours', check finite: 1 failures (e.g. 'inf')",
    ),
    "duplicate headers": (
        "duplicate_headers.csv",
        {},
        "collect",
        "duplicate column names in the header: age",
    ),
    "unknown category": (
        "unknown_category.csv",
        {},
        "validate",
        "column 'color', check isin(['red', 'green', 'blue']): 20 failures",
    ),
    "ragged rows": ("ragged_rows.csv", {}, "collect", "ragged_rows.csv: cannot read as csv"),
    "missing column": (
        "missing_column.csv",
        {},
        "validate",
        "check column_in_dataframe: 1 failures (e.g. 'hours')",
    ),
    "class too small to split": (
        "tiny_class.csv",
        {},
        "split",
        "too small to appear in every split of 'label': 1 (1 rows)",
    ),
    "negative number": (
        "negative_number.csv",
        {},
        "validate",
        "column 'age', check in_range(0, 120): 1 failures (e.g. '-5')",
    ),
    "truncated parquet": (
        "truncated.parquet",
        {},
        "collect",
        "truncated.parquet: cannot read as parquet",
    ),
    "missing file": (
        "absent.csv",
        {},
        "collect",
        "absent.csv: file not found (params: collect.source)",
    ),
    "broken schema": (
        None,
        {"dataset.schema": "broken_schema.yaml"},
        "validate",
        "broken_schema.yaml: not a valid pandera schema",
    ),
    "schema file missing": (
        None,
        {"dataset.schema": "nowhere.yaml"},
        "validate",
        "nowhere.yaml: schema file not found (params: dataset.schema)",
    ),
    "params: wrong type": (
        None,
        {"train.epochs": "ten"},
        "collect",
        "train.epochs: Input should be a valid integer",
    ),
    "params: out of range": (
        None,
        {"split.test": 1.5},
        "collect",
        "split.test: Input should be less than 1",
    ),
    "params: unknown key": (None, {"train.epochz": 3}, "collect", "train.epochz: unknown key"),
    "params: target not in schema": (
        None,
        {"dataset.target": "colour"},
        "validate",
        "target column 'colour' (params: dataset.target) is not in the schema",
    ),
    "params: database without query": (
        None,
        {"collect.source": "sqlite:///none.db"},
        "collect",
        "a database source needs collect.query",
    ),
}


def set_params(changes: dict) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    Path("params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_broken_input_stops_its_stage_cleanly(workdir: Path, case: str):  # noqa: F811
    name, changes, failing, message = CASES[case]
    if name is not None:
        if (BROKEN / name).exists():
            shutil.copy(BROKEN / name, workdir / name)
        changes = {"collect.source": name, "collect.watch": name, **changes}
    shutil.copy(BROKEN / "broken_schema.yaml", workdir / "broken_schema.yaml")
    set_params(changes)
    for stage in STAGES[: STAGES.index(failing)]:
        result = invoke(stage)
        assert result.exit_code == 0, (stage, result.output)
    result = invoke(failing)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ")
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    for stage in STAGES[STAGES.index(failing) :]:
        for output in OUTPUTS[stage]:
            assert not Path(output).exists(), f"{case}: {output} was written"
    assert not list(workdir.rglob(".tmp-*"))


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15
    assert len([path for path in BROKEN.iterdir()]) >= 15
