"""Reading a source into a table: files, folders and globs, URLs and databases.

CSV/TSV (any delimiter, with or without a header, plain or compressed), Parquet, JSON
arrays and JSON Lines, and Excel workbooks, read in batches (`read_batches`); used by the
collect stage, by infer-schema and by predict.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from stages.common.config import CollectParams
from stages.common.errors import PipelineError
from stages.common.io import file_sha256

COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz")
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".data": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
}
URL_TIMEOUT_S = 60
_ENV_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def source_kind(source: str) -> str:
    """`url`, `database`, `glob`, `folder` or `file`."""
    if source.startswith(("http://", "https://")):
        return "url"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source):
        return "database"
    if any(char in source for char in "*?["):
        return "glob"
    return "folder" if Path(source).is_dir() else "file"


def file_format(path: str | Path, declared: str) -> str:
    """The format of one file: as declared, or from its name (compression suffix ignored)."""
    if declared != "auto":
        return "json" if declared == "jsonl" else declared
    name = Path(str(path)).name.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    found = FORMATS.get(Path(name).suffix)
    if found is None:
        raise PipelineError(
            f"{path}: cannot tell the format from the name; set collect.format "
            "(csv, parquet, json or excel)"
        )
    return found


def _expand_env(text: str, *, key: str) -> str:
    """Replace ${VAR} placeholders from the environment; a missing variable is an error."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise PipelineError(f"{key} names the environment variable {name}, which is not set")
        return os.environ[name]

    return _ENV_PLACEHOLDER.sub(value, text)


def hide_password(url: str) -> str:
    """A database URL fit for a report or a log: the password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _source_files(source: str, kind: str) -> list[Path]:
    if kind == "glob":
        files = sorted(Path(name) for name in glob.glob(source, recursive=True))
        files = [path for path in files if path.is_file()]
        if not files:
            raise PipelineError(f"{source}: no file matches (params: collect.source)")
        return files
    if kind == "folder":
        files = sorted(
            path
            for path in Path(source).iterdir()
            if path.is_file() and not path.name.startswith(".")
        )
        if not files:
            raise PipelineError(f"{source}: the folder has no files (params: collect.source)")
        return files
    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (params: collect.source)")
    return [path]


def read_file(path: Path, *, params: CollectParams) -> pd.DataFrame:
    """One file in its format, with the read options in params."""
    return next(iter(read_batches(path, params=params, chunk_rows=None)))


def _checked(frame: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    if frame.columns.duplicated().any():
        dupes = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
        raise PipelineError(f"{path}: duplicate column names: {', '.join(dupes)}")
    if frame.empty:
        raise PipelineError(f"{path}: no data rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def file_chunks(
    files: list[Path], *, params: CollectParams, chunk_rows: int | None
) -> Iterator[pd.DataFrame]:
    """Several files with the same columns, in name order, `chunk_rows` rows at a time (or
    each file whole), `collect.max_rows` rows at most."""
    columns: list[str] | None = None
    left = params.max_rows
    for path in files:
        for frame in read_batches(path, params=params, chunk_rows=chunk_rows):
            if columns is None:
                columns = list(frame.columns)
            elif list(frame.columns) != columns:
                raise PipelineError(
                    f"{path}: its columns differ from {files[0]}'s",
                    [f"{files[0].name}: {columns}", f"{path.name}: {list(frame.columns)}"],
                )
            if left is not None:
                frame = frame.head(left)
                left -= len(frame)
            if len(frame):
                yield frame
            if left == 0:
                return


def download(url: str, directory: Path) -> Path:
    """Fetch `url` into `directory`, keeping its file name (and so its format)."""
    name = Path(urllib.request.url2pathname(url.split("?")[0].rstrip("/"))).name or "download"
    target = directory / name
    try:
        with (
            urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response,
            target.open("wb") as out,
        ):
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise PipelineError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PipelineError(f"{url}: cannot download ({reason})") from None
    return target


def database_chunks(params: CollectParams, *, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """Run `collect.query` against the database at `collect.source` through SQLAlchemy;
    the answer `chunk_rows` rows at a time (or whole), `collect.max_rows` rows at most."""
    import sqlalchemy

    if not params.query:
        raise PipelineError("a database source needs collect.query, the SQL to run")
    if re.search(r"://[^:/@]*:(?!\$\{)[^@]+@", params.source):
        raise PipelineError(
            "collect.source holds a password: write it as an ${ENV_VAR} placeholder "
            "and set the variable in the environment"
        )
    url = _expand_env(params.source, key="collect.source")
    where = hide_password(params.source)
    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # an unknown dialect or driver, a malformed URL
        raise PipelineError(f"{where}: not a usable database URL ({exc})") from None
    left, empty = params.max_rows, True
    try:
        with engine.connect() as connection:
            answer = pd.read_sql_query(
                sqlalchemy.text(params.query), connection, chunksize=chunk_rows
            )
            for frame in [answer] if chunk_rows is None else answer:
                if left is not None:
                    frame = frame.head(left)
                    left -= len(frame)
                if len(frame) or empty:
                    frame = _checked(frame, where)
                    empty = False
                    yield frame
                if left == 0:
                    return
    except PipelineError:
        raise
    except Exception as exc:  # drivers raise their own error types
        reason = " ".join(str(exc).split("\n")[0].split())
        raise PipelineError(f"{where}: the query failed ({reason[:300]})") from None
    finally:
        engine.dispose()


@contextmanager
def opened_source(
    params: CollectParams, *, chunk_rows: int | None
) -> Iterator[tuple[Iterator[pd.DataFrame], dict[str, Any]]]:
    """The source's rows `chunk_rows` at a time (or each file whole), and what the report
    says of the source. A database's fingerprint is of the rows, so it is filled in (as
    `sha256`) once every chunk has been read."""
    kind = source_kind(params.source)
    if kind == "database":
        digest = hashlib.sha256()
        source: dict[str, Any] = {"source": hide_password(params.source), "kind": kind}

        def fingerprinted() -> Iterator[pd.DataFrame]:
            for frame in database_chunks(params, chunk_rows=chunk_rows):
                digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
                yield frame
            source["sha256"] = digest.hexdigest()

        yield fingerprinted(), source
        return
    with tempfile.TemporaryDirectory(prefix=".tmp-download-") as directory:
        files = [download(params.source, Path(directory))] if kind == "url" else None
        files = files or _source_files(params.source, kind)
        digests = [file_sha256(path) for path in files]
        fingerprint = (
            digests[0]
            if len(digests) == 1
            else hashlib.sha256("".join(digests).encode()).hexdigest()
        )
        source = {
            "source": params.source,
            "kind": kind,
            "files": len(files),
            "bytes": sum(path.stat().st_size for path in files),
            "sha256": fingerprint,
        }
        yield file_chunks(files, params=params, chunk_rows=chunk_rows), source


def collect_table(params: CollectParams) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the source whole; return the table and what the report says of the source."""
    with opened_source(params, chunk_rows=None) as (chunks, source):
        frames = list(chunks)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return table, source


