"""infer-schema: draft a pandera schema, and the read options, from a source.

Sniffs a text file's encoding, delimiter, header row, leading spaces and missing-value
tokens; reads the table as collect would; then proposes, per column, a dtype, whether it
may be missing, a vocabulary for a categorical text column, and sensible numeric checks
(a number never below 0 stays at or above 0; the observed minimum and maximum become hard
bounds only with --strict-ranges). High-cardinality text and identifier-like columns are
listed under metadata.non_features with the reason. The result is readable YAML meant to
be reviewed and committed. With --update-params, params.yaml is pointed at the source,
the read options found, the target and the schema.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from stages.collect import collect_table, download, file_format, source_kind
from stages.config import (
    BASELINES_FOR_TASK,
    METRICS_FOR_TASK,
    CollectParams,
    read_params_file,
)
from stages.errors import PipelineError
from stages.io import atomic_path, say

MISSING_TOKENS = ("?", "NA", "N/A", "n/a", "NULL", "null", "None", "-")
SAMPLE_BYTES = 1 << 16
MAX_CATEGORIES = 50


def _open_sample(path: Path) -> bytes:
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(path) as handle:
                return handle.read(SAMPLE_BYTES)
        if name.endswith(".bz2"):
            with bz2.open(path) as handle:
                return handle.read(SAMPLE_BYTES)
        if name.endswith(".xz"):
            with lzma.open(path) as handle:
                return handle.read(SAMPLE_BYTES)
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                return archive.read(archive.namelist()[0])[:SAMPLE_BYTES]
        with path.open("rb") as handle:
            return handle.read(SAMPLE_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile, IndexError) as exc:
        raise PipelineError(f"{path}: cannot read a sample ({exc})") from None


def sniff_text(sample: bytes) -> dict[str, Any]:
    """Read options of a delimited text sample: encoding, delimiter, header, spaces, tokens."""
    if not sample.strip():
        raise PipelineError("the file is empty")
    try:
        text = sample.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:  # a character cut by the end of the sample
            text, encoding = sample[: exc.start].decode("utf-8"), "utf-8"
        else:
            text, encoding = sample.decode("latin-1"), "latin-1"
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 2 and len(sample) == SAMPLE_BYTES:
        lines = lines[:-1]  # the last line may be cut short
    body = "\n".join(lines)
    try:
        dialect = csv.Sniffer().sniff(body, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    fields = [field for row in rows for field in row[1:]]
    skip_space = bool(fields) and sum(f.startswith(" ") for f in fields) > 0.5 * len(fields)
    try:
        header = csv.Sniffer().has_header(body)
    except csv.Error:
        header = True
    first = [field.strip() for field in rows[0]] if rows else []
    if header and (len(set(first)) != len(first) or any(_is_number(field) for field in first)):
        header = any(not _is_number(field) for field in first) and len(set(first)) == len(first)
    values = [field.strip() for row in rows[1 if header else 0 :] for field in row]
    tokens = [token for token in MISSING_TOKENS if token in set(values)]
    return {
        "encoding": encoding,
        "delimiter": delimiter,
        "header": header,
        "skip_initial_space": skip_space,
        "na_values": tokens,
        "columns": len(first),
    }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_file(source: str, kind: str, directory: Path) -> Path:
    """The file whose sample is sniffed: the download of a URL, the first of several."""
    if kind == "url":
        return download(source, directory)
    if kind == "glob":
        files = sorted(path for path in Path().glob(source) if path.is_file())
    elif kind == "folder":
        files = sorted(path for path in Path(source).iterdir() if path.is_file())
    else:
        files = [Path(source)]
    if not files or not files[0].is_file():
        raise PipelineError(f"{source}: file not found")
    return files[0]


def read_options(source: str, *, names: list[str] | None, query: str | None) -> dict[str, Any]:
    """collect.* params that read `source`: sniffed for a text file, plain otherwise."""
    kind = source_kind(source)
    options: dict[str, Any] = {"source": source, "query": query, "format": "auto"}
    if kind == "database":
        sqlite = source.removeprefix("sqlite:///")
        # A server database has nothing DVC can watch: collect re-runs when params change.
        options["watch"] = sqlite if source.startswith("sqlite:///") else "params.yaml"
        return options
    options["watch"] = str(Path(source).parent) if kind == "glob" else source
    with tempfile.TemporaryDirectory(prefix=".tmp-sniff-") as directory:
        first = _first_file(source, kind, Path(directory))
        if file_format(first, "auto") != "csv":
            return options
        sniffed = sniff_text(_open_sample(first))
    options.update({key: sniffed[key] for key in ("encoding", "delimiter", "header")})
    options.update(skip_initial_space=sniffed["skip_initial_space"], na_values=sniffed["na_values"])
    if not sniffed["header"]:
        width = sniffed["columns"]
        names = names or [f"column_{index}" for index in range(1, width + 1)]
        if len(names) != width:
            raise PipelineError(f"{source}: {width} columns, but --names gives {len(names)}")
        options["names"] = names
    return options


def infer_task(series: pd.Series, *, task: str, max_categories: int = MAX_CATEGORIES) -> str:
    """`auto`: regression for a numeric target with more distinct values than
    `max_categories`, classification otherwise."""
    if task != "auto":
        return task
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "regression" if numeric and series.nunique() > max_categories else "classification"


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str = "auto",
    max_categories: int = MAX_CATEGORIES,
    strict_ranges: bool = False,
) -> dict[str, Any]:
    """A pandera schema (as the YAML mapping) proposed from a table."""
    if target not in frame.columns:
        raise PipelineError(
            f"target column '{target}' is not among the columns: {', '.join(frame.columns)}"
        )
    task = infer_task(frame[target], task=task, max_categories=max_categories)
    if task == "regression" and not pd.api.types.is_numeric_dtype(frame[target]):
        raise PipelineError(
            f"target column '{target}' is {frame[target].dtype}, not numbers: it cannot be "
            "a regression target"
        )
    columns: dict[str, Any] = {}
    non_features: dict[str, str] = {}
    rows = len(frame)
    for name in frame.columns:
        series = frame[name]
        present = series.dropna()
        entry: dict[str, Any] = {"nullable": bool(series.isna().any())}
        distinct = present.nunique()
        if name == target and task == "regression":
            entry.update(
                description="The target: a number to predict (rows without it are dropped).",
                dtype="float64",
            )
            if len(present) and present.min() >= 0:
                entry["checks"] = {"greater_than_or_equal_to": 0}
        elif name == target:
            classes = sorted(str(value) for value in present.unique())
            if len(classes) < 2:
                raise PipelineError(f"target column '{target}' has {len(classes)} class(es)")
            entry.update(
                description=f"The target: {len(classes)} classes.",
                dtype="str",
                nullable=False,
                checks={"isin": classes},
            )
        elif pd.api.types.is_bool_dtype(series):
            entry.update(dtype="bool", description="Yes/no.")
        elif pd.api.types.is_numeric_dtype(series):
            entry["dtype"] = "int64" if pd.api.types.is_integer_dtype(series) else "float64"
            checks: dict[str, Any] = {}
            if strict_ranges and len(present):
                checks["in_range"] = {
                    "min_value": present.min().item(),
                    "max_value": present.max().item(),
                }
            elif len(present) and present.min() >= 0:
                checks["greater_than_or_equal_to"] = 0
            if checks:
                entry["checks"] = checks
            entry["description"] = f"A number ({distinct} distinct values)."
            if (
                pd.api.types.is_integer_dtype(series)
                and rows >= 20
                and distinct == rows
                and present.max() - present.min() + 1 == rows
            ):
                non_features[name] = "consecutive distinct integers: looks like a row number"
        else:
            values = present.astype(str)
            entry["dtype"] = "str"
            if distinct <= max_categories and distinct <= max(2, rows // 2):
                entry["checks"] = {"isin": sorted(values.unique())}
                entry["description"] = f"A category ({distinct} values)."
            else:
                entry["description"] = f"Text ({distinct} distinct values)."
                reason = (
                    "every value is distinct: looks like an identifier"
                    if distinct == len(present)
                    else f"{distinct} distinct values, more than {max_categories}: free text"
                )
                non_features[name] = reason
        order = ("description", "dtype", "nullable", "checks")
        columns[str(name)] = {key: entry[key] for key in order if key in entry}
    return {
        "schema_type": "dataframe",
        "version": "0.35.0",
        "columns": columns,
        "coerce": True,
        "strict": True,
        "unique_column_names": True,
        "metadata": {"non_features": non_features},
    }


def schema_yaml(schema: dict[str, Any], *, source: str, rows: int) -> str:
    header = (
        f"# pandera schema inferred by `stages infer-schema` from {source} ({rows:,} rows).\n"
        "# Review it before committing: vocabularies (isin) are the categories the model\n"
        "# knows; an unlisted value is invalid at validation. metadata.non_features lists the\n"
        "# columns that are not model inputs, with the reason.\n"
    )
    return header + yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=100)


def fit_task(raw: dict[str, Any], task: str) -> list[str]:
    """Make the params that depend on the task suit it; returns what changed."""
    changes = []
    evaluate = raw.setdefault("evaluate", {})
    allowed = BASELINES_FOR_TASK[task]
    baselines = evaluate.get("baselines", [])
    if any(name not in allowed for name in baselines):
        evaluate["baselines"] = list(allowed)
        changes.append(f"evaluate.baselines: {', '.join(allowed)}")
    metrics = METRICS_FOR_TASK[task]
    gates = evaluate.get("gates") or {}
    for key in ("minimum", "maximum", "max_shortfall"):
        bounds = gates.get(key) or {}
        dropped = [metric for metric in bounds if metric not in metrics]
        for metric in dropped:
            del bounds[metric]
            changes.append(f"dropped gate evaluate.gates.{key}.{metric}")
    if gates.get("baseline") not in (None, *allowed):
        gates["baseline"] = "hist_gradient_boosting"
    train = raw.setdefault("train", {})
    wrong_monitor = "val_accuracy" if task == "regression" else "val_r2"
    if train.get("monitor") == wrong_monitor:
        train["monitor"] = "val_loss"
        changes.append("train.monitor: val_loss")
    if task == "regression" and train.get("class_weight", "none") != "none":
        train["class_weight"] = "none"
        changes.append("train.class_weight: none")
    return changes


def update_params(
    path: Path, *, options: dict[str, Any], target: str, schema_path: str, task: str
) -> list[str]:
    """Point params.yaml at the source, its read options, the target, the task and the
    schema, and fit the task's other params to it; returns the task changes made."""
    raw = read_params_file(path)
    collect = {**options, "max_rows": None}
    defaults = CollectParams.model_fields
    for key in ("delimiter", "header", "names", "na_values", "skip_initial_space", "encoding"):
        if key not in collect:
            field = defaults[key]
            collect[key] = field.default_factory() if field.default_factory else field.default
    raw["collect"] = collect
    raw.setdefault("dataset", {}).update(target=target, schema=schema_path, task=task)
    changes = fit_task(raw, task)
    with atomic_path(path, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(raw, sort_keys=False, width=100), encoding="utf-8")
    return changes


