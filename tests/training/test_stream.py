"""Train rows streamed from a Parquet file's row groups: every row once per epoch, in
batches as many as in memory, by (seed, epoch) alone; several processes each read their
own shards and take the same steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.common.errors import PipelineError
from stages.training.batches import steps_per_epoch
from stages.training.stream import (
    TrainRows,
    epoch_plan,
    process_steps,
    stream_batches,
    windows,
)


@pytest.fixture
def rows(tmp_path) -> TrainRows:
    frame = pd.DataFrame({"id": np.arange(1_050), "value": np.arange(1_050) * 0.5})
    frame.to_parquet(tmp_path / "train.parquet", index=False, row_group_size=100)
    return TrainRows.from_parquet(tmp_path / "train.parquet")


def _ids(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return (frame["id"].to_numpy(),)


def _epochs(rows, *, first=0, epochs=3, seed=7, process=0, processes=1, batch=64):
    batches = stream_batches(
        rows,
        _ids,
        batch_size=batch,
        seed=seed,
        first_epoch=first,
        epochs=epochs,
        shuffle_rows=300,
        process=process,
        processes=processes,
    )
    return [ids for (ids,) in batches]


def test_the_shards_are_the_row_groups(rows):
    assert rows.rows == 1_050
    assert rows.shard_rows == [100] * 10 + [50]
    assert rows.shard(10)["id"].tolist() == list(range(1_000, 1_050))


def test_every_row_once_per_epoch_in_as_many_batches_as_in_memory(rows):
    batches = _epochs(rows)
    per_epoch = steps_per_epoch(1_050, 64)
    assert len(batches) == 3 * per_epoch
    epochs = [np.concatenate(batches[i * per_epoch : (i + 1) * per_epoch]) for i in range(3)]
    for ids in epochs:
        assert sorted(ids.tolist()) == list(range(1_050))
    assert not np.array_equal(epochs[0], epochs[1])  # each epoch its own order
    assert all(len(batch) == 64 for batch in batches[: per_epoch - 1])


def test_windows_hold_at_most_the_shuffle_rows_and_the_order_depends_on_seed_and_epoch(rows):
    plan = epoch_plan(rows.shard_rows, seed=7, epoch=0, shuffle_rows=300)
    assert sorted(shard for group, _ in plan for shard in group) == list(range(11))
    for group, permutation in plan:
        size = sum(rows.shard_rows[shard] for shard in group)
        assert size <= 300 and sorted(permutation.tolist()) == list(range(size))
    again = epoch_plan(rows.shard_rows, seed=7, epoch=0, shuffle_rows=300)
    assert [group for group, _ in plan] == [group for group, _ in again]
    other = epoch_plan(rows.shard_rows, seed=7, epoch=1, shuffle_rows=300)
    assert [group for group, _ in plan] != [group for group, _ in other]
    assert windows([500, 10], np.array([0, 1]), 300) == [[0], [1]]  # a big shard alone


def test_a_stream_started_at_epoch_k_is_the_unbroken_stream_from_epoch_k(rows):
    per_epoch = steps_per_epoch(1_050, 64)
    unbroken = _epochs(rows, epochs=4)
    resumed = _epochs(rows, first=2, epochs=4)
    assert len(resumed) == 2 * per_epoch
    for a, b in zip(unbroken[2 * per_epoch :], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = _epochs(rows, seed=8, epochs=1)
    assert any(not np.array_equal(a, b) for a, b in zip(unbroken, other_seed, strict=False))


def test_processes_read_disjoint_shards_and_take_the_same_steps(rows):
    steps = process_steps(rows.shard_rows, 64, 2)
    assert steps == (4 * 100 + 50) // 32  # the process dealt the 50-row shard
    for epoch in range(3):
        plans = [
            epoch_plan(
                rows.shard_rows, seed=7, epoch=epoch, shuffle_rows=300, process=p, processes=2
            )
            for p in (0, 1)
        ]
        shards = [{shard for group, _ in plan for shard in group} for plan in plans]
        assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(11))
        taken = [
            _epochs(rows, first=epoch, epochs=epoch + 1, process=p, processes=2) for p in (0, 1)
        ]
        assert len(taken[0]) == len(taken[1]) == steps
        for process, batches in enumerate(taken):
            assert all(len(batch) == 32 for batch in batches)
            ids = np.concatenate(batches)
            assert len(set(ids.tolist())) == len(ids)  # each row at most once
            assert {int(i) // 100 for i in ids} <= shards[process]  # from its own shards only
    with pytest.raises(PipelineError, match="fewer than the 12 training processes"):
        process_steps(rows.shard_rows, 96, 12)


def test_a_sample_is_every_row_up_to_its_size_else_a_seeded_draw(rows):
    everything = rows.sample(5_000, seed=0)
    assert everything["id"].tolist() == list(range(1_050))
    drawn = rows.sample(200, seed=0)
    assert len(drawn) == 200 and drawn["id"].is_unique and drawn["id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(drawn, rows.sample(200, seed=0))
    assert not drawn.equals(rows.sample(200, seed=1))


def test_a_frame_in_memory_is_one_shard():
    frame = pd.DataFrame({"id": np.arange(10)})
    rows = TrainRows(frame=frame)
    assert rows.shard_rows == [10] and rows.everything() is frame


def test_a_damaged_file_is_named(tmp_path):
    from stages.common.errors import PipelineError

    path = tmp_path / "train.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match=r"train\.parquet: not a readable Parquet file"):
        TrainRows.from_parquet(path)


@pytest.mark.parametrize(("process", "processes"), [(0, 1), (1, 2)])
def test_the_tf_data_stream_cuts_the_windows_into_the_same_batches(rows, process, processes):
    """What training feeds the model (tf.data's rebatch of the windows) is what
    stream_batches, the reference, yields."""
    from stages.training.batches import streamed_batches
    from stages.training.stream import stream_windows

    def windows(epoch):
        return stream_windows(
            rows,
            _ids,
            seed=7,
            epoch=int(epoch),
            shuffle_rows=300,
            process=process,
            processes=processes,
        )

    fed = streamed_batches(
        windows,
        _ids(rows.shard(0).iloc[:1]),
        batch_size=64,
        first_epoch=1,
        epochs=3,
        processes=processes,
        steps=process_steps(rows.shard_rows, 64, processes) if processes > 1 else None,
    )
    expected = _epochs(rows, first=1, epochs=3, process=process, processes=processes)
    got = [batch.numpy() for (batch,) in fed]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
