from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.config import load_params
from stages.errors import PipelineError
from stages.infer import infer_schema, read_options, sniff_text, update_params

from .conftest import REPO


def test_sniffs_adult_like_text():
    sample = (
        b"39, State-gov, 77516, ?, <=50K\n50, Private, 83311, NA, >50K\n38, Private, 1, x, <=50K\n"
    )
    found = sniff_text(sample)
    assert found["delimiter"] == ","
    assert found["header"] is False
    assert found["skip_initial_space"] is True
    assert found["na_values"] == ["?", "NA"]
    assert found["encoding"] == "utf-8"
    assert found["columns"] == 5


def test_sniffs_semicolons_tabs_headers_and_latin1():
    found = sniff_text("name;size;label\ncafé;1.5;a\nthé;2;b\nbar;3;a\n".encode("latin-1"))
    assert (found["delimiter"], found["header"], found["encoding"]) == (";", True, "latin-1")
    assert sniff_text(b"a\tb\tc\n1\t2\tx\n3\t4\ty\n")["delimiter"] == "\t"


def test_an_empty_sample_is_an_error():
    with pytest.raises(PipelineError, match="the file is empty"):
        sniff_text(b"\n\n")


def test_read_options_for_a_headerless_file_name_the_columns(tmp_path: Path):
    source = tmp_path / "t.data"
    source.write_text("1, a, x\n2, b, y\n3, ?, x\n")
    options = read_options(str(source), names=None, query=None)
    assert options["names"] == ["column_1", "column_2", "column_3"]
    assert options["na_values"] == ["?"] and options["watch"] == str(source)
    with pytest.raises(PipelineError, match="3 columns, but --names gives 2"):
        read_options(str(source), names=["a", "b"], query=None)


FRAME = pd.DataFrame(
    {
        "id": range(100),
        "amount": [float(i % 7) for i in range(100)],
        "delta": [(i * 37) % 101 - 50 for i in range(100)],  # distinct, not a row number
        "color": ["red", "green", None, "blue"] * 25,
        "comment": [f"note {i}" for i in range(100)],
        "label": ["yes", "no"] * 50,
    }
)


def test_inferred_schema_is_sensible():
    schema = infer_schema(FRAME, target="label")
    columns = schema["columns"]
    assert columns["label"] == {
        "description": "The target: 2 classes.",
        "dtype": "str",
        "nullable": False,
        "checks": {"isin": ["no", "yes"]},
    }
    assert columns["color"]["checks"] == {"isin": ["blue", "green", "red"]}
    assert columns["color"]["nullable"] is True
    assert columns["amount"]["checks"] == {"greater_than_or_equal_to": 0}  # not observed bounds
    assert "checks" not in columns["delta"]
    assert schema["metadata"]["non_features"] == {
        "id": "consecutive distinct integers: looks like a row number",
        "comment": "every value is distinct: looks like an identifier",
    }
    strict = infer_schema(FRAME, target="label", strict_ranges=True)["columns"]
    assert strict["delta"]["checks"] == {"in_range": {"min_value": -50, "max_value": 50}}


def test_target_problems_are_errors():
    with pytest.raises(PipelineError, match="target column 'nope' is not among the columns"):
        infer_schema(FRAME, target="nope")
    with pytest.raises(PipelineError, match="has 1 class"):
        infer_schema(FRAME.assign(label="yes"), target="label")


def test_update_params_points_params_at_the_new_source(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    options = {
        "source": "new.csv",
        "watch": "new.csv",
        "query": None,
        "format": "auto",
        "delimiter": ";",
    }
    update_params(
        params,
        options=options,
        target="label",
        schema_path="schemas/new.yaml",
        task="classification",
    )
    parsed = load_params(params)
    assert parsed.collect.source == "new.csv" and parsed.collect.delimiter == ";"
    assert parsed.collect.header is True and parsed.collect.names is None
    assert parsed.collect.max_rows is None
    assert (parsed.dataset.target, parsed.dataset.schema_path) == ("label", "schemas/new.yaml")
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert yaml.safe_load(params.read_text())["train"] == shipped["train"]
