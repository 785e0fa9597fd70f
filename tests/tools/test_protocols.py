"""The bodies `stages serve` reads and writes, without a server."""

import json

import numpy as np
import pandas as pd
import pytest

from stages.tools.protocols import (
    RequestError,
    input_datatype,
    mlflow_rows,
    oip_outputs,
    oip_rows,
    records,
)

COLUMNS = ["age", "color"]


def mlflow(payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return mlflow_rows(body, content_type, columns=COLUMNS)


def refused(call, *args) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["age", "color"], "data": [[39, "red"], [50, None]]}},
        {"dataframe_records": [{"color": "red", "age": 39}, {"age": 50, "color": None}]},
        {"instances": [{"age": 39, "color": "red"}, {"age": 50, "color": None}]},
        {"inputs": {"age": [39, 50], "color": ["red", None]}},
        {"inputs": [[39, "red"], [50, None]]},
    ],
)
def test_every_mlflow_json_format_gives_the_same_rows(payload):
    rows = mlflow(payload)
    assert rows["age"].tolist() == [39, 50]
    assert rows["color"][0] == "red" and pd.isna(rows["color"][1])


def test_mlflow_csv_is_read_as_text_with_its_header():
    rows = mlflow(b"color,age\nred,39\n,50\n", "text/csv; charset=utf-8")
    assert rows.to_dict("list") == {"color": ["red", ""], "age": ["39", "50"]}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "an object"),
        (b'{"rows": []}', "application/json", 400, "exactly one of"),
        (b'{"instances": [], "inputs": []}', "application/json", 400, "exactly one of"),
        (b'{"inputs": [[1, 2, 3]]}', "application/json", 400, "the 2 columns in order"),
        (b'{"dataframe_split": {"data": [[1]]}}', "application/json", 400, "'columns'"),
        (b"age\n39", "text/plain", 415, "text/plain"),
        (b"age\n39", None, 415, "(none)"),
    ],
)
def test_a_bad_mlflow_body_is_refused_with_its_status(body, content_type, status, says):
    error = refused(mlflow, body, content_type)
    assert error.status == status and says in error.message


def tensor(name, datatype, shape, data):
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def test_oip_inputs_are_columns_flat_or_nested():
    payload = {
        "inputs": [
            tensor("age", "INT64", [2, 1], [[39], [50]]),
            tensor("color", "BYTES", [2], ["red", "blue"]),
        ],
        "outputs": [{"name": "predicted"}],
    }
    rows, wanted = oip_rows(payload)
    assert rows.to_dict("list") == {"age": [39, 50], "color": ["red", "blue"]}
    assert wanted == ["predicted"]


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ("nope", "'inputs', a list"),
        ([tensor("age", "INT64", [2], [1, 2]), tensor("b", "BYTES", [1], ["x"])], "different"),
        ([tensor("age", "FLOAT", [1], [1.0])], "datatype 'FLOAT'"),
        ([tensor("age", "INT64", [1, 3], [1, 2, 3])], "not [rows] or [rows, 1]"),
        ([tensor("age", "INT64", [2], [1])], "shape [2] but 1 values"),
        ([tensor("age", "INT64", [1], ["x"])], "not a number"),
        ([{"name": "age", "data": [1]}], "needs datatype, shape"),
    ],
)
def test_a_bad_oip_request_names_what_is_wrong(inputs, says):
    error = refused(oip_rows, {"inputs": inputs})
    assert error.status == 400 and says in error.message


def test_predictions_become_json_records_and_oip_outputs():
    table = pd.DataFrame(
        {
            "predicted": pd.array(["yes", None], dtype="string"),
            "probability_yes": [0.75, np.nan],
            "error": pd.array([None, "age: 'x' is not a number"], dtype="string"),
        }
    )
    assert records(table) == [
        {"predicted": "yes", "probability_yes": 0.75, "error": None},
        {"predicted": None, "probability_yes": None, "error": "age: 'x' is not a number"},
    ]
    outputs = {item["name"]: item for item in oip_outputs(table, None)}
    assert outputs["predicted"] == {
        "name": "predicted",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["yes", ""],
    }
    assert outputs["probability_yes"]["datatype"] == "FP64"
    assert outputs["probability_yes"]["data"] == [0.75, None]
    assert refused(oip_outputs, table, ["nope"]).status == 400


def test_input_datatypes_follow_the_schema_dtypes():
    assert [input_datatype(d) for d in ("int64", "float64", "bool", "str")] == [
        "INT64",
        "FP64",
        "BOOL",
        "BYTES",
    ]
