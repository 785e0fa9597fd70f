"""predict: use the trained model on new raw rows.

predict reads raw rows in any format collect reads, on their own terms (`new_rows_params`:
format, encoding, delimiter, header and number marks from the file itself), with or
without the target column, in any column order, `predict.batch_rows` rows at a time so
memory stays bounded (CSV, Parquet and JSON alike).
Each batch is scored by stages/model/predictor.py, the path `stages serve` takes too:
clean, validate against the schema without the target and without its vocabularies,
encode as prepare does, then the network in models/network.keras, on Keras's numpy
backend (no TensorFlow start). Columns the model does not use are ignored; a category
outside a vocabulary is predicted as unknown with a warning on its row; invalid rows get
their reason instead of a prediction
(`predict.on_invalid: skip`) or stop the command with every reason and no output (`fail`).
The output is written to a temporary file and renamed into place: one row per input row,
in input order; beside it, `<stem>.drift.json` compares the batch with the train split
(stages/data/drift.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from stages.common import paths
from stages.common.config import CollectParams, Params
from stages.common.errors import PipelineError
from stages.common.io import atomic_dir, atomic_path, read_json, say, shard_name, write_json
from stages.data.drift import DriftCounter
from stages.data.sniff import open_sample, sniff_text
from stages.data.sources import file_format, read_batches
from stages.model.predictor import Predictions, Predictor, invalid_rows

MAX_REASONS_SHOWN = 10


class _PredictionWriter:
    """Appends prediction batches to a Parquet or CSV file."""

    def __init__(self, path: Path, *, classes: list[str]) -> None:
        """`classes` empty: regression, a predicted number and no probabilities."""
        self.path = path
        self.parquet = path.suffix.lower() != ".csv"
        predicted = pa_arrow.string() if classes else pa_arrow.float64()
        fields = [("row", pa_arrow.int64()), ("predicted", predicted)]
        fields += [(f"probability_{label}", pa_arrow.float64()) for label in classes]
        fields += [("error", pa_arrow.string()), ("warning", pa_arrow.string())]
        self.schema = pa_arrow.schema(fields)
        self.writer = pq.ParquetWriter(path, self.schema) if self.parquet else None
        self.first = True

    def write(self, batch: pd.DataFrame) -> None:
        if self.writer is not None:
            self.writer.write_table(
                pa_arrow.Table.from_pandas(batch, schema=self.schema, preserve_index=False)
            )
        else:
            batch.to_csv(self.path, mode="w" if self.first else "a", header=self.first, index=False)
        self.first = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def new_rows_params(
    path: str | Path,
    training: CollectParams,
    *,
    columns: list[str],
    header: bool | None = None,
) -> CollectParams:
    """How to read a file of new rows: on its own terms, not the training source's. The
    format comes from its name (else as collect.format says); a text file's encoding,
    delimiter, spaces and number marks are sniffed as infer-schema sniffs them, and its
    first line is a header when it names the schema's `columns` (`header` True or False
    overrides); a file without one has the training columns in their order."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        kind = file_format(path, "auto")
    except PipelineError:
        kind = file_format(path, training.format)
    base = training.model_copy(update={"max_rows": None, "format": kind})
    if kind != "csv":
        return base.model_copy(update={"header": True, "names": None})
    sniffed = sniff_text(open_sample(path))
    if header is None:
        named = sum(field in columns for field in sniffed["first_row"])
        header = named >= max(1, len(sniffed["first_row"]) // 2)
    names = None if header else (training.names or columns)
    na_values = sorted(set(training.na_values) | set(sniffed["na_values"]))
    return base.model_copy(
        update={
            "header": header,
            "names": names,
            "delimiter": sniffed["delimiter"],
            "encoding": sniffed["encoding"],
            "skip_initial_space": sniffed["skip_initial_space"],
            "na_values": na_values,
            "decimal": sniffed["decimal"],
            "thousands": sniffed["thousands"],
        }
    )


@dataclass
class _Tally:
    """What the batches predicted so far add up to; drift is None without a train profile."""

    drift: DriftCounter | None
    rows: int = 0
    invalid: int = 0
    unseen: Counter[str] = dataclasses.field(default_factory=Counter)
    extra: list[str] | None = None  # the columns the model does not use, from the first batch

    def add(self, predictions: Predictions, invalid: int) -> None:
        self.rows += len(predictions.table)
        self.invalid += invalid
        self.unseen.update(predictions.unseen)
        if self.drift is not None:
            self.drift.add(predictions.encoded)


def input_files(input_path: str) -> list[Path]:
    """The files of new rows: the file itself, or a folder's files in name order (a table's
    shards, or files with the same columns)."""
    path = Path(input_path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        raise PipelineError(f"{path}: the folder has no files")
    return files


def run(params: Params, *, input_path: str, output_path: str, header: bool | None = None) -> None:
    """The predict command. A folder of files as input gives, unless the output is a CSV
    file, a folder of Parquet shards as output: one per input file, rows numbered across
    them."""
    start = time.perf_counter()
    predictor = Predictor.load(params)  # the rows are cleaned and encoded by it
    files = input_files(input_path)
    read_params = new_rows_params(
        files[0], params.collect, columns=predictor.columns, header=header
    )
    profile = Path(paths.PROFILE)
    tally = _Tally(DriftCounter(read_json(profile)) if profile.is_file() else None)
    output = Path(output_path)
    classes = predictor.spec.classes
    scoring = functools.partial(
        _predict_file, predictor=predictor, read_params=read_params, params=params, tally=tally
    )
    if Path(input_path).is_dir() and output.suffix.lower() != ".csv":
        with atomic_dir(output) as folder:
            for index, file in enumerate(files):
                writer = _PredictionWriter(folder / shard_name(index), classes=classes)
                try:
                    scoring(file, writer)
                finally:
                    writer.close()
    else:
        suffix = ".csv" if output.suffix.lower() == ".csv" else ".parquet"
        with atomic_path(output, suffix=suffix) as tmp:
            writer = _PredictionWriter(tmp, classes=classes)
            try:
                for file in files:
                    scoring(file, writer)
            finally:
                writer.close()
    _report(tally, params, output=output, seconds=time.perf_counter() - start)


def _predict_file(
    file: Path,
    writer: _PredictionWriter,
    *,
    predictor: Predictor,
    read_params: CollectParams,
    params: Params,
    tally: _Tally,
) -> None:
    """Score one file's rows batch by batch into `writer`, numbering them on from the rows
    of the files before it."""
    for chunk in read_batches(
        file,
        params=read_params,
        chunk_rows=params.predict.batch_rows,
        optional_column=predictor.spec.target,
    ):
        if tally.extra is None:
            tally.extra = [
                str(name)
                for name in chunk.columns
                if name not in predictor.schema.columns and name != predictor.spec.target
            ]
            if tally.extra:
                names = ", ".join(tally.extra)
                say("predict", f"ignoring column(s) the model does not use: {names}")
        try:
            predictions = predictor.predict(chunk)
        except PipelineError as exc:
            hint = _header_hint(read_params) if tally.rows == 0 else []
            raise PipelineError(f"{file}: {exc.message}", [*exc.details, *hint]) from None
        if tally.rows == 0:
            _check_first_batch(predictions.table, read_params, str(file))
        bad = _checked_errors(predictions.table, params, str(file), first=tally.rows)
        batch = predictions.table
        batch.insert(0, "row", np.arange(tally.rows, tally.rows + len(batch), dtype="int64"))
        writer.write(batch)
        tally.add(predictions, invalid=bad)


def _header_hint(read_params: CollectParams) -> list[str]:
    """What to try when a CSV's first batch fails: the other reading of its first line."""
    if read_params.format != "csv":
        return []
    if read_params.header:
        return ["the first line was read as a header: --no-header if it holds data"]
    return ["the first line was read as data: --header if it names the columns"]


def _check_first_batch(table: pd.DataFrame, read_params: CollectParams, input_path: str) -> None:
    """A text file whose first batch is invalid in every row was read wrongly (its first line
    taken as data, or as a header, when it is not): stop with the other reading's hint."""
    errors = table["error"]
    if read_params.format != "csv" or not len(table) or errors.isna().any():
        return
    raise PipelineError(
        f"{input_path}: every row of the first batch is invalid; nothing written",
        [f"row 0: {errors.iloc[0]}", *_header_hint(read_params)],
    )


def _checked_errors(table: pd.DataFrame, params: Params, input_path: str, *, first: int) -> int:
    """The batch's invalid rows; with predict.on_invalid fail, a PipelineError that gives
    each one's reason (rows numbered from `first`)."""
    reasons = invalid_rows(table, first=first)
    if reasons and params.predict.on_invalid == "fail":
        shown = reasons[:MAX_REASONS_SHOWN]
        if len(reasons) > len(shown):
            shown.append(f"... and {len(reasons) - len(shown)} more")
        raise PipelineError(
            f"{input_path}: {len(reasons)} invalid row(s) and predict.on_invalid "
            "is fail; nothing written",
            shown,
        )
    return len(reasons)


def _report(tally: _Tally, params: Params, *, output: Path, seconds: float) -> None:
    """The drift report beside the output, the warnings, and the closing line."""
    if tally.drift is not None:
        threshold = params.predict.drift_threshold
        report = tally.drift.summary(threshold=threshold, unseen=dict(tally.unseen))
        report_path = output.with_name(f"{output.stem}.drift.json")
        write_json(report, report_path)
        for name in report["drifted"]:
            say(
                "predict",
                f"warning: column '{name}' drifted from the train split (PSI "
                f"{report['columns'][name]['psi']:.3f} > predict.drift_threshold {threshold})",
            )
        say("predict", f"drift against the train split -> {report_path}")
    if tally.unseen:
        counts = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.unseen.items()))
        say(
            "predict",
            f"warning: unseen categories, predicted as unknown (see the warning column): {counts}",
        )
    rows, invalid = tally.rows, tally.invalid
    say(
        "predict",
        f"{rows:,} rows ({rows - invalid:,} predicted, {invalid:,} invalid) in {seconds:.1f} s, "
        f"{rows / max(seconds, 1e-9):,.0f} rows/s -> {output}",
    )
