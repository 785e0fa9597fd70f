import bz2
import gzip
import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.common.config import CollectParams
from stages.common.errors import PipelineError
from stages.common.io import file_sha256
from stages.data.sources import (
    collect_table,
    hide_password,
    read_batches,
    read_source,
    source_kind,
)

ADULT_LIKE = (
    "39, State-gov, 77516, ?, <=50K\n"
    "50, Self-emp-not-inc, 83311, Bachelors, >50K\n"
    "38, Private, 215646, HS-grad, <=50K\n"
    "\n"
)
NAMES = ["age", "workclass", "fnlwgt", "education", "income"]
TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})


def params(source, **options) -> CollectParams:
    return CollectParams(source=str(source), watch=str(source), **options)


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
    frame, report = collect_table(params(source, header=False, names=NAMES, max_rows=2))
    assert len(frame) == 2
    assert report == {
        "source": str(source),
        "kind": "file",
        "files": 1,
        "bytes": len(ADULT_LIKE.encode()),
        "sha256": file_sha256(source),
    }


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("t.tsv", lambda p: p.write_text("a\tb\n1\tx\n2\ty\n3\t\n")),
        ("t.csv.gz", lambda p: p.write_bytes(gzip.compress(b"a\tb\n1\tx\n2\ty\n3\t\n"))),
        ("t.csv.bz2", lambda p: p.write_bytes(bz2.compress(b"a\tb\n1\tx\n2\ty\n3\t\n"))),
        ("t.parquet", lambda p: TABLE.to_parquet(p)),
        ("t.jsonl", lambda p: TABLE.to_json(p, orient="records", lines=True)),
        (
            "t.jsonl.gz",
            lambda p: TABLE.to_json(p, orient="records", lines=True, compression="gzip"),
        ),
    ],
)
def test_file_formats_plain_and_compressed(tmp_path: Path, name, write):
    write(tmp_path / name)
    frame = read_source(params=params(tmp_path / name, delimiter="\t"))
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [1, 2, 3]
    assert frame["b"].tolist()[:2] == ["x", "y"] and pd.isna(frame["b"].tolist()[2])


def test_zip_archive(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "t.csv.zip", "w") as archive:
        archive.writestr("t.csv", "a,b\n1,x\n")
    assert read_source(params=params(tmp_path / "t.csv.zip")).to_dict("list") == {
        "a": [1],
        "b": ["x"],
    }


def test_a_folder_or_glob_of_files_with_the_same_columns(tmp_path: Path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts/2.csv").write_text("a,b\n3,z\n")
    (tmp_path / "parts/1.csv").write_text("a,b\n1,x\n2,y\n")
    for source in (tmp_path / "parts", tmp_path / "parts/*.csv"):
        frame, report = collect_table(params(source))
        assert frame["a"].tolist() == [1, 2, 3]  # files in name order
        assert report["files"] == 2
    (tmp_path / "parts/3.csv").write_text("a,c\n4,w\n")
    with pytest.raises(PipelineError, match=r"3\.csv: its columns differ from"):
        read_source(params=params(tmp_path / "parts"))
    with pytest.raises(PipelineError, match="no file matches"):
        read_source(params=params(tmp_path / "parts/*.parquet"))


def test_sqlite_database_with_credentials_from_the_environment(tmp_path: Path, monkeypatch):
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        TABLE.to_sql("items", connection, index=False)
    frame, report = collect_table(
        params(f"sqlite:///{database}", query="SELECT a, b FROM items ORDER BY a")
    )
    assert frame["a"].tolist() == [1, 2, 3]
    assert report["kind"] == "database" and len(report["sha256"]) == 64
    with pytest.raises(PipelineError, match=r"needs collect\.query"):
        read_source(params=params(f"sqlite:///{database}"))
    with pytest.raises(PipelineError, match="the query failed"):
        read_source(params=params(f"sqlite:///{database}", query="SELECT * FROM nothing"))
    with pytest.raises(PipelineError, match="holds a password"):
        read_source(params=params("postgresql://me:secret@db.example.com/shop", query="SELECT 1"))
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    with pytest.raises(PipelineError, match="environment variable DB_PASSWORD, which is not set"):
        read_source(params=params("postgresql://me:${DB_PASSWORD}@db/shop", query="SELECT 1"))
    assert hide_password("postgresql://me:secret@db/shop") == "postgresql://me:***@db/shop"


def test_source_kinds(tmp_path: Path):
    assert source_kind("https://example.org/a.csv") == "url"
    assert source_kind("sqlite:///a.db") == "database"
    assert source_kind("data/*.csv") == "glob"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind("data/a.csv") == "file"


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        (b"", {}, "the file is empty"),
        (b"a,b\n", {}, "no data rows"),
        (b"a,a\n1,2\n", {}, "duplicate column names in the header: a"),
        (b"a,b\n1,2\n3,4,5\n", {}, "cannot read as csv"),
        (b"a,b\n1,caf\xe9\n", {}, "cannot decode the text as utf-8"),
        (b"a,b\n1,2\n", {"encoding": "no-such-codec"}, "unknown text encoding"),
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


PENGUINS = Path(__file__).parents[1] / "fixtures/tables/penguins.csv"


def test_json_array_and_json_lines_are_told_apart_by_content(tmp_path: Path):
    """A real table as a JSON array of nested records (as web APIs write it) and as JSON
    Lines, both named .json: the same flattened table, read whole or in batches."""
    penguins = pd.read_csv(PENGUINS)
    records = [
        {
            "species": row.species,
            "island": row.island,
            "bill": {"length_mm": row.bill_length_mm, "depth_mm": row.bill_depth_mm},
            "body_mass_g": row.body_mass_g,
        }
        for row in penguins.itertuples()
    ]
    array, lines = tmp_path / "array.json", tmp_path / "lines.json"
    array.write_text(json.dumps(records, indent=2).replace("NaN", "null"))
    lines.write_text("\n".join(json.dumps(r) for r in records).replace("NaN", "null"))
    for path in (array, lines):
        frame = read_source(params=params(path))
        # pandas.json_normalize's order: plain keys first, then the flattened objects
        assert list(frame.columns) == [
            "species",
            "island",
            "body_mass_g",
            "bill.length_mm",
            "bill.depth_mm",
        ]
        assert len(frame) == len(penguins)
        np.testing.assert_allclose(frame["bill.length_mm"], penguins["bill_length_mm"])
        batches = list(read_batches(path, params=params(path), chunk_rows=100))
        assert [len(batch) for batch in batches] == [100, 100, 100, 44]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1}, {"a": 2}', "the array is not closed"),
        ("[1, 2]", "record 1 is a int, not an object"),
        ('{"data": [{"a": 1}, {"a": 2}]}', "key 'data' holds 2 records"),
        ('[{"a": 1} {"a": 2}]', "after record 1"),
    ],
)
def test_malformed_json_names_the_file_and_the_problem(tmp_path: Path, text, message):
    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message) as error:
        read_source(params=params(path))
    assert str(path) in str(error.value)


