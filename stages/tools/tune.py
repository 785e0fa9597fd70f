"""tune: a seeded Optuna search over the network's params, scored on the validation split.

Each trial trains on the train split (stages/training/loop.py's `train_model`, as train
does) with params drawn from `tune.space` and is scored on the validation split by the
task's headline metric (accuracy, R2) at its best epoch; the test split is never read.
Trials run one at a time and each draws from a TPE sampler seeded with (dataset.seed,
trial number), so a study repeats itself, and one resumed after a kill draws what an
unbroken one would. Unpromising trials stop early: Optuna's Keras pruning callback reports
the validation score after every epoch to a median pruner. The study lives in a journal
file (.tune/journal.log), named by everything the trials depend on, so a killed `tune`
continues where it stopped and a changed space or table starts a new study.

It writes reports/tune/trials.csv (every trial: number, state, score, epochs, seconds,
params), reports/tune/best.yaml (the best trial's params as params.yaml keys), and
reports/tune/report.md with the optimisation history and the params' importances as
PNGs (Optuna's matplotlib plots); `--apply` writes the best params into params.yaml,
comments kept, so `dvc repro` reproduces the tuned model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stages.common import paths
from stages.common.config import Params, SearchDimension, TrainParams
from stages.common.errors import PipelineError
from stages.common.io import (
    atomic_path,
    file_sha256,
    read_round_trip,
    read_table,
    say,
    write_round_trip,
)
from stages.common.tasks import LOWER_IS_BETTER, headline_metric
from stages.data.encoding import EncodingSpec

TUNE_DIR = Path("reports/tune")
JOURNAL = Path(".tune/journal.log")


def journal_file() -> str:
    """The journal's path as Optuna is given it: absolute, since Optuna's lock is a
    symbolic link to this path and a relative one dangles, so that a lock a killed run left
    is never found stale (its 30 s grace period) and the next run waits on it for ever."""
    return str(JOURNAL.resolve())


# Keys of the space that are not train keys: hidden_units = [hidden_width] * hidden_layers.
LAYER_KEYS = ("hidden_layers", "hidden_width")


def check_space(space: dict[str, SearchDimension]) -> None:
    """Every key of the space is a train key (or hidden_layers/hidden_width, together)."""
    known = set(TrainParams.model_fields) - {"hidden_units"}
    unknown = [key for key in space if key not in known and key not in LAYER_KEYS]
    if unknown:
        raise PipelineError(
            f"tune.space: {', '.join(unknown)} not a train key",
            ["the keys are train's (learning_rate, dropout, members, ...) and hidden_layers "
             "and hidden_width, which set train.hidden_units"],
        )  # fmt: skip
    layers = [key for key in LAYER_KEYS if key in space]
    if len(layers) == 1:
        raise PipelineError(f"tune.space: {layers[0]} needs {set(LAYER_KEYS) - set(layers)}")


def suggest(trial, space: dict[str, SearchDimension]) -> dict[str, Any]:
    """The train params of one trial (train keys; hidden_units from layers and width)."""
    drawn = {}
    for key, dimension in space.items():
        if dimension.or_zero and not trial.suggest_categorical(f"{key}?", [False, True]):
            drawn[key] = 0
        elif dimension.kind == "choice":
            drawn[key] = trial.suggest_categorical(key, dimension.choices)
        elif dimension.kind == "int":
            drawn[key] = trial.suggest_int(
                key, int(dimension.low), int(dimension.high), step=int(dimension.step or 1),
                log=dimension.log,
            )  # fmt: skip
        else:
            drawn[key] = trial.suggest_float(
                key, dimension.low, dimension.high, step=dimension.step, log=dimension.log
            )
    if "hidden_layers" in drawn:
        drawn["hidden_units"] = [drawn.pop("hidden_width")] * drawn.pop("hidden_layers")
    return drawn


def study_name(params: Params) -> str:
    """A name for the study from what its trials depend on: the split, the encoding,
    the train params, the space and the seed."""
    files = [paths.split_table("train"), paths.split_table("validation"), paths.ENCODING_SPEC]
    settings = {
        "files": [file_sha256(Path(path)) for path in files],
        "train": params.train.model_dump(mode="json"),
        "space": {key: value.model_dump(mode="json") for key, value in params.tune.space.items()},
        "seed": params.dataset.seed,
        "prune": params.tune.prune,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return f"tune-{digest[:16]}"


class Objective:
    """One trial: train with the drawn params on the train split, score on validation."""

    def __init__(self, params: Params, *, train, validation, spec: EncodingSpec) -> None:
        self.params = params
        self.train = train
        self.validation = validation
        self.spec = spec
        self.metric = headline_metric(spec.task)

    def __call__(self, trial) -> float:
        from optuna_integration import KerasPruningCallback

        from stages.training.loop import train_model

        drawn = suggest(trial, self.params.tune.space)
        try:
            train = TrainParams.model_validate(
                {**self.params.train.model_dump(by_alias=True), **drawn}
            )
        except ValueError as exc:
            message = f"tune.space: trial {trial.number} drew invalid params: {exc}"
            raise PipelineError(message) from None
        callbacks = []
        if self.params.tune.prune:
            callbacks.append(KerasPruningCallback(trial, f"val_{self.metric}"))
        trial.set_user_attr("train", drawn)
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix=".tmp-tune-") as live_dir:
                _, report = train_model(
                    train=self.train,
                    validation=self.validation,
                    spec=self.spec,
                    params=train,
                    seed=self.params.dataset.seed,
                    live_dir=Path(live_dir),
                    extra_callbacks=tuple(callbacks),
                    verbose=0,
                )
        finally:  # a pruned trial too
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("epochs", report["epochs_run"])
        return float(report["best"][f"val_{self.metric}"])


FINISHED = ("COMPLETE", "PRUNED")


def _finished(study) -> list:
    return [trial for trial in study.get_trials(deepcopy=False) if trial.state.name in FINISHED]


def _fail_interrupted(study) -> None:
    """A trial left running by a killed `tune` is marked failed: TPE draws as if it had
    never started, so the resumed study draws what an unbroken one would."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        say("tune", f"trial {trial.number} was interrupted: drawn again")


