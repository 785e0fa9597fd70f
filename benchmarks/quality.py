"""Quality: the shipped network against gradient boosting, over seeds and real tables.

    python benchmarks/quality.py                         # Adult and the corpus, seeds 1-5
    python benchmarks/quality.py adult --seeds 1 2 3     # some tables, some seeds
    python benchmarks/quality.py --set train.model=mlp   # the defaults with a change

For every table of the corpus (benchmarks/corpus.py) and every seed, each seed its own
split (`dataset.seed`): the README's two commands prepare the table in a copy of the
project (`infer-schema --update-params`, then `dvc repro baselines`: collect, validate,
transform, split and the baselines fitted on the train split), then the network is
trained with the project's train stage code and params (plus any --set) and scored on the
test split as evaluate scores it. Prints, per table, the network's mean and standard
deviation of accuracy and ROC AUC (R2 for regression) beside HistGradientBoosting's on
the same splits, the gap and the train seconds; writes every run and the summary as JSON
(--out, benchmarks/quality.json).

Prepared splits are kept in --cache (keyed by table, rows, seed and the data stages'
code), so comparing train settings re-runs only the training.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus import BY_NAME, CORPUS, project_copy, shrink  # noqa: E402
from benchmarks.run import timed  # noqa: E402

SEEDS = (1, 2, 3, 4, 5)
# What a prepared split is made of, copied out of the project copy.
KEPT = (
    "params.yaml",
    "params.base.yaml",
    "data/prepared/encoding.json",
    "data/split/train.parquet",
    "data/split/validation.parquet",
    "data/split/test.parquet",
    "reports/baselines/metrics.json",
)
DATA_CODE = ("collect", "validate", "transform", "encoding", "infer", "split", "baselines")


def data_key(table: str, max_rows: int | None) -> str:
    """The cache folder of a table's splits: its name, size, and the data stages' code."""
    digest = hashlib.sha256()
    for name in DATA_CODE:
        digest.update((REPO / "stages" / f"{name}.py").read_bytes())
    digest.update((REPO / "benchmarks/corpus.py").read_bytes())
    return f"{table}-{max_rows or 'all'}-{digest.hexdigest()[:10]}"


def prepare_splits(table_name: str, seeds: list[int], cache: Path, max_rows: int | None) -> Path:
    """The table's splits for each seed, made by the two commands (cached)."""
    folder = cache / data_key(table_name, max_rows)
    missing = [seed for seed in seeds if not (folder / str(seed) / "done").exists()]
    if not missing:
        return folder
    table = BY_NAME[table_name]
    with tempfile.TemporaryDirectory(prefix="quality-") as directory:
        repo = project_copy(Path(directory) / "repo")
        shutil.copyfile(repo / "params.yaml", repo / "params.base.yaml")
        source = table.write(repo / f"{table.name}.csv")
        if max_rows:
            shrink(repo / source, max_rows)
        command = [sys.executable, "-m", "stages", "infer-schema", source, "--target"]
        command += [table.target, "--out", f"schemas/{table.name}.yaml", "--update-params"]
        timed([*command, *table.extra], repo)
        for seed in missing:
            params = yaml.safe_load((repo / "params.yaml").read_text())
            params["dataset"]["seed"] = seed
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            timed(["dvc", "repro", "baselines"], repo)
            target = folder / str(seed)
            for name in KEPT:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(repo / name, target / name)
            (target / "done").touch()
    return folder


def apply_settings(raw: dict, settings: list[str]) -> dict:
    """params.yaml with `section.key=value` changes (values parsed as YAML)."""
    for setting in settings:
        key, _, value = setting.partition("=")
        *sections, last = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = yaml.safe_load(value)
    return raw


def current_params(split: Path) -> dict:
    """The split's params with the project's train section as it is now: the train keys
    that infer-schema set for this table (batch size, monitor, ...) are kept, the rest
    come from the project's params.yaml, so a changed default needs no new splits."""
    prepared = yaml.safe_load((split / "params.yaml").read_text())
    base = yaml.safe_load((split / "params.base.yaml").read_text())["train"]
    train = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    for key in set(base) | set(prepared["train"]):
        if key not in prepared["train"]:
            train.pop(key, None)
        elif prepared["train"][key] != base.get(key):
            train[key] = prepared["train"][key]
    return {**prepared, "train": train}


