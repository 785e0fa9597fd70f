import gzip
from pathlib import Path

import pytest

from stages.collect import collect_report, file_sha256, read_source
from stages.config import CollectParams
from stages.errors import PipelineError

ADULT_LIKE = (
    "39, State-gov, 77516, ?, <=50K\n"
    "50, Self-emp-not-inc, 83311, Bachelors, >50K\n"
    "38, Private, 215646, HS-grad, <=50K\n"
    "\n"
)
NAMES = ["age", "workclass", "fnlwgt", "education", "income"]


def params(source: Path, **options) -> CollectParams:
    return CollectParams(source=str(source), **options)


def test_headerless_file_with_missing_marker_and_leading_spaces(tmp_path: Path):
    source = tmp_path / "adult.data"
    source.write_text(ADULT_LIKE)
    frame = read_source(
        params=params(source, header=False, names=NAMES, na_values=["?"], skip_initial_space=True)
    )
    assert list(frame.columns) == NAMES
    assert len(frame) == 3  # the trailing blank line is not a row
    assert frame["workclass"].tolist() == ["State-gov", "Self-emp-not-inc", "Private"]
    assert frame["education"].isna().tolist() == [True, False, False]
    assert frame["age"].tolist() == [39, 50, 38]


def test_max_rows_and_report(tmp_path: Path):
    source = tmp_path / "adult.data"
    source.write_text(ADULT_LIKE)
    frame = read_source(params=params(source, header=False, names=NAMES, max_rows=2))
    assert len(frame) == 2
    report = collect_report(frame, source=source)
    assert report["rows"] == 2
    assert report["columns"] == 5
    assert report["sha256"] == file_sha256(source)
    assert len(report["sha256"]) == 64
    assert report["bytes"] == len(ADULT_LIKE.encode())


def test_header_row_and_other_delimiter(tmp_path: Path):
    source = tmp_path / "t.tsv"
    source.write_text("a\tb\n1\tx\n2\ty\n")
    frame = read_source(params=params(source, delimiter="\t"))
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        (b"", {}, "the file is empty"),
        (b"a,b\n", {}, "no data rows"),
        (b"a,a\n1,2\n", {}, "duplicate column names in the header: a"),
        (b"a,b\n1,2\n3,4,5\n", {}, "cannot parse as delimited text"),
        (b"a,b\n1,caf\xe9\n", {}, "cannot decode the text as utf-8"),
        (b"a,b\n1,2\n", {"encoding": "no-such-codec"}, "unknown text encoding"),
        (gzip.compress(b"a,b\n1,2\n")[:12], {}, "cannot"),
    ],
)
def test_unreadable_sources_fail_clearly(tmp_path: Path, content, options, message):
    source = tmp_path / "bad.csv"
    source.write_bytes(content)
    with pytest.raises(PipelineError) as caught:
        read_source(params=params(source, **options))
    assert message in str(caught.value)
    assert str(source) in str(caught.value)


def test_missing_source_names_the_key(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"file not found \(params: collect.source\)"):
        read_source(params=params(tmp_path / "absent.csv"))