def run(
    *,
    source: str,
    target: str,
    out: str,
    names: list[str] | None,
    task: str = "auto",
    query: str | None,
    update: str | None,
    max_categories: int,
    strict_ranges: bool,
) -> None:
    options = read_options(source, names=names, query=query)
    params = CollectParams(**{"watch": source, **options})
    frame, _ = collect_table(params)
    task = infer_task(frame[target], task=task, max_categories=max_categories)
    schema = infer_schema(
        frame,
        target=target,
        task=task,
        max_categories=max_categories,
        strict_ranges=strict_ranges,
    )
    with atomic_path(out, suffix=".yaml") as tmp:
        tmp.write_text(schema_yaml(schema, source=source, rows=len(frame)), encoding="utf-8")
    excluded = schema["metadata"]["non_features"]
    say(
        "infer-schema",
        f"{len(frame):,} rows x {frame.shape[1]} columns; {len(excluded)} not features"
        + (f" ({', '.join(excluded)})" if excluded else "")
        + f" -> {out}",
    )
    if update:
        changes = update_params(
            Path(update), options=options, target=target, schema_path=out, task=task
        )
        say("infer-schema", f"{update} now reads {source} with target '{target}' ({task})")
        if changes:
            say("infer-schema", f"params fitted to {task}: " + "; ".join(changes))
