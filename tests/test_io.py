import json
from pathlib import Path

import pytest

from stages.io import TMP_PREFIX, atomic_path, staging_dir, write_json


def test_atomic_path_leaves_nothing_when_the_write_fails(tmp_path: Path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of it")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_path_replaces_the_old_file_in_one_step(tmp_path: Path):
    target = tmp_path / "report.json"
    target.write_text('{"old": true}')
    write_json({"new": True}, target)
    assert json.loads(target.read_text()) == {"new": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_staging_dir_replaces_only_what_it_wrote(tmp_path: Path):
    target = tmp_path / "reports" / "train"
    (target / "plots").mkdir(parents=True)
    (target / "plots" / "stale.tsv").write_text("old")
    (target / ".gitignore").write_text("/metrics.json\n")
    with staging_dir(target) as tmp:
        (tmp / "plots").mkdir()
        (tmp / "plots" / "loss.tsv").write_text("step\tloss\n")
        (tmp / "metrics.json").write_text("{}")
    assert (target / ".gitignore").read_text() == "/metrics.json\n"
    assert sorted(p.name for p in (target / "plots").iterdir()) == ["loss.tsv"]
    assert (target / "metrics.json").read_text() == "{}"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_staging_dir_publishes_nothing_when_the_block_fails(tmp_path: Path):
    target = tmp_path / "train"
    with pytest.raises(RuntimeError), staging_dir(target) as tmp:
        (tmp / "metrics.json").write_text("{}")
        raise RuntimeError("training failed")
    assert list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["train"]
