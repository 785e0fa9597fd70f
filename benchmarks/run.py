"""Benchmarks of the pipeline: what its stages cost, and how far one machine goes.

    python benchmarks/run.py            # the full run (about 45 minutes on 2 cores)
    python benchmarks/run.py --quick    # a reduced run for CI (under 2 minutes)
    python benchmarks/run.py --scale 1000000 10000000 --out /tmp/scale.json
                                        # every stage on each row count: seconds, peak memory
    python benchmarks/run.py --scale 10000000 --cluster
                                        # the same, the data stages on a 2-worker LocalCluster
    python benchmarks/run.py --overhead 5
                                        # only the overhead on Adult, 5 runs, replacing its
                                        # row in --out

1. overhead: a forced `dvc repro` of the whole pipeline against benchmarks/single_script.py,
   which does the same cleaning, encoding, split, model, epochs and batch size in one
   process, on the same data, in the same run; the median ratio and the fixed cost.
2. no-op: a `dvc repro` with nothing to do, and `python -m stages --help`.
3. data stages: collect, validate, prepare and split on Adult-like synthetic rows
   (benchmarks/generate.py) fed through the normal collect source: seconds, peak memory
   and rows per second per stage.
4. training input: samples per second of the train stage's own fit (its callbacks
   included) against a bare `model.fit` on the same in-memory arrays, same model and batch.

Results print as a table and are written as JSON (--out, benchmarks/results.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.generate import generate  # noqa: E402

ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
DATA_STAGES = ("collect", "validate", "prepare", "split")
MODEL_STAGES = ("baselines", "train", "evaluate")


# Runs a command in a process of its own and writes its wall seconds and peak memory (KB)
# to argv[1]. The peak the kernel reports for a process includes what its parent held
# when it started (Linux keeps the high-water mark across exec), and this process may hold
# the generated rows: forked from this small launcher, the command's peak is its own. The
# launcher times the command itself, so its own start is not counted.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as measured:
    measured.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed(command: list[str], cwd: Path, *, env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak memory (MB) and output of one command."""
    with tempfile.NamedTemporaryFile(prefix="timed-", suffix=".txt") as measured:
        process = subprocess.run(
            [sys.executable, "-c", LAUNCHER, measured.name, *command],
            cwd=cwd,
            env=env or ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{process.stdout[-3000:]}")
        seconds, peak_kb = Path(measured.name).read_text().split()
        return float(seconds), int(peak_kb) / 1024, process.stdout


def copy_project_files(target: Path) -> Path:
    """The project's files as git sees them (tracked, or untracked and not ignored), without
    dvc.lock, copied to `target`: a checkout that has run nothing yet."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if name != "dvc.lock" and (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def project(workdir: Path, *, source: Path | None, epochs: int, batch_size: int = 512) -> Path:
    """A copy of the project with fixed epochs and no baselines, gates, importance or slices
    (the single script does none of them), in a fresh git repository."""
    repo = copy_project_files(workdir / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    if source is not None:
        params["collect"].update(source=str(source), watch=str(source))
    params["train"].update(epochs=epochs, patience=0, batch_size=batch_size)
    params["evaluate"].update(baselines=[], gates={}, importance_repeats=0, slices=[])
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=repo, env=ENV, check=True, capture_output=True)
    return repo


def stage_seconds(output: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"^(\w+): done in ([\d.]+) s", output, re.M)}


def set_learning_rate(repo: Path, value: float) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def bench_overhead(name: str, source: Path | None, *, reps: int, epochs: int) -> dict:
    """A forced `dvc repro`, then a re-run after a change of a train param (the learning
    rate: train and evaluate re-run), each against the single script, alternating."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        repo = project(Path(tmp), source=source, epochs=epochs)
        pipeline, script, stages, changed, rerun_stages = [], [], [], [], []
        for rep in range(reps):
            seconds, _, output = timed(["dvc", "repro", "--force"], repo)
            pipeline.append(seconds)
            stages.append(stage_seconds(output))
            seconds, _, _ = timed([sys.executable, str(REPO / "benchmarks/single_script.py")], repo)
            script.append(seconds)
            # A value not run before, so DVC's run cache cannot restore the outputs.
            set_learning_rate(repo, 0.0021 + rep * 1e-5)
            seconds, _, output = timed(["dvc", "repro"], repo)
            changed.append(seconds)
            rerun_stages.append(sorted(stage_seconds(output)))
    in_stages = {stage: statistics.median(run[stage] for run in stages) for stage in stages[0]}
    median_pipeline, median_script = statistics.median(pipeline), statistics.median(script)
    return {
        "param_change_s": round(statistics.median(changed), 2),
        "param_change_ratio": round(
            statistics.median(c / s for c, s in zip(changed, script, strict=True)), 3
        ),
        "param_change_reran": rerun_stages[0],
        "data": name,
        "epochs": epochs,
        "repetitions": reps,
        "pipeline_s": round(median_pipeline, 2),
        "script_s": round(median_script, 2),
        "ratio": round(statistics.median(p / s for p, s in zip(pipeline, script, strict=True)), 3),
        "fixed_cost_s": round(median_pipeline - median_script, 2),
        "stage_s": {stage: round(value, 2) for stage, value in in_stages.items()},
        # Wall time outside the stages' own work: process starts, imports, DVC's hashing.
        "outside_stages_s": round(median_pipeline - sum(in_stages.values()), 2),
    }


def bench_noop(reps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        repo = project(Path(tmp), source=None, epochs=1)
        timed(["dvc", "repro"], repo)
        noop = [timed(["dvc", "repro"], repo)[0] for _ in range(reps)]
        helps = [timed([sys.executable, "-m", "stages", "--help"], repo)[0] for _ in range(reps)]
    return {
        "noop_repro_s": round(statistics.median(noop), 3),
        "help_s": round(statistics.median(helps), 3),
    }


def worker_peaks_mb(client) -> int:
    """The largest peak resident memory of a cluster's workers since they started: each
    one's own (VmHWM), not what the process that started it held, which rusage counts."""

    def own_peak_kb() -> int:  # defined here: Dask ships it to the workers by value
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/self/status")

    peaks = client.run(own_peak_kb)
    return round(max(peaks.values()) / 1024)


def bench_data_stages(
    rows: int, workdir: Path, *, end_to_end: bool = False, client=None
) -> tuple[dict, Path]:
    """The data stages on `rows` Adult-like rows, one process each; with `end_to_end`, the
    baselines (none), train (1 epoch) and evaluate too. With a Dask `client`, the data
    stages submit their tasks to its cluster (DASK_SCHEDULER_ADDRESS), and each stage's
    row also gives the workers' peak so far."""
    source = generate(workdir / f"adult_{rows}.data", rows)
    repo = project(workdir / f"rows_{rows}", source=source, epochs=1)
    env = ENV if client is None else {**ENV, "DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    result: dict = {"rows": rows, "engine": "embedded" if client is None else "cluster"}
    result["stages"] = {}
    for stage in DATA_STAGES + (MODEL_STAGES if end_to_end else ()):
        seconds, peak, _ = timed([sys.executable, "-m", "stages", stage], repo, env=env)
        result["stages"][stage] = {
            "seconds": round(seconds, 2),
            "peak_mb": round(peak),
            "rows_per_s": round(rows / seconds),
        }
        if client is not None:
            result["stages"][stage]["workers_peak_mb"] = worker_peaks_mb(client)
    data = [result["stages"][stage] for stage in DATA_STAGES]
    result["total_s"] = round(sum(s["seconds"] for s in data), 2)
    result["peak_mb"] = max(s["peak_mb"] for s in data)
    if end_to_end:
        every = result["stages"].values()
        result["end_to_end_s"] = round(sum(s["seconds"] for s in every), 2)
        result["end_to_end_peak_mb"] = max(s["peak_mb"] for s in every)
    source.unlink()
    return result, repo


def bench_training_input(repo: Path, *, epochs: int) -> dict:
    """Run in a subprocess of its own, so TensorFlow stays out of this one."""
    _, _, output = timed(
        [sys.executable, str(Path(__file__)), "--throughput", str(repo), "--epochs", str(epochs)],
        repo,
    )
    return json.loads(output.strip().splitlines()[-1])


def throughput_worker(repo: Path, epochs: int) -> None:
    os.chdir(repo)
    import keras

    from stages.common import paths
    from stages.common.config import load_params
    from stages.common.io import read_table
    from stages.data.encoding import EncodingSpec, to_arrays
    from stages.model.build import make_model
    from stages.training.loop import train_model

    class EpochClock(keras.callbacks.Callback):
        """Durations of every epoch after a fit's first (which also compiles)."""

        def __init__(self) -> None:
            super().__init__()
            self.durations: list[float] = []
            self.last: float | None = None

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.last = self.last or time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            now = time.perf_counter()
            if epoch > 0:
                self.durations.append(now - self.last)
            self.last = now

    params = load_params("params.yaml")
    p = params.train.model_copy(update={"epochs": epochs, "patience": 0})
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    train = read_table(paths.split_table("train"))
    validation = read_table(paths.split_table("validation"))
    x, y = to_arrays(train, spec)
    validation_arrays = to_arrays(validation, spec)

    def stage_fit() -> list[float]:
        clock = EpochClock()
        with tempfile.TemporaryDirectory(prefix=".tmp-live-", dir=".") as live:
            train_model(
                train=train,
                validation=validation,
                spec=spec,
                params=p,
                seed=params.dataset.seed,
                live_dir=Path(live),
                extra_callbacks=(clock,),
            )
        return clock.durations

    def bare_fit() -> list[float]:
        clock = EpochClock()
        keras.utils.set_random_seed(params.dataset.seed)
        steps = -(-len(y) // p.batch_size)
        _, trainer = make_model(
            train, y, spec=spec, params=p, seed=params.dataset.seed, steps_per_epoch=steps
        )
        trainer.fit(
            x,
            y,
            validation_data=validation_arrays,
            epochs=epochs,
            batch_size=p.batch_size,
            verbose=0,
            callbacks=[clock],
        )
        return clock.durations

    # Alternate the two, three times, so that drift in the machine's speed hits both alike.
    stage, bare = [], []
    for _ in range(3):
        stage += stage_fit()
        bare += bare_fit()
    stage_rate = len(x) / statistics.median(stage)
    bare_rate = len(x) / statistics.median(bare)
    print(
        json.dumps(
            {
                "train_rows": len(x),
                "batch_size": p.batch_size,
                "epochs": epochs,
                "stage_samples_per_s": round(stage_rate),
                "bare_fit_samples_per_s": round(bare_rate),
                "ratio": round(stage_rate / bare_rate, 3),
            }
        )
    )


def _row(*cells: object) -> None:
    print("| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in cells) + " |")


def print_table(results: dict) -> None:
    print(f"\nMachine: {results['machine']}\n")
    if results["mode"] == "scale":
        _stage_rows(results)
        return
    _row(
        "overhead",
        "pipeline s",
        "script s",
        "ratio",
        "fixed cost s",
        "outside stages s",
        "after a train-param change s",
        "ratio",
    )
    _row(*["---"] * 8)
    for r in results["overhead"]:
        label = f"{r['data']}, {r['epochs']} epochs, x{r['repetitions']}"
        _row(
            label,
            r["pipeline_s"],
            r["script_s"],
            r["ratio"],
            r["fixed_cost_s"],
            r["outside_stages_s"],
            f"{r['param_change_s']} ({', '.join(r['param_change_reran'])})",
            r["param_change_ratio"],
        )
    if "noop" not in results:  # an overhead run of its own
        return
    noop = results["noop"]
    print(f"\nno-op dvc repro: {noop['noop_repro_s']} s; stages --help: {noop['help_s']} s\n")
    _stage_rows(results)
    t = results["training_input"]
    print(
        f"\ntraining input ({t['train_rows']:,} rows, batch {t['batch_size']}): train stage "
        f"{t['stage_samples_per_s']:,} samples/s, bare model.fit "
        f"{t['bare_fit_samples_per_s']:,} samples/s, ratio {t['ratio']}"
    )


def _stage_rows(results: dict) -> None:
    _row("rows", "engine", "stage", "seconds", "peak MB", "rows/s", "workers' peak MB")
    _row(*["---"] * 7)
    for run in results["data_stages"]:
        engine = run.get("engine", "embedded")
        for stage, r in run["stages"].items():
            workers = r.get("workers_peak_mb", "")
            _row(run["rows"], engine, stage, r["seconds"], r["peak_mb"], r["rows_per_s"], workers)
        _row(run["rows"], engine, "collect..split", run["total_s"], run["peak_mb"], "", "")
        if "end_to_end_s" in run:
            peak = run["end_to_end_peak_mb"]
            _row(run["rows"], engine, "end to end", run["end_to_end_s"], peak, "", "")


@contextlib.contextmanager
def local_cluster():
    """A client of a 2-worker, 1-thread-each Dask LocalCluster on this machine."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        yield client


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def rerun_adult_overhead(out: Path, reps: int) -> None:
    """The overhead on Adult alone, in place of its row in `out` (the other figures there
    stay those of the run that wrote them); the row says how long its own run took."""
    started = time.perf_counter()
    row = bench_overhead("Adult", None, reps=reps, epochs=10)
    row["separate_run_s"] = round(time.perf_counter() - started, 1)
    if out.exists():
        results = json.loads(out.read_text())
        others = [earlier for earlier in results.get("overhead", []) if earlier["data"] != "Adult"]
    else:
        results, others = {"mode": "overhead", "machine": machine()}, []
    results["overhead"] = [row, *others]
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nAdult's overhead, {reps} runs, in {row['separate_run_s']} s -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A reduced run for CI.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results.json")
    parser.add_argument(
        "--scale",
        type=int,
        nargs="+",
        metavar="ROWS",
        help="only every stage end to end (train 1 epoch) on each of these row counts",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="with --scale: the data stages on a 2-worker Dask LocalCluster, not embedded",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="with --scale: add these runs to those already in --out",
    )
    parser.add_argument(
        "--overhead",
        type=int,
        metavar="RUNS",
        help="only the overhead on Adult (RUNS runs each way), replacing its row in --out",
    )
    parser.add_argument("--throughput", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput:
        throughput_worker(args.throughput, args.epochs)
        return
    if args.overhead:
        rerun_adult_overhead(args.out, args.overhead)
        return
    started = time.perf_counter()
    results: dict = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        workdir = Path(tmp)
        if args.scale:
            results["mode"] = "scale"
            results["data_stages"] = []
            with contextlib.ExitStack() as stack:
                client = stack.enter_context(local_cluster()) if args.cluster else None
                for rows in args.scale:
                    run, repo = bench_data_stages(rows, workdir, end_to_end=True, client=client)
                    shutil.rmtree(repo)
                    results["data_stages"].append(run)
        elif args.quick:
            results["overhead"] = [bench_overhead("Adult", None, reps=1, epochs=1)]
            results["noop"] = bench_noop(reps=2)
            run, repo = bench_data_stages(100_000, workdir)
            results["data_stages"] = [run]
            results["training_input"] = bench_training_input(repo, epochs=3)
        else:
            million = generate(workdir / "adult_1m.data", 1_000_000, seed=1)
            results["overhead"] = [
                bench_overhead("Adult", None, reps=3, epochs=10),
                bench_overhead("1M Adult-like rows", million, reps=3, epochs=10),
            ]
            results["noop"] = bench_noop(reps=5)
            runs = [
                bench_data_stages(1_000_000, workdir),
                bench_data_stages(10_000_000, workdir, end_to_end=True),
            ]
            results["data_stages"] = [run for run, _ in runs]
            results["training_input"] = bench_training_input(runs[0][1], epochs=4)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.scale and args.append and args.out.exists():
        earlier = json.loads(args.out.read_text())
        results["data_stages"] = earlier["data_stages"] + results["data_stages"]
        results["seconds"] = round(earlier["seconds"] + results["seconds"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\n{results['mode']} run in {results['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
