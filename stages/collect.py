"""collect: read the source named in params into a table, as read.

Reads `collect.source` with the read options in params. Writes the raw table as Parquet
(data/raw/table.parquet) and a report with rows, columns and the source's SHA-256
(reports/collect/report.json). The source itself is never modified.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from stages import paths
from stages.config import CollectParams, Params
from stages.errors import PipelineError
from stages.io import say, write_json, write_table


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(*, params: CollectParams) -> pd.DataFrame:
    """Read a delimited text file with the read options in params."""
    path = Path(params.source)
    if not path.is_file():
        raise PipelineError(f"{path}: source file not found (params: collect.source)")
    options: dict[str, Any] = dict(
        sep=params.delimiter,
        header=0 if params.header else None,
        names=params.names,
        na_values=params.na_values,
        skipinitialspace=params.skip_initial_space,
        encoding=params.encoding,
        nrows=params.max_rows,
        index_col=False,
    )
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, then drops them
            warnings.simplefilter("error", pd.errors.ParserWarning)
            if params.header:
                header = pd.read_csv(path, **{**options, "header": None, "nrows": 1})
                _reject_duplicate_names(path, [str(value) for value in header.iloc[0]])
            frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(
            f"{path}: cannot decode the text as {params.encoding} at byte {exc.start} "
            "(params: collect.encoding)"
        ) from None
    except LookupError:
        raise PipelineError(
            f"{path}: unknown text encoding '{params.encoding}' (params: collect.encoding)"
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise PipelineError(f"{path}: cannot parse as delimited text ({reason})") from None
    if frame.empty:
        raise PipelineError(f"{path}: no data rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _reject_duplicate_names(path: Path, names: list[str]) -> None:
    dupes = sorted(name for name, count in Counter(names).items() if count > 1)
    if dupes:
        raise PipelineError(f"{path}: duplicate column names in the header: {', '.join(dupes)}")


def collect_report(frame: pd.DataFrame, *, source: Path) -> dict[str, Any]:
    return {
        "source": str(source),
        "sha256": file_sha256(source),
        "bytes": source.stat().st_size,
        "rows": len(frame),
        "columns": frame.shape[1],
        "column_names": list(frame.columns),
    }


def run(params: Params) -> None:
    """The collect command: read the source, write the raw table and the report."""
    frame = read_source(params=params.collect)
    write_table(frame, paths.RAW_TABLE)
    write_json(collect_report(frame, source=Path(params.collect.source)), paths.COLLECT_REPORT)
    say("collect", f"{len(frame):,} rows x {frame.shape[1]} columns -> {paths.RAW_TABLE}")