def _say_trial(study, metric: str) -> None:
    trial = study.trials[-1]
    seconds = trial.user_attrs.get("seconds", 0.0)
    finished = _finished(study)
    complete = [item for item in finished if item.state.name == "COMPLETE"]
    best = f", best {study.best_value:.4f} (trial {study.best_trial.number})" if complete else ""
    if trial.state.name == "PRUNED":
        epochs = len(trial.intermediate_values)
        say("tune", f"trial {trial.number}: pruned after {epochs} epoch(s){best}, {seconds} s")
    else:
        epochs = trial.user_attrs.get("epochs")
        say(
            "tune",
            f"trial {trial.number}: {metric} {trial.value:.4f}{best}, {epochs} epochs, {seconds} s",
        )


def run(params: Params, *, apply: bool = False) -> None:
    """The tune command: run the study to tune.trials finished trials (or tune.timeout)."""
    import optuna

    check_space(params.tune.space)
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    objective = Objective(
        params,
        train=read_table(paths.split_table("train")),
        validation=read_table(paths.split_table("validation")),
        spec=spec,
    )
    metric = objective.metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    JOURNAL.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(journal_file()))
    name = study_name(params)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize" if metric in LOWER_IS_BETTER else "maximize",
        load_if_exists=True,
    )
    _fail_interrupted(study)
    tune = params.tune
    done = len(_finished(study))
    say("tune", f"study {name} in {JOURNAL}: {done} of {tune.trials} trials finished")
    deadline = time.monotonic() + tune.timeout if tune.timeout else None
    while done < tune.trials:
        if deadline is not None and time.monotonic() >= deadline:
            say("tune", f"tune.timeout ({tune.timeout:g} s) reached after {done} trials")
            break
        # A sampler per trial, seeded by the trials finished before it: a resumed study
        # draws exactly what an unbroken one would.
        sampler = optuna.samplers.TPESampler(
            seed=params.dataset.seed * 100_003 + done, n_startup_trials=tune.startup_trials
        )
        pruner = optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials // 2)
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        study.optimize(objective, n_trials=1, catch=())
        _say_trial(study, metric)
        done = len(_finished(study))
    best = write_results(study, metric=metric)
    if apply and best is not None:
        apply_best(Path(paths.PARAMS), best["train"])
        changed = ", ".join(f"train.{key}" for key in best["train"])
        say("tune", f"{paths.PARAMS}: the best params written ({changed}); `dvc repro` to train")