def test_an_excel_workbook_by_sheet_name_or_position(tmp_path: Path):
    penguins = pd.read_csv(PENGUINS)
    path = tmp_path / "penguins.xlsx"
    with pd.ExcelWriter(path) as book:
        penguins.to_excel(book, sheet_name="penguins", index=False)
        pd.DataFrame({"note": ["Palmer penguins"]}).to_excel(book, sheet_name="notes", index=False)
    first = read_source(params=params(path))
    pd.testing.assert_frame_equal(first, penguins, check_dtype=False)
    assert read_source(params=params(path, sheet="notes"))["note"].tolist() == ["Palmer penguins"]
    with pytest.raises(PipelineError, match=r"no sheet 'gone'.*collect.sheet"):
        read_source(params=params(path, sheet="gone"))


def test_decimal_commas_and_thousands_separators(tmp_path: Path):
    path = tmp_path / "eu.csv"
    path.write_text("name;amount;rate\na;1.234,5;0,5\nb;12,25;1,75\n")
    frame = read_source(params=params(path, delimiter=";", decimal=",", thousands="."))
    assert frame["amount"].tolist() == [1234.5, 12.25]
    assert frame["rate"].tolist() == [0.5, 1.75]
    with pytest.raises(ValueError, match="thousands"):
        params(path, decimal=",", thousands=",")


def test_a_damaged_workbook_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"not a workbook")
    with pytest.raises(PipelineError, match=r"broken.xlsx: cannot read as excel"):
        read_source(params=params(path))


def test_collect_in_chunks_stores_what_a_whole_read_stores(tmp_path: Path, monkeypatch):
    """A source read chunk by chunk (a shard each): a column of numbers in one chunk and
    text in another is text, whole numbers in one chunk and missing values in another are
    floats, max_rows cuts across chunks, and the table reads back as pandas reads the
    file whole."""
    import yaml

    from stages import collect
    from stages.common import paths
    from stages.common.config import load_params
    from stages.common.io import read_table, shard_files

    lines = ["code,count,label"] + [f"{i},{i},{'ab'[i % 2]}" for i in range(10)]
    lines[8] = "x7,,b"  # row 7: text in `code`, nothing in `count`
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    repo_params = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    repo_params["collect"] = {"source": "t.csv", "watch": "t.csv", "max_rows": 9}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(collect, "ROW_GROUP_ROWS", 3)
    collect.run(load_params("params.yaml"))
    assert len(shard_files(paths.RAW_TABLE)) == 3
    whole = pd.read_csv("t.csv", nrows=9)
    stored = read_table(paths.RAW_TABLE)
    assert stored["code"].tolist() == whole["code"].tolist()  # every code as text
    assert stored["count"].dtype == "float64" and stored["count"].isna().sum() == 1
    pd.testing.assert_frame_equal(stored, whole, check_dtype=False)