def read_source(*, params: CollectParams) -> pd.DataFrame:
    """The source as one table."""
    return collect_table(params)[0]


def read_batches(
    source: str | Path,
    *,
    params: CollectParams,
    chunk_rows: int | None,
    optional_column: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Read a file in its format with the read options in params, whole (`chunk_rows`
    None: one frame) or `chunk_rows` rows at a time, so memory stays bounded.

    For a text file without a header, `optional_column` (the target, at prediction time)
    may be missing from the file: when each line has one field fewer than `names`, it is
    left out.
    """
    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    kind = file_format(path, params.format)
    if kind == "csv":
        frames = _csv_batches(path, params, chunk_rows, optional_column)
    elif kind == "parquet":
        frames = _parquet_batches(path, params, chunk_rows)
    elif kind == "json":
        frames = _json_batches(path, params, chunk_rows)
    else:
        frames = _excel_batches(path, params)
    empty = True
    with _parse_errors(path, params, kind):
        for frame in frames:
            if frame.empty:
                continue
            empty = False
            yield _checked(frame, path)
    if empty:
        raise PipelineError(f"{path}: no data rows")


def _csv_batches(
    path: Path, params: CollectParams, chunk_rows: int | None, optional_column: str | None
) -> Iterator[pd.DataFrame]:
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
        yield pd.read_csv(path, **options)
    else:
        yield from pd.read_csv(path, chunksize=chunk_rows, **options)


def _parquet_batches(
    path: Path, params: CollectParams, chunk_rows: int | None
) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    if chunk_rows is None:
        frame = pd.read_parquet(path)
        yield frame.head(params.max_rows) if params.max_rows is not None else frame
        return
    left = params.max_rows
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        if left is not None:
            frame, left = frame.head(left), left - len(frame)
        yield frame
        if left is not None and left <= 0:
            return


JSON_BLOCK_CHARS = 1 << 20


class _JsonText:
    """A text stream read in blocks, with a cursor, for decoding one JSON value at a time."""

    def __init__(self, text: io.TextIOBase) -> None:
        self.text, self.buffer, self.position, self.ended = text, "", 0, False

    def more(self) -> bool:
        block = self.text.read(JSON_BLOCK_CHARS)
        self.ended = not block
        self.buffer, self.position = self.buffer[self.position :] + block, 0
        return bool(block)

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in " \t\r\n":
                self.position += 1
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self.more():
                return ""

    def value(self, decoder: json.JSONDecoder):
        while True:
            try:
                value, self.position = decoder.raw_decode(self.buffer, self.position)
                return value
            except json.JSONDecodeError:
                if self.ended or not self.more():
                    raise


def json_records(path: Path, *, encoding: str) -> Iterator[dict]:
    """The records of a JSON file, one at a time and read in blocks: a JSON array of
    objects or JSON Lines (one object per line), told apart by the first character."""
    decoder = json.JSONDecoder()
    encoding = "utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding
    with open_binary(path) as raw:
        stream = _JsonText(io.TextIOWrapper(raw, encoding=encoding))
        array = stream.peek() == "["
        if array:
            stream.position += 1
            if stream.peek() == "]":
                return
        count = 0
        while stream.peek():
            value = stream.value(decoder)
            count += 1
            if not isinstance(value, dict):
                raise json.JSONDecodeError(
                    f"record {count} is a {type(value).__name__}, not an object", "", 0
                )
            yield value
            if array:
                following = stream.peek()
                if following == "]":
                    return
                if following != ",":
                    raise json.JSONDecodeError(
                        f"after record {count}, {following!r} where ',' or ']' belongs"
                        if following
                        else "the array is not closed",
                        "",
                        0,
                    )
                stream.position += 1


def _json_batches(
    path: Path, params: CollectParams, chunk_rows: int | None
) -> Iterator[pd.DataFrame]:
    """Records flattened as `pandas.json_normalize` does: nested objects become dotted
    column names (`address.city`); lists stay values (a nested column)."""
    records = itertools.islice(json_records(path, encoding=params.encoding), params.max_rows)
    batch = list(itertools.islice(records, chunk_rows))  # chunk_rows None: every record
    if len(batch) == 1:
        _reject_wrapped_records(path, batch[0])
    while batch:
        yield pd.json_normalize(batch).infer_objects()
        batch = list(itertools.islice(records, chunk_rows)) if chunk_rows else []


def _reject_wrapped_records(path: Path, record: dict) -> None:
    """One object that holds the records under a key (`{"data": [...]}`): say which key."""
    for key, value in record.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            raise PipelineError(
                f"{path}: one JSON object whose key '{key}' holds {len(value):,} records; "
                "save those records as the file (a JSON array, or one object per line)"
            )


def _excel_batches(path: Path, params: CollectParams) -> Iterator[pd.DataFrame]:
    """The sheet, whole (a workbook holds at most about a million rows), read inside the
    caller's error handling."""
    try:
        yield pd.read_excel(
            path,
            sheet_name=params.sheet,
            header=0 if params.header else None,
            names=params.names if not params.header else None,
            na_values=params.na_values or None,
            nrows=params.max_rows,
        )
    except (ValueError, IndexError) as exc:
        if "orksheet" in str(exc) or isinstance(exc, IndexError):
            raise PipelineError(
                f"{path}: no sheet {params.sheet!r} ({exc}) (params: collect.sheet)"
            ) from None
        raise


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """A file's bytes, decompressed when its name ends in .gz, .bz2, .xz or .zip (the
    archive's first member)."""
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if not members:
                raise PipelineError(f"{path}: the archive is empty")
            with archive.open(members[0]) as handle:
                yield handle
        return
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(
        Path(name).suffix,
        lambda file: open(file, "rb"),  # noqa: SIM115
    )
    with opener(path) as handle:
        yield handle


def _options(params: CollectParams, names: list[str] | None) -> dict[str, Any]:
    return dict(
        sep=params.delimiter,
        decimal=params.decimal,
        thousands=params.thousands,
        header=0 if params.header else None,
        names=names,
        na_values=params.na_values,
        skipinitialspace=params.skip_initial_space,
        encoding=params.encoding,
        nrows=params.max_rows,
        index_col=False,
    )


@contextmanager
def _parse_errors(path: Path, params: CollectParams, kind: str) -> Iterator[None]:
    """Turn the readers' errors into one-line PipelineErrors that name the file."""
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
    except (EOFError, zipfile.BadZipFile) as exc:
        raise PipelineError(
            f"{path}: the compressed file is damaged or cut short ({exc})"
        ) from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: cannot read as JSON records ({exc.msg})") from None
    except ImportError as exc:
        raise PipelineError(f"{path}: reading {kind} needs {exc.name} ({exc})") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise PipelineError(f"{path}: cannot read as {kind} ({reason})") from None


def _reject_duplicate_names(path: Path, names: list[str]) -> None:
    dupes = sorted(name for name, count in Counter(names).items() if count > 1)
    if dupes:
        raise PipelineError(f"{path}: duplicate column names in the header: {', '.join(dupes)}")
