"""A corpus of broken inputs and params (tests/fixtures/broken/): each stops the right stage with a
one-line message naming the file, column or key, exit code 1, no traceback, and nothing
written by the failing stage or after it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stages.common import paths

from .test_cli import invoke, workdir  # noqa: F401  (workdir is a fixture)

BROKEN = Path(__file__).parent / "fixtures/broken"
STAGES = ["collect", "validate", "prepare", "split"]
OUTPUTS = {
    "collect": [paths.RAW_TABLE, paths.COLLECT_REPORT],
    "validate": [paths.VALIDATED_TABLE, paths.QUARANTINE_TABLE],
    "prepare": [paths.PREPARED_TABLE, paths.ENCODING_SPEC],
    "split": [paths.split_table(name) for name in paths.SPLIT_NAMES],
}

# (input file in tests/fixtures/broken, params changes, stage that must fail, message it must print)
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
        "target column 'label' in 60 valid rows has 1 class(es); at least two are needed",
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
        "too small to appear in every split of 'label': yes (1 rows)",
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
    "date that is not a date": (
        "bad_date.csv",
        {"dataset.schema": "dates_schema.yaml"},
        "validate",
        "column 'when', check parses as a date: 1 failures (e.g. 'not-a-date')",
    ),
    "nested column declared as a feature": (
        "nested.parquet",
        {"dataset.schema": "nested_schema.yaml"},
        "prepare",
        "schema column 'tags' has no dtype, so it cannot be encoded",
    ),
    "embedded category the schema lacks": (
        None,
        {"dataset.schema": "embedded_unknown_schema.yaml"},
        "prepare",
        "schema metadata.embedded_categories names columns the schema lacks: colour",
    ),
    "params: negative layer width": (
        None,
        {"train.hidden_units": [-3, 8]},
        "collect",
        "train.hidden_units: every hidden layer needs at least one unit, got [-3, 8]",
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
    for schema in BROKEN.glob("*.yaml"):
        shutil.copy(schema, workdir / schema.name)
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


def run_data_stages() -> None:
    for stage in STAGES:
        result = invoke(stage)
        assert result.exit_code == 0, (stage, result.output)
        assert "Traceback" not in result.output


def test_rows_without_a_label_are_dropped_and_counted(workdir: Path):  # noqa: F811
    lines = Path("tiny.csv").read_text().splitlines()
    for row in (5, 9, 40):
        lines[row] = lines[row].rsplit(",", 1)[0] + ","  # a blank label
    Path("tiny.csv").write_text("\n".join(lines) + "\n")
    run_data_stages()
    assert yaml.safe_load(Path(paths.VALIDATE_METRICS).read_text())["unlabelled_rows"] == 3
    prepared = yaml.safe_load(Path(paths.PREPARE_REPORT).read_text())
    assert prepared["unlabelled_dropped"] == 3 and prepared["rows_out"] == 57


def test_a_bom_crlf_quoted_newlines_and_any_column_order_are_read(workdir: Path):  # noqa: F811
    lines = Path("tiny.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    order = [4, 2, 0, 3, 1]  # label, color, age, id, hours
    rows[7][3] = '"an id\nover two lines"'
    text = "\r\n".join(",".join(row[i] for i in order) for row in [header, *rows]) + "\r\n"
    Path("tiny.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    run_data_stages()
    import pandas as pd

    raw = pd.read_parquet(paths.RAW_TABLE)
    assert list(raw.columns) == ["label", "color", "age", "id", "hours"]
    assert raw["id"][7] == "an id\nover two lines"


def test_columns_named_like_the_pipelines_own_are_just_columns(workdir: Path):  # noqa: F811
    import pandas as pd

    frame = pd.read_csv("tiny.csv")
    frame["row_id"] = range(100, 160)
    frame["reason"] = ["a", "b", "c"] * 20
    frame["prediction"] = 1.5
    frame["index"] = frame["age"] * 2
    frame["hours__missing"] = frame["age"] % 2
    frame["m:hours"] = 0.25 * frame["age"]
    frame.to_csv("tiny.csv", index=False)
    schema = yaml.safe_load(Path("schema.yaml").read_text())
    for name, dtype in [
        ("row_id", "int64"),
        ("index", "int64"),
        ("prediction", "float64"),
        ("hours__missing", "int64"),
        ("m:hours", "float64"),
    ]:
        schema["columns"][name] = {"dtype": dtype, "nullable": False}
    schema["columns"]["reason"] = {"dtype": "str", "checks": {"isin": ["a", "b", "c"]}}
    Path("schema.yaml").write_text(yaml.safe_dump(schema))
    run_data_stages()
    prepared = pd.read_parquet(paths.PREPARED_TABLE)
    assert prepared["row_id"].tolist()[:3] == [0, 1, 2]  # the pipeline's row numbers
    assert prepared["x:row_id"].tolist()[:3] == [100, 101, 102]  # the user's column
    assert {"x:index", "x:reason", "x:prediction", "x:hours__missing", "x:m:hours"} <= set(
        prepared.columns
    )


def test_infer_schema_names_a_target_the_table_lacks(workdir: Path):  # noqa: F811
    result = invoke("infer-schema", "tiny.csv", "--target", "nope", "--out", "drafted.yaml")
    assert result.exit_code == 1
    assert "tiny.csv: target column 'nope' (--target) is not among the columns" in result.output
    assert "Traceback" not in result.output and not Path("drafted.yaml").exists()


def test_infer_schema_sets_nested_columns_aside(workdir: Path):  # noqa: F811
    shutil.copy(BROKEN / "nested.parquet", workdir / "nested.parquet")
    result = invoke("infer-schema", "nested.parquet", "--target", "label", "--out", "n.yaml")
    assert result.exit_code == 0, result.output
    schema = yaml.safe_load(Path("n.yaml").read_text())
    assert schema["metadata"]["non_features"]["tags"].startswith("nested values")
    assert "dtype" not in schema["columns"]["tags"]