def train_and_score(split: Path, settings: list[str]) -> dict:
    """Train the network on one prepared split, in this process, and score it on the test
    split as the evaluate stage does."""
    import keras

    from stages.common.config import parse_params
    from stages.common.io import read_table
    from stages.data.encoding import EncodingSpec, to_arrays
    from stages.evaluation.baselines import scores_of
    from stages.evaluation.scoring import model_outputs
    from stages.model.build import model_vocabularies
    from stages.training.loop import train_model

    keras.backend.clear_session()
    raw = apply_settings(current_params(split), settings)
    params = parse_params(raw)
    spec = EncodingSpec.load(split / "data/prepared/encoding.json")
    train = read_table(split / "data/split/train.parquet")
    validation = read_table(split / "data/split/validation.parquet")
    test = read_table(split / "data/split/test.parquet")
    with tempfile.TemporaryDirectory(prefix="quality-live-") as live_dir:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # Keras's per-epoch lines
            model, report = train_model(
                train=train,
                validation=validation,
                spec=spec,
                params=params.train,
                seed=params.dataset.seed,
                live_dir=Path(live_dir),
            )
        seconds = time.perf_counter() - start
    vocabularies = model_vocabularies(model)
    x_test, y_test = to_arrays(test, spec, vocabularies)
    outputs = model_outputs(model, x_test, task=spec.task)
    network = scores_of(y_test, outputs.predicted, task=spec.task)
    gbm = json.loads((split / "reports/baselines/metrics.json").read_text())
    gbm = gbm["hist_gradient_boosting"]
    score = "r2" if spec.task == "regression" else "accuracy"
    result = {
        "score": score,
        "network": network[score],
        "gbm": gbm[score],
        "train_seconds": round(seconds, 1),
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "parameters": report["parameters"],
    }
    if "roc_auc" in network:
        result.update(network_auc=network["roc_auc"], gbm_auc=gbm["roc_auc"])
    return result


def summarise(table: str, runs: list[dict]) -> dict:
    """Means and standard deviations over the seeds of one table."""

    def stats(key: str) -> tuple[float, float]:
        values = [run[key] for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return round(statistics.fmean(values), 6), round(spread, 6)

    summary = {"table": table, "seeds": len(runs), "score": runs[0]["score"]}
    for key in ("network", "gbm", "network_auc", "gbm_auc", "train_seconds"):
        if key in runs[0]:
            summary[key], summary[f"{key}_std"] = stats(key)
    summary["gap"] = round(summary["network"] - summary["gbm"], 6)
    if "network_auc" in summary:
        summary["auc_gap"] = round(summary["network_auc"] - summary["gbm_auc"], 6)
    return summary


def markdown_table(summaries: list[dict]) -> str:
    lines = [
        "| table | metric | network (mean ± sd) | gradient boosting | gap | ROC AUC network "
        "| ROC AUC boosting | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        auc = ["", ""]
        if "network_auc" in s:
            auc = [
                f"{s['network_auc']:.4f} ± {s['network_auc_std']:.4f}",
                f"{s['gbm_auc']:.4f} ± {s['gbm_auc_std']:.4f}",
            ]
        lines.append(
            f"| {s['table']} | {s['score']} | {s['network']:.4f} ± {s['network_std']:.4f} "
            f"| {s['gbm']:.4f} ± {s['gbm_std']:.4f} | {s['gap']:+.4f} | {auc[0]} | {auc[1]} "
            f"| {s['train_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="*", help="names of corpus tables (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        help="a params change, section.key=value (YAML value); repeatable",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=20_000,
        help="shrink larger tables, Adult excepted (0: full size)",
    )
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "quality-splits"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/quality.json"))
    args = parser.parse_args()
    tables = args.tables or [table.name for table in CORPUS]
    runs, summaries = [], []
    for name in tables:
        max_rows = None if name == "adult" else (args.max_rows or None)
        folder = prepare_splits(name, args.seeds, Path(args.cache), max_rows)
        table_runs = []
        for seed in args.seeds:
            result = {
                "table": name,
                "seed": seed,
                **train_and_score(folder / str(seed), args.settings),
            }
            table_runs.append(result)
            auc = ""
            if "network_auc" in result:
                auc = f"  auc {result['network_auc']:.4f} vs {result['gbm_auc']:.4f}"
            print(
                f"{name:10s} seed {seed}  {result['score']} {result['network']:.4f} vs gbm "
                f"{result['gbm']:.4f}{auc}  {result['train_seconds']:.1f} s",
                flush=True,
            )
        runs += table_runs
        summaries.append(summarise(name, table_runs))
    networks = [s["gap"] for s in summaries]
    overall = {
        "settings": args.settings,
        "seeds": args.seeds,
        "mean_gap": round(statistics.fmean(networks), 6),
        "worst_gap": round(min(networks), 6),
        "worst_table": summaries[networks.index(min(networks))]["table"],
    }
    Path(args.out).write_text(
        json.dumps({"overall": overall, "tables": summaries, "runs": runs}, indent=2) + "\n"
    )
    print()
    print(markdown_table(summaries))
    print(
        f"\nmean gap {overall['mean_gap']:+.4f}; worst {overall['worst_gap']:+.4f} "
        f"({overall['worst_table']})"
    )


if __name__ == "__main__":
    main()
