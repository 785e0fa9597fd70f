import json
from pathlib import Path

import pytest

from stages.common.io import TMP_PREFIX, atomic_path, staging_dir, write_json


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


def test_shard_writer_writes_a_folder_of_shards_only_on_success(tmp_path: Path):
    import pandas as pd

    from stages.common.errors import PipelineError
    from stages.common.io import ShardWriter, partitions, read_table, read_table_batches

    target = tmp_path / "t.parquet"
    target.write_bytes(b"an older file in the way")
    with ShardWriter(target) as writer:
        writer.write(pd.DataFrame({"a": [1, 2]}))
        writer.write(pd.DataFrame({"a": [3]}))
    assert sorted(p.name for p in target.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    batches = list(read_table_batches(target, batch_rows=2))
    assert [len(b) for b in batches] == [2, 1]
    assert read_table(target)["a"].tolist() == [1, 2, 3]
    parts = partitions(target)
    assert [(p.start, p.rows, p.index) for p in parts] == [(0, 2, 0), (2, 1, 1)]
    assert parts[1].read().index.tolist() == [2]  # each row under its number in the table
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "u.parquet") as writer:
        writer.write(pd.DataFrame({"a": [1]}))
        raise RuntimeError("killed")
    with (
        pytest.raises(PipelineError, match="no rows to write"),
        ShardWriter(tmp_path / "v.parquet"),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_unify_shards_gives_every_shard_one_schema(tmp_path: Path):
    import pandas as pd
    import pyarrow.parquet as pq

    from stages.common.io import read_table, unify_shards, write_shard

    folder = tmp_path / "t.parquet"
    folder.mkdir()
    write_shard(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), folder, 0)
    write_shard(pd.DataFrame({"a": [0.5], "b": [None]}), folder, 1)  # float, all missing
    unify_shards(folder)
    schemas = [pq.read_schema(file) for file in sorted(folder.iterdir())]
    assert schemas[0].remove_metadata().equals(schemas[1].remove_metadata())
    assert read_table(folder)["a"].tolist() == [1.0, 2.0, 0.5]


def test_a_seeded_draw_gives_each_partition_its_share():
    import numpy as np

    from stages.common.io import drawn_rows, rows_within

    chosen = drawn_rows(1_000, 100, seed=3)
    assert len(set(chosen.tolist())) == 100 and (np.diff(chosen) > 0).all()
    assert (chosen == drawn_rows(1_000, 100, seed=3)).all()
    shares = [rows_within(chosen, start, 300) + start for start in (0, 300, 600, 900)]
    assert np.concatenate(shares).tolist() == chosen.tolist()
    assert all(
        ((share >= start) & (share < start + 300)).all()
        for share, start in zip(shares, (0, 300, 600, 900), strict=True)
    )
