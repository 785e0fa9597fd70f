"""Command line: one Click command per stage, each option defaulting to params.yaml.

`python -m stages train --epochs 3` overrides one key for one run by hand; `dvc repro`
runs the same commands with no options. Stage modules, and so TensorFlow, are imported
only inside the command that needs them, so `--help` stays fast.
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib
import os
import time
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Any

import click
import yaml

from stages.common import paths
from stages.common.config import SECTIONS, Params, load_params
from stages.common.errors import PipelineError

# TensorFlow's C++ start-up notices, before any stage imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The params each command reads: section -> keys (None: the whole section). dvc.yaml lists
# the same keys under each stage's `params`; tests/test_layout.py checks that they agree.
COMMAND_PARAMS: dict[str, dict[str, list[str] | None]] = {
    "collect": {"collect": None},
    "validate": {
        "dataset": ["target", "schema"],
        "validate": None,
        "prepare": ["missing_tokens"],
    },
    "prepare": {"dataset": ["target", "schema", "task"], "prepare": None},
    "split": {"dataset": ["target", "seed"], "split": None},
    "baselines": {
        "dataset": ["seed"],
        "evaluate": ["baselines", "baseline_rows", "baseline_trials"],
        "train": ["max_vocabulary", "min_category_rows", "sample_rows"],
    },
    "train": {"dataset": ["seed"], "train": None, "prepare": ["missing_tokens"]},
    "evaluate": {"dataset": ["seed"], "evaluate": None},
}
# Commands that are not DVC stages: they read params but are run by hand.
TOOL_PARAMS: dict[str, dict[str, list[str] | None]] = {
    "predict": {"predict": None},
    "serve": {"serve": None, "predict": ["on_invalid", "drift_threshold"]},
    "tune": {"tune": None},
    "export": {"prepare": ["missing_tokens"]},
}


class StageGroup(click.Group):
    """Prints a PipelineError as a short message and exits 1, with no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # pipeline order, not alphabetical


def stage_module(name: str) -> ModuleType:
    """`stages.<name>`, imported with Python's cyclic garbage collector paused, then frozen.

    Importing TensorFlow, pandas or scikit-learn creates hundreds of thousands of objects
    that live as long as the process, and the collector would otherwise walk them again
    and again while they load (TensorFlow's import: 3.7 -> 2.8 s here). Freezing moves
    them out of every later collection: nearly all of them are modules and what they
    hold, which stay loaded anyway."""
    gc.disable()
    try:
        return importlib.import_module(f"stages.{name}")
    finally:
        gc.freeze()
        gc.enable()


def _field_name(section: str, key: str) -> str:
    """Python attribute for a params key (params use the alias, e.g. dataset.schema)."""
    for name, field in SECTIONS[section].model_fields.items():
        if key in (name, field.alias):
            return name
    raise KeyError(f"{section}.{key}")


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(arg) is list for arg in (annotation, *typing.get_args(annotation)))


def _parse_value(raw: str, annotation: Any) -> Any:
    """A command-line value as YAML; a list may also be given as `a,b,c`."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if _is_list(annotation) and isinstance(value, (str, int, float)):
        value = [yaml.safe_load(part) for part in str(raw).split(",")]
    if value is None and raw.strip() not in ("null", "~"):
        value = raw
    return value


def _param_options(command: str) -> list[tuple[str, str, click.Option]]:
    """Generated options for the keys a command reads: (section, params key, option)."""
    options = []
    for section, keys in {**COMMAND_PARAMS, **TOOL_PARAMS}[command].items():
        model = SECTIONS[section]
        for key in keys or [field.alias or name for name, field in model.model_fields.items()]:
            field = model.model_fields[_field_name(section, key)]
            flag = key.replace("_", "-")
            help_text = f"{field.description} [params.yaml: {section}.{key}]"
            if field.annotation is bool:
                option = click.Option(
                    [f"--{flag}/--no-{flag}", f"{section}__{key}"], default=None, help=help_text
                )
            else:
                metavar = "LIST" if _is_list(field.annotation) else "VALUE"
                option = click.Option(
                    [f"--{flag}", f"{section}__{key}"],
                    default=None,
                    metavar=metavar,
                    help=help_text,
                )
            options.append((section, key, option))
    return options


def stage_command(
    group: click.Group, extra: list[click.Parameter] | None = None
) -> Callable[[Callable[..., None]], click.Command]:
    """Register a command: its docstring is its --help, its options come from the params it
    reads (COMMAND_PARAMS); `extra` arguments and options are passed to it by name."""

    def decorate(function: Callable[..., None]) -> click.Command:
        name = function.__name__
        generated = _param_options(name)
        extra_names = [parameter.name for parameter in extra or []]

        @functools.wraps(function)
        def callback(params_file: str, **values: Any) -> None:
            overrides: dict[str, dict[str, Any]] = {}
            for section, key, _ in generated:
                raw = values.get(f"{section}__{key}")
                if raw is None:
                    continue
                field = SECTIONS[section].model_fields[_field_name(section, key)]
                value = raw if isinstance(raw, bool) else _parse_value(raw, field.annotation)
                overrides.setdefault(section, {})[key] = value
            start = time.perf_counter()
            function(
                load_params(params_file, overrides), **{key: values[key] for key in extra_names}
            )
            click.echo(f"{name}: done in {time.perf_counter() - start:.1f} s")

        params_option = click.Option(
            ["--params", "params_file"],
            default=paths.PARAMS,
            show_default=True,
            type=click.Path(dir_okay=False),
            help="The params file every other option defaults to.",
        )
        command = click.Command(
            name,
            callback=callback,
            params=[*(extra or []), params_option, *(option for _, _, option in generated)],
            help=function.__doc__,
        )
        group.add_command(command)
        return command

    return decorate


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Tabular data to a trained, evaluated Keras model, one stage at a time.

    `dvc repro` runs the stages in order; each is also a command of its own.
    """


