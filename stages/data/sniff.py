"""Sniffing a text file's read options: encoding, delimiter, header row, leading spaces,
missing-value tokens, and how its numbers are written (decimal comma, thousands
separators). infer-schema drafts the read options of a source with it; predict reads a
file of new rows on its own terms with it.
"""

from __future__ import annotations

import csv
import itertools
import re
import zipfile
from pathlib import Path
from typing import Any

from stages.common.config import MISSING_TOKENS as PREPARE_TOKENS
from stages.common.errors import PipelineError
from stages.data.sources import open_binary

# prepare's default tokens (but the empty string, missing anyway) and other spellings.
MISSING_TOKENS = (*PREPARE_TOKENS[1:], "n/a", "NULL", "null", "None", "-")
SAMPLE_BYTES = 1 << 16


def open_sample(path: Path) -> bytes:
    try:
        with open_binary(path) as handle:
            return handle.read(SAMPLE_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
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
    unique = len(set(first)) == len(first)
    if header and (not unique or any(is_number_text(field) for field in first)):
        header = any(not is_number_text(field) for field in first) and unique
    elif not header and unique and len(rows) > 2:
        # The sniffer takes a row of text over text columns for data; names that are not
        # numbers and never recur as a value in their column are a header all the same.
        later = [{field.strip() for field in column} for column in zip(*rows[1:], strict=False)]
        header = len(later) == len(first) and all(
            first[index] and not is_number_text(first[index]) and first[index] not in values
            for index, values in enumerate(later)
        )
    body_rows = rows[1 if header else 0 :]
    values = [field.strip() for row in body_rows for field in row]
    tokens = [token for token in MISSING_TOKENS if token in set(values)]
    decimal, thousands = number_marks(body_rows, missing=set(tokens) | {""})
    return {
        "decimal": decimal,
        "thousands": thousands,
        "encoding": encoding,
        "delimiter": delimiter,
        "header": header,
        "skip_initial_space": skip_space,
        "na_values": tokens,
        "columns": len(first),
        "first_row": first,
    }


def is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# A number written with a decimal comma (1234,5 or 1.234,5), or with commas between
# thousands and a decimal point (1,234.5).
DECIMAL_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
POINT_GROUPED = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
COMMA_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def number_marks(rows: list[list[str]], *, missing: set[str]) -> tuple[str, str | None]:
    """The decimal mark and thousands separator of a text file's numbers: `,` (and `.`
    between thousands) when some column's values read as numbers only that way and no
    column writes a decimal point; `,` between thousands when some column's values read
    as numbers only with commas between thousands."""
    comma = point = grouped_point = grouped_comma = False
    for column in itertools.zip_longest(*rows, fillvalue=""):
        present = [value.strip() for value in column if value.strip() not in missing]
        if not present:
            continue
        if all(is_number_text(value) for value in present):
            point = point or any("." in value for value in present)
        elif all(DECIMAL_COMMA.match(value) for value in present):
            comma = True
            grouped_point = grouped_point or any(POINT_GROUPED.match(v) for v in present)
        elif all(COMMA_GROUPED.match(value) or is_number_text(value) for value in present):
            grouped_comma = True
    if comma and not point:
        return ",", "." if grouped_point else None
    if grouped_comma and not comma:
        return ".", ","
    return ".", None
