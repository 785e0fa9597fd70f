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

import atexit
import contextlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.common.errors import PipelineError

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
                "training on several workers needs JAX: pip install -r requirements.lock -e ."
            ) from None
    return cluster


# Modules that TensorFlow and Keras import when they are installed, for what training never
# uses: JAX for TensorFlow Lite's converter, matplotlib's pyplot for Keras's image galleries.
UNUSED_IN_TRAINING = ("jax", "matplotlib.pyplot")


@contextlib.contextmanager
def unused_modules_kept_out() -> Iterator[None]:
    """While Keras loads on TensorFlow to train, the modules of UNUSED_IN_TRAINING read as
    not installed (both libraries then skip what needs them): 0.45 s of a 2.8 s import
    here. Afterwards they import as usual. Other backends load untouched (JAX needs jax)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        yield
        return
    kept_out = [name for name in UNUSED_IN_TRAINING if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        for name in kept_out:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


# The commands that only run a trained network.
INFERENCE_COMMANDS = frozenset({"evaluate", "predict", "serve"})
BATCH_INFERENCE_COMMANDS = INFERENCE_COMMANDS - {"serve"}


def command_of(argv: list[str]) -> str | None:
    """The command `python -m stages` was given: its first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def use_inference_backend(argv: list[str]) -> None:
    """For `python -m stages <command>`, before Keras is imported: a command that only runs
    a trained network gets Keras's numpy backend, unless KERAS_BACKEND names another.
    Loading the network and predicting then take no TensorFlow start (about 5 s here);
    the outputs equal TensorFlow's to float32 rounding. (A process that goes on to train,
    such as a test runner calling the commands in turn, keeps its backend.)"""
    command = command_of(argv)
    # Keras's numpy backend imports JAX when it loads; without JAX, TensorFlow runs it.
    if command in INFERENCE_COMMANDS and importlib.util.find_spec("jax") is not None:
        os.environ.setdefault("KERAS_BACKEND", "numpy")


# glibc's malloc settings (mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD).
_MMAP_THRESHOLD, _TRIM_THRESHOLD = -3, -1
# Arrays up to this size come from the heap, not a mapping of their own (glibc's ceiling).
HEAP_ARRAY_BYTES = 32 * 2**20
# Freed heap memory kept for the next arrays, up to this much, rather than handed back.
KEPT_FREE_BYTES = 512 * 2**20


def keep_freed_memory(argv: list[str]) -> None:
    """For `python -m stages <command>`: evaluate and predict, which run a trained network
    over a whole table and exit, keep the memory of the arrays they free for the next
    ones rather than return it to the kernel (serve, which stays up, returns it). Each
    call into the network makes arrays of the same sizes, a few MB each, that glibc would
    hand back and fault in again, page by page (Adult's permutation importance, 15 calls
    of 32,540 rows: 270,000-380,000 page faults and 3.9-4.3 s, against 30,000-64,000 and
    3.3-3.5 s with the memory kept). Nothing changes where the C library is not glibc."""
    command = command_of(argv)
    if command not in BATCH_INFERENCE_COMMANDS or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_MMAP_THRESHOLD, HEAP_ARRAY_BYTES)
    mallopt(_TRIM_THRESHOLD, KEPT_FREE_BYTES)


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
            from stages.common.io import say  # not at import: io loads pandas

            say("train", "mixed precision needs a GPU; training in float32 on the CPU")
        return None, "CPU"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    return strategy, f"GPU x{len(gpus)}"


# What TensorFlow's native code prints on every start, which reads like a failure and is
# none: absl's notice before it is set up, oneDNN's and the CPU's notices, and the
# "NodeDef mentions attribute" note of a tf.data graph built by a newer version.
NATIVE_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\]|To enable the following instructions:"
    r"|node_def_util\.cc:\d+\] NodeDef mentions attribute"
)
# Without an NVIDIA driver, CUDA's "not found" lines say nothing; with one, they matter.
CUDA_ABSENT_NOISE = re.compile(
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\].*(no NVIDIA GPU|UNKNOWN ERROR \(303\))"
)


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def quiet_native_stderr() -> None:
    """Drop TensorFlow's start-up noise from this process's stderr (file descriptor 2, where
    native code writes too), passing everything else through, line by line.

    For `python -m stages`; never inside a test runner that captures output.
    """
    pattern = NATIVE_NOISE
    if not nvidia_driver_present():
        pattern = re.compile(f"{NATIVE_NOISE.pattern}|{CUDA_ABSENT_NOISE.pattern}")
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not pattern.search(line.decode("utf-8", "replace")):
                    os.write(original, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer closes: the thread reads to its end
        thread.join(timeout=5)

    atexit.register(restore)


def tensorflow_version() -> str | None:
    """TensorFlow's version, or None where it is not installed (the JAX route)."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__
