"""Where the data stages' work runs: Dask, embedded or on a cluster.

The data stages (validate, prepare, split) cut their work into one task per partition of
their input table (a row group of one of its shards, see `stages.common.io.partitions`):
each task reads its partition, writes its own shard of the output and returns what the
stage gathers (counts, failure cases). What a task writes depends on its partition alone,
so the outputs are the same byte for byte whatever runs the tasks and in whatever order.

The engine is chosen by the environment, never by params (dvc.yaml, params.yaml and
dvc.lock stay the same):

- nothing set: the tasks run in this process on Dask's threaded scheduler (Dask's own
  `DASK_SCHEDULER` / `DASK_NUM_WORKERS` choose another local scheduler or fewer threads);
- `DASK_SCHEDULER_ADDRESS` (Dask's own variable, e.g. `tcp://scheduler:8786`): the tasks
  are submitted to that cluster's workers. They must see the repository at the same path
  (a shared filesystem) and have this project installed.

A task that fails on a worker that died is run again by Dask; a task that raises fails
the stage, and the stage's outputs appear only when every task has finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stages.common.errors import PipelineError

T = TypeVar("T")

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "20s"


def scheduler_address() -> str | None:
    """The cluster the environment names, or None to run embedded."""
    return os.environ.get(ADDRESS_VARIABLE) or None


def describe() -> str:
    """The engine in words, for a stage's progress line."""
    address = scheduler_address()
    return f"Dask cluster at {address}" if address else "embedded"


def run_tasks(function: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """`function(item)` for each item, in the items' order, on the engine the environment
    chooses. `function` must be importable by name (a module-level function) and its
    items picklable, so that a cluster's workers can run it."""
    if not items:
        return []
    address = scheduler_address()
    if address:
        return _on_cluster(address, function, items)
    if len(items) == 1:  # nothing to schedule: no scheduler started
        return [function(items[0])]
    import dask

    tasks = [dask.delayed(function, pure=False)(item) for item in items]
    return list(dask.compute(*tasks))


def _on_cluster(address: str, function: Callable, items: Sequence) -> list[Any]:
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except OSError as exc:
        raise PipelineError(
            f"{ADDRESS_VARIABLE}={address}: cannot reach the Dask scheduler ({exc})",
            [
                f"start one (`dask scheduler`) and its workers, or unset {ADDRESS_VARIABLE} "
                "to run embedded"
            ],
        ) from None
    with client:
        futures = client.map(function, list(items), pure=False)
        return client.gather(futures)
