"""Benchmark of `stages tune`: the tuned network against the default one, and against
gradient boosting tuned with the same budget on the same validation split.

    python benchmarks/tune.py        # churn, diamonds, credit; 3 seeds; 30 trials
    python benchmarks/tune.py --tables churn --seeds 0 --trials 10 --max-rows 3000
    python benchmarks/tune.py --max-rows 5000 --out F --resume   # on from the runs in F

For each table (benchmarks/corpus.py) and seed, in a fresh copy of the project:
1. `infer-schema --update-params`, dataset.seed set, `dvc repro`: the default network's and
   default boosting's test scores (accuracy, or R2 for regression);
2. `stages tune --trials N --apply`, timed, then `dvc repro`: the tuned network's test score;
3. boosting tuned as the baselines stage tunes `tuned_gradient_boosting`: a seeded Optuna
   TPE study of N trials over learning rate, leaf nodes, minimum leaf size, L2 and feature
   fraction, fitted on the same train split and scored on the same validation split, its
   best refitted and scored on the test split;
and, on the first table and seed, the same network study without pruning: its time and
best validation score against the pruned study's.

Results print as a table and are written as JSON (--out, benchmarks/tune.json).
"""

from __future__ import annotations

import argparse
import json
import os
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

from benchmarks.corpus import BY_NAME, ENV, project_copy, run_table  # noqa: E402

DEFAULT_TABLES = ["churn", "diamonds", "credit"]


def _run(command: list[str], repo: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=repo, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def _set_params(repo: Path, updates: dict[str, dict]) -> None:
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for section, values in updates.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def tuned_boosting(repo: Path, *, trials: int, seed: int) -> dict:
    """Boosting tuned on the validation split (the baselines stage's `tune_boosting`),
    refitted on train, scored on test."""
    cwd = Path.cwd()
    os.chdir(repo)
    try:
        from stages.common import paths
        from stages.common.config import load_params
        from stages.common.io import read_table
        from stages.common.tasks import headline_metric
        from stages.data.encoding import EncodingSpec, embedded_vocabularies, to_arrays
        from stages.evaluation.baselines import (
            TUNED,
            baseline_predictions,
            flat_inputs,
            scores_of,
            tune_boosting,
        )

        params = load_params(paths.PARAMS)
        spec = EncodingSpec.load(paths.ENCODING_SPEC)
        tables = {name: read_table(paths.split_table(name)) for name in paths.SPLIT_NAMES}
    finally:
        os.chdir(cwd)
    vocabularies = embedded_vocabularies(
        tables["train"],
        spec,
        max_size=params.train.max_vocabulary,
        min_count=params.train.min_category_rows,
    )
    arrays = {}
    for name, table in tables.items():
        x, y = to_arrays(table, spec, vocabularies)
        arrays[name] = (flat_inputs(x), y)
    start = time.perf_counter()
    n_classes = len(spec.classes)
    tuned = tune_boosting(
        arrays["train"],
        arrays["validation"],
        task=spec.task,
        n_classes=n_classes,
        trials=trials,
        seed=seed,
    )
    predicted = baseline_predictions(
        [TUNED],
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        n_classes=n_classes,
        seed=seed,
        tuned=tuned,
    )[TUNED]
    metric = headline_metric(spec.task)
    return {
        "test": round(scores_of(arrays["test"][1], predicted, task=spec.task)[metric], 6),
        "validation": tuned["validation"][metric],
        "seconds": round(time.perf_counter() - start, 1),
        "params": tuned["params"],
    }


def network_study(repo: Path, *, trials: int, prune: bool) -> dict:
    """`stages tune` from scratch: its seconds and best validation score."""
    for folder in (".tune", "reports/tune"):
        shutil.rmtree(repo / folder, ignore_errors=True)
    start = time.perf_counter()
    flag = "--prune" if prune else "--no-prune"
    _run([sys.executable, "-m", "stages", "tune", "--trials", str(trials), flag, "--apply"], repo)
    best = yaml.safe_load((repo / "reports/tune/best.yaml").read_text())
    return {"seconds": round(time.perf_counter() - start, 1), "validation": best["value"]}


def default_project(
    table_name: str, seed: int, *, max_rows: int | None, base: Path
) -> tuple[Path, dict]:
    """A project on the table with its default pipeline run and committed."""
    repo = project_copy(base / f"{table_name}-{seed}")
    default = run_table(
        BY_NAME[table_name], repo, max_rows=max_rows, params={"dataset": {"seed": seed}}
    )
    if not default.get("ok"):
        raise RuntimeError(f"{table_name}: {default.get('failed')}: {default}")
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "default"], repo)
    return repo, default