@stage_command(cli)
def collect(params: Params) -> None:
    """Read the source (collect.source) into data/raw/table.parquet, as read."""
    stage_module("collect").run(params)


@stage_command(cli)
def validate(params: Params) -> None:
    """Check the raw table against the pandera schema (dataset.schema), every row."""
    stage_module("validate").run(params)


@stage_command(cli)
def prepare(params: Params) -> None:
    """Clean the validated rows and encode every feature to numbers, from the schema alone."""
    stage_module("prepare").run(params)


@stage_command(cli)
def split(params: Params) -> None:
    """Split the prepared rows into train, validation and test sets (stratified, seeded)."""
    stage_module("split").run(params)


@stage_command(cli)
def baselines(params: Params) -> None:
    """Fit the baselines (evaluate.baselines) on the train split; predict and score the
    test split."""
    stage_module("baselines").run(params)


@stage_command(cli)
def train(params: Params) -> None:
    """Train the Keras model on the train split, checking the validation split every epoch.

    An interrupted run resumes from its last completed epoch. Several workers train one
    model together when TRAIN_COORDINATOR, TRAIN_NUM_PROCESSES and TRAIN_PROCESS_ID are set
    (see the README).
    """
    from stages.common.runtime import select_backend, unused_modules_kept_out

    cluster = select_backend()  # before Keras is imported
    with unused_modules_kept_out():
        module = stage_module("train")
    module.run(params, cluster)


@stage_command(cli)
def evaluate(params: Params) -> None:
    """Score the model on the unseen test split beside baselines; check the gates."""
    stage_module("evaluate").run(params)


@stage_command(
    cli,
    extra=[
        click.Argument(["input_path"], metavar="INPUT", type=click.Path()),
        click.Option(
            ["--output", "output_path"],
            required=True,
            type=click.Path(),
            help="Where to write the predictions: CSV for a .csv name, else Parquet (a "
            "folder of shards, one per file, when INPUT is a folder).",
        ),
        click.Option(
            ["--header/--no-header"],
            default=None,
            help="Whether a text INPUT's first line names the columns (default: sniffed; "
            "a first line that names the schema's columns is a header).",
        ),
    ],
)
def predict(params: Params, input_path: str, output_path: str, header: bool | None) -> None:
    """Predict the class (or, for regression, the value) of every raw row in INPUT: CSV or
    other delimited text (plain or compressed), Parquet, JSON (an array of records or JSON
    Lines) or an Excel workbook, read on its own terms (format, encoding, delimiter and
    header from the file itself), columns in any order.

    Rows are validated against the schema (the target column may be absent), cleaned and
    encoded by the same functions as prepare, and scored by models/network.keras in batches.
    The output has one row per input row, in order: `row`, `predicted`, one
    `probability_<class>` per class (none for regression), `error`, the reason when a row
    is invalid, and `warning` (an unseen category, treated as unknown).
    """
    stage_module("tools.predict").run(
        params, input_path=input_path, output_path=output_path, header=header
    )


