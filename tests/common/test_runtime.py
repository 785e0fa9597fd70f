"""Where training runs: the cluster from the environment, the device, task-specific params."""

import os
import platform
import subprocess
import sys

import pytest

from stages.common.config import TrainParams
from stages.common.errors import PipelineError
from stages.common.runtime import Cluster, cluster_from_env
from stages.training.batches import fitting_steps_per_execution, steps_per_epoch

CLUSTER = {"TRAIN_COORDINATOR": "10.0.0.1:1234", "TRAIN_NUM_PROCESSES": "4"}


def test_the_cluster_comes_from_three_variables():
    assert cluster_from_env({}) is None
    cluster = cluster_from_env({**CLUSTER, "TRAIN_PROCESS_ID": "3"})
    assert cluster == Cluster("10.0.0.1:1234", 4, 3) and not cluster.is_chief


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (CLUSTER, "missing: TRAIN_PROCESS_ID"),
        ({**CLUSTER, "TRAIN_PROCESS_ID": "4"}, "must be between 0 and 3"),
        ({**CLUSTER, "TRAIN_PROCESS_ID": "one"}, "not a whole number"),
        ({**CLUSTER, "TRAIN_PROCESS_ID": "0", "TRAIN_COORDINATOR": "host"}, "expected host:port"),
    ],
)
def test_a_wrong_cluster_description_is_a_clear_error(env, message):
    with pytest.raises(PipelineError, match=message):
        cluster_from_env(env)


def test_mixed_precision_on_the_cpu_is_refused_by_the_params():
    with pytest.raises(ValueError, match="mixed_precision needs a GPU"):
        TrainParams(
            hidden_units=[4],
            learning_rate=0.1,
            batch_size=8,
            epochs=1,
            device="cpu",
            mixed_precision=True,
        )


def test_several_processes_drop_the_last_partial_batch():
    assert steps_per_epoch(100, 32) == 4
    assert steps_per_epoch(100, 32, processes=2) == 3


def test_steps_per_execution_never_run_past_an_epoch():
    assert fitting_steps_per_execution(4, 6) == 3
    assert fitting_steps_per_execution(8, 45) == 5
    assert fitting_steps_per_execution(1, 45) == 1
    assert fitting_steps_per_execution(100, 6) == 6


def test_tensorflows_start_up_noise_is_dropped_and_everything_else_kept():
    """Native writes to file descriptor 2 go through the filter, line by line."""
    script = """
import os, sys
from stages.common.runtime import quiet_native_stderr
quiet_native_stderr()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written\\n")
os.write(2, b"I0000 00:00:1.1 1 port.cc:153] oneDNN custom operations are on. You may see\\n")
os.write(2, b"E0000 00:00:1.2 1 node_def_util.cc:682] NodeDef mentions attribute use_unbounded\\n")
os.write(2, b"E0000 00:00:1.3 1 some_kernel.cc:10] a real failure\\n")
print("error: a message of ours", file=sys.stderr)
sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "E0000 00:00:1.3 1 some_kernel.cc:10] a real failure",
        "error: a message of ours",
    ]


def test_cuda_lines_are_dropped_only_without_an_nvidia_driver():
    from stages.common import runtime

    line = "E0000 00:00:1.4 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)"
    assert runtime.CUDA_ABSENT_NOISE.search(line)
    assert not runtime.NATIVE_NOISE.search(line)  # kept where a driver is present


def test_only_the_commands_that_run_a_trained_network_get_the_numpy_backend(monkeypatch):
    from stages.common import runtime

    for argv, backend in (
        (["evaluate"], "numpy"),
        (["predict", "rows.csv", "--output", "out.csv"], "numpy"),
        (["train", "--epochs", "2"], None),
        (["--help"], None),
    ):
        environ: dict[str, str] = {}  # never this process's: later tests start subprocesses
        monkeypatch.setattr(runtime.os, "environ", environ)
        runtime.use_inference_backend(argv)
        assert environ.get("KERAS_BACKEND") == backend, argv
    environ = {"KERAS_BACKEND": "jax"}
    monkeypatch.setattr(runtime.os, "environ", environ)
    runtime.use_inference_backend(["evaluate"])
    assert environ["KERAS_BACKEND"] == "jax"  # a backend the user names wins


def test_without_jax_the_inference_commands_keep_tensorflow(monkeypatch):
    """Keras's numpy backend imports JAX when it loads: where JAX is missing, evaluate and
    predict must not pick it (they would fail to import Keras)."""
    from stages.common import runtime

    environ: dict[str, str] = {}
    monkeypatch.setattr(runtime.os, "environ", environ)
    monkeypatch.setattr(
        runtime.importlib.util, "find_spec", lambda name: None if name == "jax" else object()
    )
    runtime.use_inference_backend(["evaluate"])
    assert "KERAS_BACKEND" not in environ


def test_keras_loads_for_training_without_the_modules_it_never_uses():
    """In a fresh process: TensorFlow and Keras load without JAX and pyplot, a model
    still fits, and both modules import as usual afterwards."""
    script = (
        "import sys\n"
        "from stages.common.runtime import unused_modules_kept_out, UNUSED_IN_TRAINING\n"
        "with unused_modules_kept_out():\n"
        "    import keras, numpy as np\n"
        "loaded = sorted(set(UNUSED_IN_TRAINING) & set(sys.modules))\n"
        "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        "model.compile(loss='mse')\n"
        "model.fit(np.ones((8, 2)), np.ones(8), verbose=0)\n"
        "import jax, matplotlib.pyplot\n"
        "print(loaded, keras.backend.backend())\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[] tensorflow"


FAULTS_AFTER_FREES = """
import resource, sys
import numpy as np
from stages.common.runtime import keep_freed_memory
keep_freed_memory(sys.argv[1:])
np.ones(2**20)  # numpy's start-up allocations, before the count
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    arrays = [np.ones(2**20) for _ in range(4)]  # 8 MB each, then freed
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's thresholds are glibc's",
)
def test_the_inference_commands_reuse_the_memory_they_free():
    def faults(command: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", FAULTS_AFTER_FREES, command],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(run.stdout)

    kept, returned = faults("evaluate"), faults("serve")
    # 40 rounds of 32 MB: handed back, at least 8 MB of it faults in again each round
    # (81,000 faults here); kept, the first round's pages serve the rest (1,500).
    assert returned > 40 * 1_500
    assert kept < returned / 10
