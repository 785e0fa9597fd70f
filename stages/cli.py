"""Command line: one Click command per stage, each option defaulting to params.yaml.

`python -m stages train --epochs 3` overrides one key for one run by hand; `dvc repro`
runs the same commands with no options. Stage modules, and so TensorFlow, are imported
only inside the command that needs them, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from stages import paths
from stages.config import SECTIONS, Params, load_params
from stages.errors import PipelineError

# The params each command reads: section -> keys (None: the whole section). dvc.yaml lists
# the same keys under each stage's `params`; tests/test_layout.py checks that they agree.
COMMAND_PARAMS: dict[str, dict[str, list[str] | None]] = {
    "collect": {"collect": None},
    "validate": {"dataset": ["target", "schema"]},
    "prepare": {"dataset": ["target", "schema"], "prepare": None},
    "split": {"dataset": ["target", "seed"], "split": None},
    "train": {"dataset": ["seed"], "train": None},
    "evaluate": {},
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
    for section, keys in COMMAND_PARAMS[command].items():
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


def stage_command(group: click.Group) -> Callable[[Callable[[Params], None]], click.Command]:
    """Register a stage: its docstring is its --help, its options come from its params."""

    def decorate(function: Callable[[Params], None]) -> click.Command:
        name = function.__name__
        generated = _param_options(name)

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
            function(load_params(params_file, overrides))
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
            params=[params_option, *(option for _, _, option in generated)],
            help=function.__doc__,
        )
        group.add_command(command)
        return command

    return decorate


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Tabular data to a trained, evaluated Keras classifier, one stage at a time.

    `dvc repro` runs the stages in order; each is also a command of its own.
    """


def _report(stage: str, message: str) -> None:
    click.echo(f"{stage}: {message}")


@stage_command(cli)
def collect(params: Params) -> None:
    """Read the source (collect.source) into data/raw/table.parquet, as read."""
    from stages.collect import collect_report, read_source
    from stages.io import write_json, write_table

    frame = read_source(params=params.collect)
    write_table(frame, paths.RAW_TABLE)
    write_json(collect_report(frame, source=Path(params.collect.source)), paths.COLLECT_REPORT)
    _report("collect", f"{len(frame):,} rows x {frame.shape[1]} columns -> {paths.RAW_TABLE}")


@stage_command(cli)
def validate(params: Params) -> None:
    """Check the raw table against the pandera schema (dataset.schema), every row."""
    from stages.io import read_table, write_csv, write_json, write_table
    from stages.schema import load_schema, require_target
    from stages.validate import failure_message, validate_frame, validation_report

    schema_path = params.dataset.schema_path
    schema = load_schema(schema_path)
    require_target(schema, params.dataset.target, schema_path)
    frame = read_table(paths.RAW_TABLE)
    validated, cases = validate_frame(frame, schema=schema)
    report = validation_report(frame, cases, schema_path=schema_path)
    write_csv(cases, paths.VALIDATE_FAILURES)
    write_json(report, paths.VALIDATE_REPORT)
    if validated is None:
        raise failure_message(report, source=paths.RAW_TABLE)
    write_table(validated, paths.VALIDATED_TABLE)
    _report("validate", f"{len(validated):,} rows valid -> {paths.VALIDATED_TABLE}")


@stage_command(cli)
def prepare(params: Params) -> None:
    """Clean the validated rows and encode every feature to numbers, from the schema alone."""
    from stages.io import read_table, write_json, write_table
    from stages.prepare import prepare_frame, spec_from_schema
    from stages.schema import load_schema

    spec = spec_from_schema(load_schema(params.dataset.schema_path), target=params.dataset.target)
    prepared, report = prepare_frame(
        read_table(paths.VALIDATED_TABLE),
        spec=spec,
        missing_tokens=params.prepare.missing_tokens,
        drop_duplicates=params.prepare.drop_duplicates,
    )
    write_table(prepared, paths.PREPARED_TABLE)
    spec.save(paths.ENCODING_SPEC)
    write_json(report, paths.PREPARE_REPORT)
    _report(
        "prepare",
        f"{report['rows_out']:,} rows ({report['duplicates_dropped']} duplicates, "
        f"{report['unlabelled_dropped']} unlabelled dropped), {report['features_out']} "
        f"encoded columns -> {paths.PREPARED_TABLE}",
    )


@stage_command(cli)
def split(params: Params) -> None:
    """Split the prepared rows into train, validation and test sets (stratified, seeded)."""
    from stages.encoding import EncodingSpec
    from stages.io import read_table, write_json, write_table
    from stages.split import split_frame, split_report

    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    splits = split_frame(
        read_table(paths.PREPARED_TABLE),
        target=params.dataset.target,
        validation=params.split.validation,
        test=params.split.test,
        seed=params.dataset.seed,
        stratify=params.split.stratify,
    )
    for name, rows in splits.items():
        write_table(rows, paths.split_table(name))
    write_json(
        split_report(splits, target=params.dataset.target, classes=spec.classes), paths.SPLIT_REPORT
    )
    counts = ", ".join(f"{name} {len(rows):,}" for name, rows in splits.items())
    _report("split", f"{counts} rows -> {paths.SPLIT_DIR}/")


@stage_command(cli)
def train(params: Params) -> None:
    """Train the Keras model on the train split, checking the validation split every epoch."""
    from stages.encoding import EncodingSpec
    from stages.io import read_table, staging_dir, write_json
    from stages.model import save_model
    from stages.train import train_model

    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    train_rows = read_table(paths.split_table("train"))
    validation_rows = read_table(paths.split_table("validation"))
    with staging_dir(paths.TRAIN_DIR) as live_dir:
        model, report = train_model(
            train=train_rows,
            validation=validation_rows,
            spec=spec,
            params=params.train,
            seed=params.dataset.seed,
            live_dir=live_dir,
        )
        write_json(report, live_dir / Path(paths.TRAIN_REPORT).name)
        save_model(model, paths.MODEL)
    best = report["best"]
    _report(
        "train",
        f"{report['train_rows']:,} rows, {report['epochs_run']} epochs, best epoch "
        f"{report['best_epoch']} (val accuracy {best.get('val_accuracy', float('nan')):.4f}), "
        f"{len(report['overfit_epochs'])} epoch(s) flagged for overfitting -> {paths.MODEL}",
    )


@stage_command(cli)
def evaluate(params: Params) -> None:
    """Score the trained model on the unseen test split; write metrics and plot data."""
    from stages.encoding import EncodingSpec, to_arrays
    from stages.evaluate import classification_metrics, plot_tables
    from stages.io import read_table, write_csv, write_json
    from stages.model import load_model, predict_proba

    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    features, target = to_arrays(read_table(paths.split_table("test")), spec)
    model = load_model(paths.MODEL)
    proba = predict_proba(model, features)
    metrics = classification_metrics(target, proba)
    write_json({**metrics, "test_rows": len(target)}, paths.EVALUATE_METRICS)
    for name, table in plot_tables(target, proba, classes=spec.classes).items():
        write_csv(table, f"{paths.EVALUATE_PLOTS}/{name}.csv")
    _report(
        "evaluate",
        f"{len(target):,} test rows: accuracy {metrics['accuracy']:.4f}, "
        f"ROC AUC {metrics['roc_auc']:.4f} -> {paths.EVALUATE_METRICS}",
    )


def main() -> None:
    cli(prog_name="stages")
