"""Typed params: params.yaml is parsed once, here, into frozen objects.

An unknown key, a wrong type or an out-of-range value is a PipelineError naming the key
(`train.epochs`), never a KeyError deep inside a stage.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stages.common.errors import PipelineError

# A key whose value params.yaml sets for its table (the shipped Adult table's columns,
# file layout and gates); every other key ships at its default (tests/common/test_config.py).
PER_TABLE = {"per_table": True}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class DatasetParams(Section):
    """Shared by every stage: what is predicted, the schema, the seed."""

    target: str = Field(min_length=1, json_schema_extra=PER_TABLE, description="Column to predict.")
    schema_path: str = Field(
        alias="schema",
        min_length=1,
        json_schema_extra=PER_TABLE,
        description="pandera YAML schema of the raw table.",
    )
    seed: int = Field(
        42, ge=0, description="Seed for the split, weight initialisation and shuffling."
    )
    task: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description="What is predicted; auto: classification when the schema lists the "
        "target's classes (an isin check) or the target is text, regression for a number.",
    )


class CollectParams(Section):
    """Where the raw table comes from and how to read it."""

    source: str = Field(
        min_length=1,
        json_schema_extra=PER_TABLE,
        description="A file, folder or glob of files (CSV/TSV, plain or .gz/.bz2/.zip/.xz; "
        "Parquet; JSON arrays or JSON Lines; Excel workbooks), an http(s) URL, or a "
        "SQLAlchemy database URL. "
        "Credentials only as ${ENV_VAR} placeholders.",
    )
    watch: str = Field(
        min_length=1,
        json_schema_extra=PER_TABLE,
        description="What DVC watches to re-run collect (dvc.yaml deps): the file, folder or "
        "URL of the source; for a database, a file that changes with it (or params.yaml).",
    )
    format: Literal["auto", "csv", "parquet", "json", "jsonl", "excel"] = Field(
        "auto",
        description="File format; auto: from the file name. json (or jsonl) reads a JSON "
        "array of records or JSON Lines, told apart by content.",
    )
    sheet: str | int = Field(
        0, description="An Excel workbook's sheet: its name, or its position from 0."
    )
    query: str | None = Field(None, description="SQL query, for a database source.")
    delimiter: str = Field(",", min_length=1, description="CSV field delimiter.")
    header: bool = Field(
        True,
        json_schema_extra=PER_TABLE,
        description="Whether a CSV file's first line holds the names.",
    )
    names: list[str] | None = Field(
        None,
        json_schema_extra=PER_TABLE,
        description="Column names, in file order, for a CSV file without a header row.",
    )
    na_values: list[str] = Field(
        default_factory=list,
        json_schema_extra=PER_TABLE,
        description="Extra strings read as missing values.",
    )
    skip_initial_space: bool = Field(
        False, json_schema_extra=PER_TABLE, description="Drop spaces after each delimiter."
    )
    encoding: str = Field("utf-8", description="Text encoding of the file.")
    decimal: str = Field(".", description="A text file's decimal mark: `.` or `,`.")
    thousands: str | None = Field(
        None, description="A text file's thousands separator (`.`, `,`, a space), if any."
    )
    max_rows: int | None = Field(None, gt=0, description="Read at most this many rows.")

    @model_validator(mode="after")
    def _consistent(self) -> CollectParams:
        if not self.header and not self.names:
            raise ValueError("a file without a header row needs `names`")
        if self.names is not None and len(set(self.names)) != len(self.names):
            raise ValueError("`names` has duplicates")
        if len(self.delimiter) != 1:
            raise ValueError("`delimiter` must be a single character")
        if self.decimal not in (".", ","):
            raise ValueError("`decimal` must be '.' or ','")
        if self.thousands is not None and (
            len(self.thousands) != 1 or self.thousands == self.decimal
        ):
            raise ValueError("`thousands` must be one character other than `decimal`")
        return self


class ValidateParams(Section):
    """What to do with rows and columns the schema rejects."""

    on_invalid: Literal["fail", "quarantine"] = Field(
        "fail",
        description="An invalid row: `fail` stops the stage; `quarantine` moves it to "
        "data/validated/quarantine.parquet with its reason.",
    )
    max_invalid_fraction: float = Field(
        0.05, ge=0, le=1, description="With quarantine: the largest share of rows it may take."
    )
    unexpected_columns: Literal["fail", "drop"] = Field(
        "fail", description="A column the schema does not declare: `fail`, or `drop` it."
    )


# Text that means a missing value, unless params say otherwise (infer-schema also looks for
# other spellings in a file: stages/data/sniff.py).
MISSING_TOKENS = ("", "?", "NA", "N/A")


class PrepareParams(Section):
    """Cleaning rules applied before encoding."""

    missing_tokens: list[str] = Field(
        default_factory=lambda: list(MISSING_TOKENS),
        description="Text values (after trimming) that mean 'missing'.",
    )
    drop_duplicates: bool = Field(True, description="Drop exact duplicate rows.")


class SplitParams(Section):
    """Fractions of the prepared rows held out for validation and test."""

    validation: float = Field(0.1, gt=0, lt=1, description="Fraction of rows for validation.")
    test: float = Field(0.2, gt=0, lt=1, description="Fraction of rows for the test set.")
    stratify: bool = Field(True, description="Keep class proportions equal across splits.")

    @model_validator(mode="after")
    def _leaves_train_rows(self) -> SplitParams:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1 to leave rows for training")
        return self


class ThresholdParams(Section):
    """Two classes: the probability of the positive class (the second in the encoding
    spec) at or above which a row is predicted positive."""

    rule: Literal["fixed", "f1", "balanced_accuracy", "cost"] = Field(
        "fixed",
        description="fixed: `value`; f1, balanced_accuracy: the threshold that maximises it "
        "on the validation split; cost: the one with the least total cost of errors there.",
    )
    value: float = Field(0.5, gt=0, lt=1, description="The threshold when `rule` is fixed.")
    false_positive_cost: float = Field(
        1.0, gt=0, description="rule cost: the cost of predicting positive for a negative row."
    )
    false_negative_cost: float = Field(
        1.0, gt=0, description="rule cost: the cost of predicting negative for a positive row."
    )


class TrainParams(Section):
    """The network and how it is fitted."""

    numeric_bins: int = Field(
        16,
        ge=0,
        description="Most piecewise-linear bins per numeric column, edges fitted on train "
        "rows (0: scaled values only); not where PLR embeddings are used.",
    )
    scaling: Literal["standard", "robust"] = Field(
        "standard",
        description="Numeric columns: standard (mean and standard deviation of the train "
        "rows) or robust (median and interquartile range, then smooth clipping to +-3).",
    )
    bin_embedding_dim: int = Field(
        16,
        ge=0,
        description="A learned linear layer and ReLU per numeric column on its bins, this "
        "wide (0: the bins feed the network as they are).",
    )
    periodic_frequencies: int = Field(
        24,
        ge=0,
        description="PLR embeddings of numeric columns: learned frequencies per column (0: none).",
    )
    periodic_dim: int = Field(8, ge=1, description="PLR embeddings: width per numeric column.")
    periodic_min_rows: int = Field(
        10_000,
        ge=0,
        description="PLR embeddings only when the train split has at least this many rows "
        "(on smaller tables they overfit).",
    )
    periodic_scale: float = Field(
        8.0, gt=0, description="PLR embeddings: standard deviation of the initial frequencies."
    )
    model: Literal["mlp", "tabm"] = Field(
        "tabm",
        description="mlp: one network; tabm: an ensemble of `members` networks sharing their "
        "hidden layers (TabM-mini), trained each on its own loss, predicting their mean.",
    )
    members: int = Field(4, ge=1, description="tabm: networks in the ensemble.")
    hidden_units: list[int] = Field(
        default_factory=lambda: [128, 128], min_length=1, description="Width of each hidden layer."
    )
    activation: Literal["relu", "gelu", "silu", "elu", "tanh"] = Field(
        "relu", description="Activation of the hidden layers."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout rate after each hidden layer.")
    l2: float = Field(0.0, ge=0, description="L2 penalty on the hidden layers' kernels.")
    initializer: Literal["he_normal", "he_uniform", "glorot_normal", "glorot_uniform"] = Field(
        "he_normal", description="Kernel initializer of the dense layers."
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = Field("adamw", description="Optimizer.")
    learning_rate: float = Field(0.002, gt=0, description="Optimizer learning rate.")
    weight_decay: float = Field(0.0003, ge=0, description="Decoupled weight decay (0: none).")
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="Learning rate over training: constant, or a cosine down to 0 at the last "
        "epoch.",
    )
    clip_norm: float = Field(
        0.0, ge=0, description="Clip each gradient to this norm (0: no clipping)."
    )
    batch_size: int = Field(512, gt=0, description="Rows per gradient step.")
    epochs: int = Field(40, gt=0, description="Most epochs to train.")
    patience: int = Field(
        8, ge=0, description="Epochs without validation improvement before stopping (0: never)."
    )
    monitor: Literal["val_loss", "val_accuracy", "val_r2"] = Field(
        "val_loss",
        description="Validation metric for early stopping and the best epoch "
        "(val_accuracy: classification only; val_r2: regression only).",
    )
    deterministic: bool = Field(
        True, description="Deterministic ops: the same inputs give bit-identical weights."
    )
    overfit_gap: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Flag an epoch when the validation score (accuracy; R2 for regression) "
        "trails the training score by more.",
    )
    class_weight: Literal["none", "balanced"] = Field(
        "none",
        description="Classification: weigh each class's rows by n / (classes x class rows) of "
        "the train split, so a rare class counts as much as a common one.",
    )
    regression_loss: Literal["mse", "huber"] = Field(
        "mse",
        description="Regression loss; huber is less swayed by outliers (delta: one standard "
        "deviation of the train targets).",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="auto: every GPU TensorFlow sees, else the CPU; gpu: fail without one. "
        "Several GPUs train in step (MirroredStrategy).",
    )
    mixed_precision: bool = Field(
        False, description="On a GPU: compute in float16, keep weights in float32."
    )
    steps_per_execution: int = Field(
        1, ge=1, description="Batches run per call into the compiled graph (fewer round trips)."
    )
    sample_rows: int = Field(
        1_000_000,
        ge=1,
        description="What is fitted on train rows (scaling, bin edges, vocabularies, the drift "
        "profile) is fitted on at most this many, drawn by dataset.seed (all of them when "
        "there are fewer).",
    )
    validation_rows: int = Field(
        1_000_000,
        ge=1,
        description="Validation rows checked after every epoch, on which calibration and the "
        "decision threshold are fitted too: at most this many, drawn by dataset.seed (all of "
        "them when there are fewer), so memory stops growing with the rows.",
    )
    shuffle_rows: int = Field(
        2_000_000,
        ge=1,
        description="Train rows shuffled together in memory. A larger train split streams "
        "from its row groups: their order drawn per epoch, rows shuffled within windows of "
        "this many, so memory stops growing with the rows.",
    )
    max_vocabulary: int = Field(
        10_000,
        ge=1,
        description="Embedded (high-cardinality) categories: most values kept in the "
        "vocabulary learned from train rows; the rest share an out-of-vocabulary code.",
    )
    min_category_rows: int = Field(
        5,
        ge=1,
        description="Embedded categories: a value needs this many train rows to get its own "
        "code; rarer ones are out of vocabulary.",
    )
    embedding_dim: int = Field(
        16, ge=1, description="Embedded categories: the widest embedding of one column."
    )

    calibration: Literal["temperature", "platt", "none"] = Field(
        "temperature",
        description="Classification: rescale the logits so the probabilities match how "
        "often the classes occur, fitted on the validation split (temperature: one number, "
        "keeps every ranking; platt: two classes only, also a shift; none).",
    )
    threshold: ThresholdParams = Field(
        default_factory=ThresholdParams, description="Two classes: the decision threshold."
    )

    @field_validator("hidden_units")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError(f"every hidden layer needs at least one unit, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        if self.mixed_precision and self.device == "cpu":
            raise ValueError("mixed_precision needs a GPU; set device to auto or gpu")
        return self


Metric = Literal[
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "calibration_error",
    "mae",
    "rmse",
    "r2",
]
METRICS: tuple[str, ...] = typing.get_args(Metric)
# Which baselines fit which task: stages/common/tasks.py.
Baseline = Literal[
    "majority", "logistic", "mean", "linear", "hist_gradient_boosting", "tuned_gradient_boosting"
]


class GateParams(Section):
    """Thresholds the model must meet on the test set, or evaluate fails."""

    minimum: dict[Metric, float] = Field(
        default_factory=dict,
        json_schema_extra=PER_TABLE,
        description="Lowest allowed value per metric.",
    )
    maximum: dict[Metric, float] = Field(
        default_factory=dict, description="Highest allowed value per metric (e.g. log_loss)."
    )
    baseline: Baseline | None = Field(
        None,
        json_schema_extra=PER_TABLE,
        description="Baseline that `max_shortfall` compares the model with.",
    )
    max_shortfall: dict[Metric, float] = Field(
        default_factory=dict,
        json_schema_extra=PER_TABLE,
        description="Largest allowed shortfall of the model against `baseline`, per metric.",
    )
    must_beat: dict[Baseline, list[Metric]] = Field(
        default_factory=dict,
        description="Metrics on which the model must do strictly better than a baseline, "
        "e.g. {majority: [log_loss, roc_auc]}.",
    )

    use_interval: bool = Field(
        False,
        description="A gate passes only if the whole bootstrap interval (evaluate.interval) "
        "does: the "
        "model's interval for minimum and maximum, the interval of its difference to the "
        "baseline for must_beat and max_shortfall.",
    )

    @model_validator(mode="after")
    def _shortfall_needs_baseline(self) -> GateParams:
        if self.max_shortfall and self.baseline is None:
            raise ValueError("max_shortfall needs `baseline`, the baseline to compare with")
        if any(value < 0 for value in self.max_shortfall.values()):
            raise ValueError("max_shortfall values must be 0 or more")
        return self


class EvaluateParams(Section):
    """Baselines fitted beside the model, and the gates the model must pass."""

    baselines: list[Baseline] = Field(
        default_factory=lambda: ["majority", "logistic", "hist_gradient_boosting"],
        description="Baselines fitted on the train split and scored on the test split.",
    )
    baseline_rows: int = Field(
        1_000_000,
        ge=1,
        description="Baselines are fitted on at most this many train rows (and "
        "tuned_gradient_boosting tuned on at most this many validation rows), drawn by "
        "dataset.seed (all of them when there are fewer); the test split is scored whole.",
    )
    baseline_trials: int = Field(
        30,
        ge=1,
        description="Trials of the seeded Optuna study that tunes tuned_gradient_boosting "
        "(learning rate, leaf nodes, minimum leaf size, L2, feature fraction) on the "
        "validation split, when it is listed.",
    )
    gates: GateParams = Field(default_factory=GateParams, description="Gates on test metrics.")
    resamples: int = Field(
        1000,
        ge=100,
        description="Bootstrap resamples of the test rows behind every metric's interval.",
    )
    interval: float = Field(
        0.95, gt=0, lt=1, description="Share of the resampled values an interval holds."
    )
    interval_rows: int = Field(
        50_000,
        ge=1000,
        description="On a larger test split (or slice), intervals are resampled from a seeded "
        "sample of this many rows and narrowed by sqrt(sample / rows) around the value on "
        "every row, so their cost stops growing with the rows.",
    )
    importance_repeats: int = Field(
        5,
        ge=0,
        description="Permutation importance: shuffles of each raw column on the test split "
        "(0: none).",
    )
    importance_rows: int = Field(
        20_000, gt=0, description="Permutation importance: most test rows used (a sample)."
    )
    slices: list[str] = Field(
        default_factory=list,
        json_schema_extra=PER_TABLE,
        description="Feature columns whose values group the test rows; each group gets its "
        "own metrics (a number is cut into quartiles).",
    )

    @model_validator(mode="after")
    def _gate_baseline_is_fitted(self) -> EvaluateParams:
        if self.gates.baseline is not None and self.gates.baseline not in self.baselines:
            raise ValueError(
                f"gates.baseline '{self.gates.baseline}' is not listed in evaluate.baselines"
            )
        for name in self.gates.must_beat:
            if name not in self.baselines:
                raise ValueError(f"gates.must_beat.{name}: not listed in evaluate.baselines")
        return self


class PredictParams(Section):
    """How `stages predict` treats new rows."""

    on_invalid: Literal["skip", "fail"] = Field(
        "skip",
        description="An invalid row: `skip` writes its reason instead of a prediction; "
        "`fail` stops with every reason and writes nothing.",
    )
    batch_rows: int = Field(
        100_000, gt=0, description="Rows read, validated and scored at a time (bounds memory)."
    )
    drift_threshold: float = Field(
        0.2,
        gt=0,
        description="Warn about a column whose population stability index against the train "
        "split exceeds this (0.1: a moderate shift, 0.25: a large one).",
    )


class ServeParams(Section):
    """How `stages serve` answers over HTTP (it scores rows as `stages predict` does)."""

    host: str = Field(
        "127.0.0.1",
        description="Address to listen on: localhost by default; 0.0.0.0 to accept other "
        "machines (set SERVE_TOKEN then).",
    )
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on (0: a free one).")
    workers: int = Field(
        1,
        ge=1,
        description="Server processes, each with its own copy of the model; a process uses "
        "about one core, so one per core for the most rows per second.",
    )
    max_body_mb: float = Field(
        16.0, gt=0, description="The largest request body accepted, in MB (413 above it)."
    )
    model_name: str = Field(
        "model",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The model's name in Open Inference Protocol paths (/v2/models/<name>).",
    )
    drift_window: int = Field(
        10_000,
        gt=0,
        description="Served rows the rolling drift summary (/drift) covers: the latest this many.",
    )


class SearchDimension(Section):
    """One key of the search space: a float or int range (log-scaled, or in steps), or a
    choice; `or_zero` first draws whether the key is 0 at all (TabM's `?` dimensions)."""

    kind: Literal["float", "int", "choice"] = Field("float", description="The kind of values.")
    low: float | None = Field(None, description="The range's lowest value (float, int).")
    high: float | None = Field(None, description="The range's highest value (float, int).")
    log: bool = Field(False, description="Draw on a log scale.")
    step: float | None = Field(None, gt=0, description="Draw multiples of this from low.")
    or_zero: bool = Field(False, description="First draw whether the value is 0.")
    choices: list[Any] | None = Field(None, description="The values of a choice.")

    @model_validator(mode="after")
    def _check(self) -> SearchDimension:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("a choice needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.kind} range needs `low` and `high`")
        if self.low >= self.high:
            raise ValueError(f"empty range: low {self.low:g} is not below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        if self.kind == "int" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError("an int range needs whole `low` and `high`")
        return self


def _dimension(kind: str, low: float, high: float, **options: Any) -> SearchDimension:
    return SearchDimension(kind=kind, low=low, high=high, **options)


def default_space() -> dict[str, SearchDimension]:
    """TabM's published space (yandex-research/tabm, paper/exp/*/tuning.toml) on this
    project's train keys: AdamW's learning rate and weight decay, dropout, depth and width,
    piecewise-linear bins and their embedding, PLR frequencies, width and scale; and the
    ensemble's size, which the paper fixes at 32."""
    return {
        "learning_rate": _dimension("float", 1e-4, 3e-3, log=True),
        "weight_decay": _dimension("float", 1e-4, 0.1, log=True, or_zero=True),
        "dropout": _dimension("float", 0.0, 0.5, or_zero=True),
        "hidden_layers": _dimension("int", 1, 4),
        "hidden_width": _dimension("int", 64, 1024, step=16),
        "members": SearchDimension(kind="choice", choices=[4, 8, 16, 32]),
        "numeric_bins": _dimension("int", 2, 128),
        "bin_embedding_dim": _dimension("int", 8, 32, step=4),
        "periodic_frequencies": _dimension("int", 16, 96, step=4),
        "periodic_dim": _dimension("int", 16, 32, step=4),
        "periodic_scale": _dimension("float", 0.01, 10.0, log=True),
    }


class TuneParams(Section):
    """How `stages tune` searches the network's params (on the validation split)."""

    trials: int = Field(30, gt=0, description="Finished trials (complete or pruned) to reach.")
    timeout: float | None = Field(
        None, gt=0, description="Stop starting trials after this many seconds (null: none)."
    )
    prune: bool = Field(
        True, description="Stop an unpromising trial early (median pruner, every epoch)."
    )
    startup_trials: int = Field(
        10, ge=1, description="Trials drawn at random before TPE models the results."
    )
    space: dict[str, SearchDimension] = Field(
        default_factory=default_space,
        description="train keys (and hidden_layers, hidden_width: train.hidden_units) to "
        "search, each a range or a choice.",
    )


class Params(Section):
    dataset: DatasetParams
    collect: CollectParams
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    prepare: PrepareParams = Field(default_factory=PrepareParams)
    split: SplitParams = Field(default_factory=SplitParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    predict: PredictParams = Field(default_factory=PredictParams)
    serve: ServeParams = Field(default_factory=ServeParams)
    tune: TuneParams = Field(default_factory=TuneParams)


# Sections by their name in params.yaml (`validate` is `validate_` in Python).
SECTIONS: dict[str, type[Section]] = {
    field.alias or name: field.annotation  # type: ignore[misc]
    for name, field in Params.model_fields.items()
}


def leaf_fields(model: type[Section] | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted params key, pydantic field) of every key that holds a value, nested sections
    flattened: `train.threshold.rule`, not `train.threshold`. Every section without `model`."""
    if model is None:
        for section, inner in SECTIONS.items():
            yield from leaf_fields(inner, section + ".")
        return
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, Section):
            yield from leaf_fields(inner, key + ".")
        else:
            yield key, field


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing key"
    return f"{key}: {message}" if key else message


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; errors name each bad key."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        details = [_describe(error) for error in exc.errors()]
        raise PipelineError(f"{source}: invalid params", details) from None


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: params file not found") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML", [str(exc)]) from None


def load_params(
    path: str | Path = "params.yaml", overrides: dict[str, dict[str, Any]] | None = None
) -> Params:
    """Read params.yaml, apply command-line overrides per section, validate."""
    raw = read_params_file(path)
    for section, values in (overrides or {}).items():
        if values:
            if not isinstance(raw.get(section), dict):
                raw[section] = {}
            raw[section] = {**raw[section], **values}
    return parse_params(raw, source=str(path))
