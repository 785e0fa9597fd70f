"""collect: read the source named in params into a table, as read.

Reads `collect.source` with the read options in params. Writes the raw table as Parquet
(data/raw/table.parquet) and a report with rows, columns and the source's SHA-256
(reports/collect/report.json). The source itself is never modified.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
    frames = list(read_chunks(params.source, params=params, chunk_rows=None))
    return frames[0]


def read_chunks(
    source: str | Path,
    *,
    params: CollectParams,
    chunk_rows: int | None,
    optional_column: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Read `source` with the read options in params, whole or `chunk_rows` rows at a time.

    For a file without a header, `optional_column` (the target, at prediction time) may be
    missing from the file: when each line has one field fewer than `names`, it is left out.
    """
    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (params: collect.source)")
    with _parse_errors(path, params):
        names = params.names
        if not params.header and optional_column and names and optional_column in names:
            width = pd.read_csv(path, **{**_options(params, None), "nrows": 1}).shape[1]
            if width == len(names) - 1:
                names = [name for name in names if name != optional_column]
        options = _options(params, names)
        if params.header:
            header = pd.read_csv(path, **{**options, "header": None, "nrows": 1})
            _reject_duplicate_names(path, [str(value) for value in header.iloc[0]])
        if chunk_rows is None:
            chunks: Iterable[pd.DataFrame] = [pd.read_csv(path, **options)]
        else:
            chunks = pd.read_csv(path, chunksize=chunk_rows, **options)
        empty = True
        for frame in chunks:
            if frame.empty:
                continue
            empty = False
            frame.columns = [str(column) for column in frame.columns]
            yield frame
        if empty:
            raise PipelineError(f"{path}: no data rows")


def _options(params: CollectParams, names: list[str] | None) -> dict[str, Any]:
    return dict(
        sep=params.delimiter,
        header=0 if params.header else None,
        names=names,
        na_values=params.na_values,
        skipinitialspace=params.skip_initial_space,
        encoding=params.encoding,
        nrows=params.max_rows,
        index_col=False,
    )


@contextmanager
def _parse_errors(path: Path, params: CollectParams) -> Iterator[None]:
    """Turn pandas' reading errors into one-line PipelineErrors that name the file."""
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, then drops them
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
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