@stage_command(
    cli,
    extra=[
        click.Option(
            ["--apply"],
            is_flag=True,
            help="Write the best trial's params into params.yaml (comments kept).",
        )
    ],
)
def tune(params: Params, apply: bool) -> None:
    """Search train's params with a seeded Optuna study (tune.space, TPE), each trial
    trained on the train split and scored on the validation split (never the test split),
    unpromising ones pruned per epoch. The study lives in .tune/journal.log: a killed run
    continues where it stopped. Writes reports/tune/trials.csv, best.yaml and report.md;
    --apply writes the best params into params.yaml, so `dvc repro` trains the tuned model.
    """
    stage_module("tools.tune").run(params, apply=apply)


@stage_command(cli)
def serve(params: Params) -> None:
    """Serve models/network.keras over HTTP until SIGTERM or Ctrl-C, scoring rows as
    predict does (the same validation, cleaning, encoding, warnings and threshold).

    MLflow's scoring protocol: POST /invocations (JSON dataframe_split, dataframe_records,
    instances or inputs; or text/csv), GET /ping, /health, /version. The Open Inference
    Protocol v2: POST /v2/models/<serve.model_name>/infer, GET /v2/health/live,
    /v2/health/ready, /v2/models/<name> and /v2/models/<name>/ready. Also GET /metrics
    (Prometheus) and /drift (the served rows against the train split). With SERVE_TOKEN
    set, every route but liveness needs `Authorization: Bearer <token>`.
    """
    stage_module("tools.serve").run(params)


@stage_command(
    cli,
    extra=[
        click.Option(
            ["--output", "output_path"],
            default=paths.SAVED_MODEL,
            show_default=True,
            type=click.Path(file_okay=False),
            help="Folder to write the SavedModel to.",
        )
    ],
)
def export(params: Params, output_path: str) -> None:
    """Export models/model.keras as a TensorFlow SavedModel for TF Serving."""
    stage_module("tools.export").export_saved_model(
        paths.MODEL, output_path, missing_tokens=params.prepare.missing_tokens
    )


@cli.command()
@click.option("--rev", required=True, help="Git revision to compare with, e.g. main or HEAD~1.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    default=["accuracy"],
    show_default=True,
    help="Metric to guard (repeat for several); nested keys with dots.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Largest allowed worsening.",
)
@click.option(
    "--target", default=paths.EVALUATE_METRICS, show_default=True, help="The metrics file."
)
def compare(rev: str, metrics: tuple[str, ...], tolerance: float, target: str) -> None:
    """Fail when a metric got worse than at git revision REV by more than a tolerance."""
    stage_module("tools.compare").run(
        rev=rev, metrics=list(metrics), tolerance=tolerance, target=target
    )


@cli.command("infer-schema")
@click.argument("source")
@click.option("--target", required=True, help="The column to predict.")
@click.option(
    "--task",
    type=click.Choice(["auto", "classification", "regression"]),
    default="auto",
    show_default=True,
    help="auto: regression for a numeric target with more distinct values than "
    "--max-categories, else classification.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Where to write the schema."
)
@click.option(
    "--update-params",
    is_flag=True,
    help="Point the params file at SOURCE, the read options found, the target and the schema.",
)
@click.option(
    "--params",
    "params_file",
    default=paths.PARAMS,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The params file --update-params rewrites.",
)
@click.option("--names", help="Column names (a,b,c) for a file without a header row.")
@click.option("--query", help="SQL query, when SOURCE is a database URL.")
@click.option(
    "--max-categories",
    type=click.IntRange(min=2),
    default=50,
    show_default=True,
    help="Most distinct values of a text column kept as a category.",
)
@click.option(
    "--strict-ranges",
    is_flag=True,
    help="Make each number's observed minimum and maximum hard bounds.",
)
def infer_schema(
    source: str,
    target: str,
    task: str,
    out: str,
    update_params: bool,
    params_file: str,
    names: str | None,
    query: str | None,
    max_categories: int,
    strict_ranges: bool,
) -> None:
    """Draft a pandera schema of SOURCE (file, folder, glob, URL or database URL), to
    review and commit; optionally point params.yaml at it."""
    stage_module("tools.infer_schema").run(
        source=source,
        target=target,
        task=task,
        out=out,
        names=names.split(",") if names else None,
        query=query,
        update=params_file if update_params else None,
        max_categories=max_categories,
        strict_ranges=strict_ranges,
    )


def main() -> None:
    # At exit, Python's last garbage collection walks every object the libraries created
    # (about 1 s after TensorFlow has loaded, here) just before the memory is returned
    # anyway: freezing them skips that walk. atexit handlers and open files close as usual.
    atexit.register(gc.freeze)
    cli(prog_name="stages")