def one_run(table_name: str, seed: int, *, trials: int, max_rows: int | None, base: Path) -> dict:
    repo, default = default_project(table_name, seed, max_rows=max_rows, base=base)
    shipped = (repo / "params.yaml").read_text()
    study = network_study(repo, trials=trials, prune=True)
    _run(["dvc", "repro"], repo)
    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    result = {
        "table": table_name,
        "seed": seed,
        "score": default["score"],
        "rows": default["rows"],
        "network_default": default["network"],
        "network_tuned": metrics[default["score"]],
        "gbm_default": default["gbm"],
        "tune_seconds": study["seconds"],
        "network_tuned_validation": study["validation"],
        "tuned_params": yaml.safe_load((repo / "reports/tune/best.yaml").read_text())["train"],
    }
    boosting = tuned_boosting(repo, trials=trials, seed=seed)
    result.update(
        gbm_tuned=boosting["test"],
        gbm_tuned_validation=boosting["validation"],
        gbm_tune_seconds=boosting["seconds"],
    )
    result["repo"] = str(repo)
    result["shipped_params"] = shipped
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=DEFAULT_TABLES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--max-rows", type=int, default=None, help="shrink each table first")
    parser.add_argument("--out", default=str(REPO / "benchmarks/tune.json"))
    parser.add_argument(
        "--pruning-seeds",
        nargs="*",
        type=int,
        default=None,
        help="seeds of the first table whose study is run again unpruned (default: the first)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --out (same trials and rows) and run only the others",
    )
    args = parser.parse_args()
    pruning_seeds = args.seeds[:1] if args.pruning_seeds is None else args.pruning_seeds
    summary: dict = {"trials": args.trials, "max_rows": args.max_rows, "results": []}
    earlier = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if args.resume and (earlier.get("trials"), earlier.get("max_rows")) == (
        args.trials,
        args.max_rows,
    ):
        summary["results"] = earlier["results"]
        summary["pruning_runs"] = earlier.get("pruning_runs") or []
    done = {(r["table"], r["seed"]) for r in summary["results"]}
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as base:
        repos = {}
        for table in args.tables:
            for seed in args.seeds:
                if (table, seed) in done:
                    print(f"{table} seed {seed}: measured before, kept", flush=True)
                    continue
                result = one_run(
                    table, seed, trials=args.trials, max_rows=args.max_rows, base=Path(base)
                )
                print(
                    f"{table} seed {seed}: network {result['network_default']:.4f} -> "
                    f"{result['network_tuned']:.4f} ({result['tune_seconds']} s), boosting "
                    f"{result['gbm_default']:.4f} -> {result['gbm_tuned']:.4f}",
                    flush=True,
                )
                repos[table, seed] = (result.pop("repo"), result.pop("shipped_params"))
                summary["results"].append(result)
                _write(summary, args.out)  # a run cut short keeps what it measured
        summary.setdefault("pruning_runs", [])
        compared = {(r["table"], r["seed"]) for r in summary["pruning_runs"]}
        for seed in pruning_seeds:  # the same study unpruned, after every tuned run
            table = args.tables[0]
            if (table, seed) in compared:
                continue
            if (table, seed) in repos:
                repo, shipped = repos[table, seed]
                Path(repo, "params.yaml").write_text(shipped)
            else:  # tuned in an earlier run: its default project again
                repo, _ = default_project(table, seed, max_rows=args.max_rows, base=Path(base))
            measured = next(
                r for r in summary["results"] if (r["table"], r["seed"]) == (table, seed)
            )
            pruned = {
                "seconds": measured["tune_seconds"],
                "validation": measured["network_tuned_validation"],
            }
            unpruned = network_study(Path(repo), trials=args.trials, prune=False)
            summary["pruning_runs"].append(
                {"table": table, "seed": seed, "pruned": pruned, "unpruned": unpruned}
            )
            print(f"{table} seed {seed} unpruned: {unpruned}", flush=True)
            _write(summary, args.out)
    _write(summary, args.out)
    pruning = summary["pruning"]
    mean = summary["mean"]
    print(json.dumps({"mean": mean, "pruning": pruning}, indent=2))


def _write(summary: dict, out: str) -> None:
    """The summary so far, with the mean of the runs measured."""
    results = summary["results"]
    summary["mean"] = {
        key: round(statistics.mean(r[key] for r in results), 6)
        for key in ("network_default", "network_tuned", "gbm_default", "gbm_tuned")
    }
    summary["pruning"] = (summary.get("pruning_runs") or [None])[0]
    Path(out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
