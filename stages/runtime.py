"""Where training runs: the Keras backend, the device, and a cluster of worker processes.

One process trains on TensorFlow, on the CPU or every GPU it sees (MirroredStrategy when
there are several). Several processes, on one machine or many, train one model together on
Keras 3's JAX backend (`keras.distribution.DataParallel` over `jax.distributed`):
TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3. The cluster comes from
three environment variables, the same on every worker except the process id:

    TRAIN_COORDINATOR=host:port   address of process 0, which every worker can reach
    TRAIN_NUM_PROCESSES=N         how many processes train together
    TRAIN_PROCESS_ID=i            this process, 0 to N-1

Nothing here imports Keras at module level: the backend must be chosen before Keras loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from stages.errors import PipelineError

COORDINATOR = "TRAIN_COORDINATOR"
NUM_PROCESSES = "TRAIN_NUM_PROCESSES"
PROCESS_ID = "TRAIN_PROCESS_ID"


@dataclass(frozen=True)
class Cluster:
    coordinator: str
    num_processes: int
    process_id: int

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0


def cluster_from_env(env: dict[str, str] | None = None) -> Cluster | None:
    """The cluster the environment describes, or None for a single process."""
    env = dict(os.environ if env is None else env)
    names = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)
    given = [name for name in names if env.get(name)]
    if not given:
        return None
    if len(given) < len(names):
        missing = ", ".join(name for name in names if name not in given)
        raise PipelineError(f"a training cluster needs {', '.join(names)}; missing: {missing}")
    numbers = {}
    for name in (NUM_PROCESSES, PROCESS_ID):
        try:
            numbers[name] = int(env[name])
        except ValueError:
            raise PipelineError(f"{name}={env[name]!r}: not a whole number") from None
    count, index = numbers[NUM_PROCESSES], numbers[PROCESS_ID]
    if count < 1:
        raise PipelineError(f"{NUM_PROCESSES}={count}: needs at least 1")
    if not 0 <= index < count:
        raise PipelineError(f"{PROCESS_ID}={index}: must be between 0 and {count - 1}")
    host, _, port = env[COORDINATOR].rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"{COORDINATOR}={env[COORDINATOR]!r}: expected host:port")
    return Cluster(env[COORDINATOR], count, index)


def select_backend() -> Cluster | None:
    """Choose the Keras backend before Keras is imported: JAX for a cluster of workers,
    TensorFlow (or whatever KERAS_BACKEND names) otherwise. Returns the cluster."""
    cluster = cluster_from_env()
    if cluster is not None and cluster.num_processes > 1:
        backend = os.environ.setdefault("KERAS_BACKEND", "jax")
        if backend != "jax":
            raise PipelineError(
                f"KERAS_BACKEND={backend}: training on several workers needs the jax backend "
                "(TensorFlow's MultiWorkerMirroredStrategy does not work with Keras 3)"
            )
        try:
            import jax  # noqa: F401
        except ImportError:
            raise PipelineError(
                "training on several workers needs JAX: pip install -e '.[distributed]'"
            ) from None
    return cluster


def join_cluster(cluster: Cluster) -> None:
    """Connect this process to the others and shard every batch across all their devices."""
    import jax
    import keras

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=300,
        )
    except Exception as exc:  # jax raises RuntimeError or XlaRuntimeError
        reason = " ".join(str(exc).split())[:300]
        raise PipelineError(
            f"cannot join the training cluster at {cluster.coordinator} as process "
            f"{cluster.process_id} of {cluster.num_processes} ({reason})"
        ) from None
    # Batches are split across processes by the input pipeline (train.epoch_batches), so
    # Keras must not shard them again.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    )


def leave_cluster(cluster: Cluster | None) -> None:
    if cluster is not None and cluster.num_processes > 1:
        import jax

        jax.distributed.shutdown()


def configure_device(device: str, mixed_precision: bool) -> tuple[Any, str]:
    """Make the chosen device the one TensorFlow uses; must run before any op.

    Returns (a tf.distribute strategy for several GPUs or None, a description such as
    `CPU`, `GPU x1`, `jax cpu x2`).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        import jax

        if device == "gpu" and jax.default_backend() != "gpu":
            raise PipelineError("train.device is gpu, but JAX sees no GPU")
        if mixed_precision and jax.default_backend() == "gpu":
            keras.mixed_precision.set_dtype_policy("mixed_float16")
        return None, f"jax {jax.default_backend()} x{jax.device_count()}"

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise PipelineError(
            "train.device is gpu, but TensorFlow sees no GPU",
            [
                "install a CUDA build of TensorFlow (pip install 'tensorflow[and-cuda]') or "
                "set train.device to auto"
            ],
        )
    if device == "cpu" or not gpus:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        if mixed_precision:
            print("train: mixed precision needs a GPU; training in float32 on the CPU", flush=True)
        return None, "CPU"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    return strategy, f"GPU x{len(gpus)}"