def trials_table(study) -> pd.DataFrame:
    """Every trial: number, state, score, epochs, seconds and the params drawn."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        epochs = trial.user_attrs.get("epochs") or len(trial.intermediate_values) or None
        row = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "value": trial.value,
            "epochs": epochs,
            "seconds": trial.user_attrs.get("seconds"),
        }
        for key, value in trial.user_attrs.get("train", {}).items():
            row[key] = json.dumps(value) if isinstance(value, list) else value
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(study, *, metric: str) -> dict[str, Any] | None:
    """reports/tune/: trials.csv, best.yaml, report.md and its figures. Returns best.yaml's
    content (None when no trial completed)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    TUNE_DIR.mkdir(parents=True, exist_ok=True)
    table = trials_table(study)
    with atomic_path(TUNE_DIR / "trials.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    complete = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    if not complete:
        say("tune", f"no trial completed -> {TUNE_DIR / 'trials.csv'}")
        return None
    trial = study.best_trial
    best = {
        "study": study.study_name,
        "metric": f"validation {metric}",
        "value": round(float(trial.value), 6),
        "trial": trial.number,
        "trials": len(study.trials),
        "train": trial.user_attrs["train"],
    }
    with atomic_path(TUNE_DIR / "best.yaml", suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(best, sort_keys=False), encoding="utf-8")
    figures = {"history.png": plots.plot_optimization_history}
    if len(complete) >= 2:
        figures["importances.png"] = plots.plot_param_importances
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, plot in figures.items():
            axes = plot(study)
            axes.figure.savefig(TUNE_DIR / name, dpi=100, bbox_inches="tight")
            matplotlib.pyplot.close(axes.figure)
    pruned = int((table["state"] == "pruned").sum())
    lines = [
        "# Tuning",
        "",
        f"{len(table)} trials ({len(complete)} complete, {pruned} pruned) of study "
        f"`{study.study_name}`, scored by validation {metric}; the test split was not read.",
        f"Best: trial {trial.number}, {metric} {trial.value:.4f}, with:",
        "",
        *[f"- `train.{key}`: {value}" for key, value in best["train"].items()],
        "",
        "![Optimisation history](history.png)",
    ]
    if "importances.png" in figures:
        lines += ["", "![Params' importances](importances.png)"]
    (TUNE_DIR / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    say(
        "tune",
        f"best trial {trial.number}: validation {metric} {trial.value:.4f} -> "
        f"{TUNE_DIR / 'best.yaml'}, {TUNE_DIR / 'trials.csv'}, {TUNE_DIR / 'report.md'}",
    )
    return best


def apply_best(path: Path, train: dict[str, Any]) -> None:
    """Write the best params into params.yaml's train section, comments kept."""
    from stages.common.io import flow_style

    raw = read_round_trip(path)
    section = raw.setdefault("train", {})
    for key, value in train.items():
        section[key] = flow_style(value) if isinstance(value, list) else _plain(value)
    write_round_trip(raw, path)


def _plain(value: Any) -> Any:
    """A number as YAML writes it plainly (numpy scalars as Python ones)."""
    return value.item() if isinstance(value, np.generic) else value
