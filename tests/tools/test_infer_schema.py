from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.common.config import load_params
from stages.common.errors import PipelineError
from stages.data.sniff import sniff_text
from stages.tools.infer_schema import infer_schema, read_options, update_params

from ..conftest import REPO


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
        "label": ["yes"] * 50 + ["no"] * 50,
    }
)


def test_inferred_schema_is_sensible():
    schema = infer_schema(FRAME, target="label")
    columns = schema["columns"]
    assert columns["label"] == {
        "description": "The target: 2 classes.",
        "dtype": "str",
        "nullable": True,  # rows without a label are dropped, not invalid
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


def test_update_params_keeps_comments_and_key_order(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shipped = (REPO / "params.yaml").read_text()
    params.write_text(shipped)
    options = {"source": "new.csv", "watch": "new.csv", "query": None, "names": ["a", "y"]}
    update_params(
        params, options=options, target="y", schema_path="s.yaml", task="regression", rows=900
    )
    text = params.read_text()
    comments = [line.split("#", 1)[1] for line in shipped.splitlines() if "#" in line]
    kept = [comment for comment in comments if comment in text]
    # Only the comments of the two-class threshold (removed for regression) may go.
    assert len(kept) >= len(comments) - 6, set(comments) - set(kept)
    assert "# column to predict" in text and "# tabm: an ensemble of MLPs" in text
    order = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert order == [
        "dataset",
        "collect",
        "validate",
        "prepare",
        "split",
        "train",
        "evaluate",
        "predict",
        "serve",
        "tune",
    ]
    assert "names: [a, y]" in text and "hidden_units: [128, 128]" in text  # lists on one line
    parsed = load_params(params)
    assert parsed.collect.names == ["a", "y"] and parsed.train.monitor == "val_loss"


def test_every_column_kind_gets_a_decision_and_a_reason():
    rng = np.random.default_rng(0)
    rows = 600
    label = rng.choice(["a", "b"], size=rows)
    frame = pd.DataFrame(
        {
            "plane": [f"N{i % 150}" for i in range(rows)],  # 150 values, each repeated
            "when": pd.date_range("2020-01-01", periods=rows, freq="h").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "tags": [[1, 2]] * rows,  # nested
            "same": ["x"] * rows,
            "flag": rng.choice(["yes", "no"], size=rows),
            "text": [f"free text number {i}" if i % 3 else "again" for i in range(rows)],
            "label": label,
        }
    )
    frame.loc[:5, "label"] = None
    schema = infer_schema(frame, target="label")
    columns, metadata = schema["columns"], schema["metadata"]
    assert "plane" in metadata["embedded_categories"] and "checks" not in columns["plane"]
    assert columns["when"]["dtype"] == "datetime64[ns]"
    assert columns["flag"]["description"] == "Yes/no (2 values)."
    assert metadata["non_features"]["tags"].startswith("nested values")
    assert metadata["non_features"]["same"].startswith("a single value")
    assert metadata["non_features"]["text"].startswith("401 distinct values in 600 rows")
    assert "6 rows without one are dropped" in columns["label"]["description"]


def test_a_leak_is_flagged_and_a_strong_honest_feature_is_not():
    rng = np.random.default_rng(1)
    rows = 2000
    signal = rng.normal(size=rows)
    label = np.where(signal + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    frame = pd.DataFrame(
        {
            "strong": signal,  # predicts the label well, not perfectly: a real feature
            "refund_code": np.where(label == "yes", "R", "N"),  # recorded after the outcome
            "closed_at": np.where(label == "yes", 1.0, np.nan),  # only its missingness leaks
            "noise": rng.normal(size=rows),
            "label": label,
        }
    )
    excluded = infer_schema(frame, target="label")["metadata"]["non_features"]
    assert set(excluded) == {"refund_code", "closed_at"}
    assert excluded["refund_code"].startswith("suspected target leak: on its own")
    assert excluded["closed_at"].startswith("suspected target leak: whether it is missing")
    wage = pd.DataFrame({"age": rng.integers(20, 60, rows), "wage": rng.lognormal(4, 0.4, rows)})
    wage["logwage"] = np.log(wage["wage"])
    leaks = infer_schema(wage, target="wage", task="regression")["metadata"]["non_features"]
    assert list(leaks) == ["logwage"] and "Spearman correlation 1.000" in leaks["logwage"]


def test_update_params_writes_gates_relative_to_the_baselines(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    options = {"source": "new.csv", "watch": "new.csv", "query": None, "format": "auto"}
    changes = update_params(
        params, options=options, target="y", schema_path="s.yaml", task="regression"
    )
    gates = load_params(params).evaluate.gates
    assert gates.minimum == {} and gates.maximum == {}  # Adult's absolute gates are gone
    assert gates.must_beat == {"mean": ["r2"]}
    assert gates.baseline == "hist_gradient_boosting" and set(gates.max_shortfall) == {"r2"}
    assert any(change.startswith("evaluate.gates") for change in changes)


def test_decimal_commas_and_thousands_are_sniffed_and_read():
    sample = (
        b"name;amount;rate;day\na;1.234,5;0,5;13.02.2020\nb;12,25;1,75;01.03.2021\n"
        b"c;7;2;28.12.2020\n"
    )
    sniffed = sniff_text(sample)
    assert (sniffed["delimiter"], sniffed["decimal"], sniffed["thousands"]) == (";", ",", ".")
    plain = sniff_text(b"a,b\n1.5,x\n2.25,y\n3,z\n")
    assert (plain["decimal"], plain["thousands"]) == (".", None)


def test_day_first_dates_get_their_format_and_are_never_identifiers():
    days = pd.date_range("2021-01-01", periods=400, freq="D")
    frame = pd.DataFrame(
        {
            "dotted": days.strftime("%d.%m.%Y"),  # European: day first
            "slashed": days.strftime("%d/%m/%y %H:%M"),  # only readable day first (13/..)
            "iso": days.strftime("%Y-%m-%d"),
            "named": days.strftime("%d-%b-%Y"),  # 13-Feb-2021
            "y": ["a", "b"] * 200,
        }
    )
    schema = infer_schema(frame, target="y")
    for name in ("dotted", "slashed", "iso", "named"):
        assert schema["columns"][name]["dtype"] == "datetime64[ns]", name
        assert name not in schema["metadata"]["non_features"]
    assert schema["metadata"]["date_formats"] == {"dotted": "%d.%m.%Y", "slashed": "%d/%m/%y %H:%M"}


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (np.arange(60) % 45, "regression"),  # a score with many whole values
        (np.arange(200) % 15, "regression"),  # 15 values, more than 5% of 200 rows
        (np.arange(600) % 5, "classification"),  # five codes
        (np.arange(600) % 2 * 1.0, "classification"),
        (np.linspace(0, 1, 600), "regression"),
    ],
)
def test_a_numeric_target_is_a_quantity_when_it_has_many_values(values, task):
    from stages.tools.infer_schema import task_choice

    assert task_choice(pd.Series(values))[0] == task


def test_a_near_exact_leak_is_kept_out_and_an_honest_strong_column_is_not():
    """`severity` is recorded after the outcome: 4 means dead, for most deaths but not all;
    `age` is a strong honest feature."""
    rng = np.random.default_rng(7)  # not the leak check's own seed
    rows = 4000
    dead = rng.random(rows) < 0.2
    age = rng.normal(50, 15, rows) + 15 * dead
    severity = np.where(dead & (rng.random(rows) < 0.9), 4, rng.integers(0, 4, rows))
    frame = pd.DataFrame(
        {"age": age, "severity": severity, "noise": rng.normal(size=rows), "dead": dead.astype(str)}
    )
    schema = infer_schema(frame, target="dead")
    excluded = schema["metadata"]["non_features"]
    assert "severity" in excluded and "near-exactly" in excluded["severity"]
    assert "age" not in excluded


def test_classes_too_rare_for_every_split_are_left_out_and_quarantined(tmp_path):
    frame = pd.DataFrame({"x": range(300), "y": ["a"] * 150 + ["b"] * 145 + ["c"] * 5})
    schema = infer_schema(frame, target="y", min_rows=10)
    assert schema["columns"]["y"]["checks"]["isin"] == ["a", "b"]
    assert schema["metadata"]["rare_classes"] == {"c": 5}


def test_repeats_are_observations_only_where_every_column_has_few_values():
    from stages.tools.infer_schema import repeated_observations

    categories = pd.DataFrame({"class": ["1st", "2nd"] * 50, "survived": ["yes", "no"] * 50})
    assert repeated_observations(categories, max_values=50) == 98
    with_a_name = categories.assign(name=[f"n{i % 60}" for i in range(100)])
    assert repeated_observations(with_a_name, max_values=50) == 0
