"""The request and response bodies `stages serve` speaks, without the HTTP around them.

- MLflow's scoring protocol (`POST /invocations`): JSON with `dataframe_split`,
  `dataframe_records`, `instances` or `inputs`, or CSV with a header; the answer is
  `{"predictions": [...]}`, one record per row.
- The Open Inference Protocol v2 (KServe, Triton, MLServer; `POST
  /v2/models/<name>/infer`): one input per raw column, the answer one output per column
  of the predictions.

Each parser returns the rows as a DataFrame of raw values, which the predictor then cleans,
validates and encodes as `stages predict` does; a body it cannot read raises RequestError
with the status to answer.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd


class RequestError(Exception):
    """A request the server refuses: the HTTP status and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# Open Inference Protocol datatypes of the raw columns, by the schema's dtype kind.
NUMBER_TYPES = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"}
NUMBER_TYPES |= {"UINT8", "UINT16", "UINT32", "UINT64"}
DATATYPES = NUMBER_TYPES | {"BOOL", "BYTES"}


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, without its parameters."""
    return (content_type or "").split(";")[0].strip().lower()


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None


def mlflow_rows(body: bytes, content_type: str | None, *, columns: list[str]) -> pd.DataFrame:
    """The rows of an MLflow scoring request. Rows given as bare lists of values (a
    tensor, `{"inputs": [[39, "Private", ...]]}`) hold `columns` in their order."""
    kind = media_type(content_type)
    if kind in CSV_TYPES:
        try:
            return pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the CSV body cannot be read: {exc}") from None
    if kind not in JSON_TYPES:
        raise RequestError(
            415,
            f"Content-Type {content_type or '(none)'} is not supported: send "
            "application/json or text/csv",
        )
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise RequestError(400, f"the JSON body must be an object with one of {MLFLOW_KEYS}")
    given = [key for key in MLFLOW_KEYS if key in payload]
    if len(given) != 1:
        found = ", ".join(map(str, payload)) or "none"
        raise RequestError(
            400, f"the JSON body needs exactly one of {', '.join(MLFLOW_KEYS)} (found: {found})"
        )
    key = given[0]
    try:
        return _mlflow_frame(key, payload[key], columns)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RequestError(400, f"'{key}' cannot be read as rows: {exc}") from None


def _mlflow_frame(key: str, value: Any, columns: list[str]) -> pd.DataFrame:
    if key == "dataframe_split":
        if not isinstance(value, dict) or "columns" not in value or "data" not in value:
            raise ValueError("it needs 'columns' and 'data'")
        return pd.DataFrame(value["data"], columns=value["columns"])
    if isinstance(value, dict):  # instances or inputs as columns: {"age": [39, 50], ...}
        return pd.DataFrame({name: _column(values) for name, values in value.items()})
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        widths = {len(row) for row in value}
        if widths != {len(columns)}:
            raise ValueError(
                f"rows of bare values must hold the {len(columns)} columns in order "
                f"({', '.join(columns)}); found rows of {sorted(widths)} values"
            )
        return pd.DataFrame(value, columns=columns)
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise ValueError(
            "it needs a list of records ({column: value}), of rows of values, or a "
            "mapping of columns"
        )
    return pd.DataFrame.from_records(value)


def _column(values: Any) -> list:
    return values if isinstance(values, list) else [values]


def oip_rows(payload: Any) -> tuple[pd.DataFrame, list[str] | None]:
    """The rows of an Open Inference Protocol infer request (one input per raw column,
    shape [rows] or [rows, 1]) and the outputs it asks for (None: all)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError(400, "the request needs 'inputs', a list of tensors")
    columns: dict[str, list] = {}
    for position, tensor in enumerate(payload["inputs"]):
        name, values = _tensor_values(tensor, position)
        columns[name] = values
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(400, f"the inputs hold different numbers of rows: {lengths}")
    outputs = payload.get("outputs")
    wanted = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) for item in outputs
        ):
            raise RequestError(400, "'outputs' must be a list of {\"name\": ...}")
        wanted = [item["name"] for item in outputs]
    return pd.DataFrame(columns), wanted


def _tensor_values(tensor: Any, position: int) -> tuple[str, list]:
    """One input tensor's name and its values, one per row."""
    if not isinstance(tensor, dict):
        raise RequestError(400, f"inputs[{position}] must be an object")
    name = tensor.get("name")
    where = f"input '{name}'" if isinstance(name, str) else f"inputs[{position}]"
    missing = [key for key in ("name", "datatype", "shape", "data") if key not in tensor]
    if missing:
        raise RequestError(400, f"{where} needs {', '.join(missing)}")
    datatype, shape, data = tensor["datatype"], tensor["shape"], tensor["data"]
    if datatype not in DATATYPES:
        raise RequestError(400, f"{where}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    if (
        not isinstance(shape, list)
        or not all(isinstance(size, int) and size >= 0 for size in shape)
        or not 1 <= len(shape) <= 2
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise RequestError(400, f"{where}: shape {shape} is not [rows] or [rows, 1]")
    values = _flat(data if isinstance(data, list) else [data])
    if len(values) != shape[0]:
        raise RequestError(400, f"{where}: shape {shape} but {len(values)} values")
    if datatype in NUMBER_TYPES and not all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in values
    ):
        raise RequestError(400, f"{where}: datatype {datatype} but a value is not a number")
    return name, values


def _flat(data: list) -> list:
    """Row-major data, flat or nested one level ([[39], [50]] or [39, 50])."""
    if any(isinstance(item, list) for item in data):
        return [value for item in data for value in (item if isinstance(item, list) else [item])]
    return data


def _plain(column: pd.Series) -> list:
    """A column as JSON values: missing values (NaN, NA) as null."""
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype="float64")
        return [None if math.isnan(value) else value for value in values.tolist()]
    if isinstance(column.dtype, pd.StringDtype):
        return column.to_numpy(dtype=object, na_value=None).tolist()
    return column.astype(object).where(column.notna(), None).tolist()


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The predictions as MLflow returns a DataFrame's: one record per row."""
    names = list(table.columns)
    columns = [_plain(table[name]) for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def output_datatype(column: pd.Series) -> str:
    return "FP64" if pd.api.types.is_float_dtype(column) else "BYTES"


def oip_outputs(table: pd.DataFrame, wanted: list[str] | None) -> list[dict[str, Any]]:
    """The predictions as Open Inference Protocol outputs, one per column (a missing text
    value as "", a missing number as null)."""
    names = list(table.columns) if wanted is None else wanted
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        raise RequestError(
            400,
            f"unknown output(s) {', '.join(unknown)}: the outputs are " + ", ".join(table.columns),
        )
    outputs = []
    for name in names:
        datatype = output_datatype(table[name])
        values = _plain(table[name])
        if datatype == "BYTES":
            values = ["" if value is None else str(value) for value in values]
        outputs.append({"name": name, "datatype": datatype, "shape": [len(values)], "data": values})
    return outputs


def input_datatype(dtype: Any) -> str:
    """The Open Inference Protocol datatype a raw column of this schema dtype is sent as."""
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOL"
    if pd.api.types.is_integer_dtype(dtype):
        return "INT64"
    if pd.api.types.is_float_dtype(dtype):
        return "FP64"
    return "BYTES"
