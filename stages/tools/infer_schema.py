"""infer-schema: draft a pandera schema, and the read options, from a source.

Sniffs a text file's encoding, delimiter, header row, leading spaces and missing-value
tokens; reads the table as collect would; then proposes, per column, a dtype, whether it
may be missing, a vocabulary for a categorical text column, and sensible numeric checks
(a number never below 0 stays at or above 0; the observed minimum and maximum become hard
bounds only with --strict-ranges). High-cardinality text and identifier-like columns are
listed under metadata.non_features with the reason. The result is readable YAML meant to
be reviewed and committed. With --update-params, params.yaml is pointed at the source,
the read options found, the target and the schema.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stages.common.config import (
    CollectParams,
    EvaluateParams,
    SplitParams,
    TrainParams,
    ValidateParams,
    read_params_file,
)
from stages.common.errors import PipelineError
from stages.common.io import atomic_path, flow_style, read_round_trip, say, write_round_trip
from stages.common.tasks import (
    REMOVE,
    default_evaluation,
    evaluate_conflicts,
    require_two_classes,
    train_conflicts,
)
from stages.data.encoding import LEAK_REASON
from stages.data.sniff import open_sample, sniff_text
from stages.data.sources import collect_table, download, file_format, source_kind
from stages.data.splitting import min_class_rows
from stages.data.transform import holds_nested, is_datetime_dtype

MAX_CATEGORIES = 50
# More rows than this share repeating another, in a table whose every column has few
# values: duplicates are the data, not copies.
REPEATED_SHARE = 0.1


def _first_file(source: str, kind: str, directory: Path) -> Path:
    """The file whose sample is sniffed: the download of a URL, the first of several."""
    if kind == "url":
        return download(source, directory)
    if kind == "glob":
        files = sorted(path for path in Path().glob(source) if path.is_file())
    elif kind == "folder":
        files = sorted(path for path in Path(source).iterdir() if path.is_file())
    else:
        files = [Path(source)]
    if not files or not files[0].is_file():
        raise PipelineError(f"{source}: file not found")
    return files[0]


def read_options(source: str, *, names: list[str] | None, query: str | None) -> dict[str, Any]:
    """collect.* params that read `source`: sniffed for a text file, plain otherwise."""
    kind = source_kind(source)
    options: dict[str, Any] = {"source": source, "query": query, "format": "auto"}
    if kind == "database":
        sqlite = source.removeprefix("sqlite:///")
        # A server database has nothing DVC can watch: collect re-runs when params change.
        options["watch"] = sqlite if source.startswith("sqlite:///") else "params.yaml"
        return options
    options["watch"] = str(Path(source).parent) if kind == "glob" else source
    with tempfile.TemporaryDirectory(prefix=".tmp-sniff-") as directory:
        first = _first_file(source, kind, Path(directory))
        if file_format(first, "auto") != "csv":
            return options
        sniffed = sniff_text(open_sample(first))
    options.update({key: sniffed[key] for key in ("encoding", "delimiter", "header")})
    options.update(skip_initial_space=sniffed["skip_initial_space"], na_values=sniffed["na_values"])
    if sniffed["decimal"] != "." or sniffed["thousands"]:
        options.update(decimal=sniffed["decimal"], thousands=sniffed["thousands"])
    if not sniffed["header"]:
        width = sniffed["columns"]
        names = names or [f"column_{index}" for index in range(1, width + 1)]
        if len(names) != width:
            raise PipelineError(f"{source}: {width} columns, but --names gives {len(names)}")
        options["names"] = names
    return options


# A numeric target with more distinct values than this (or than MIN_CODES_SHARE of the
# rows, when it has more than MAX_CODES // 2) is a quantity to predict, not class codes.
MAX_CODES = 20
MIN_CODES_SHARE = 0.05


def task_choice(series: pd.Series) -> tuple[str, str]:
    """The task a target column calls for, and why: text or yes/no labels are classes; a
    number with few distinct values (codes such as 0/1 or 1-5) is a class label; a number
    with many (counts, scores, amounts, whole or not) is a quantity to regress."""
    present = series.dropna()
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "classification", "its values are labels, not numbers"
    distinct = int(present.nunique())
    whole = bool(len(present)) and bool((present % 1 == 0).all())
    kind = "whole numbers" if whole else "numbers"
    span = f"from {present.min():g} to {present.max():g}" if len(present) else ""
    many = distinct > MAX_CODES or (
        distinct > MAX_CODES // 2 and distinct > MIN_CODES_SHARE * len(present)
    )
    if many:
        return "regression", f"{distinct:,} distinct {kind} {span}: a quantity to predict"
    return "classification", f"{distinct} distinct {kind} {span}: class codes"


def infer_task(series: pd.Series, *, task: str) -> str:
    """`auto`: the task `task_choice` finds; otherwise `task` as given."""
    return task if task != "auto" else task_choice(series)[0]


# ISO, d/m/y or m/d/y (with /, . or -), y/m/d, and dates with the month's name
# (13-Feb-2020, 1 March 2021, Mar 5, 2019).
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
DATE_PATTERN = (
    r"(?i)^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}([/.-])\d{1,2}\2\d{2,4}|\d{4}/\d{1,2}/\d{1,2}"
    rf"|\d{{1,2}}[ -]{_MONTH}[ -]\d{{2,4}}|{_MONTH} \d{{1,2}},? \d{{4}})"
)
BOOLEAN_WORDS = {"yes", "no", "true", "false", "y", "n", "t", "f"}
# Share of distinct values among a text column's present values above which it is free
# text or an identifier, not a category.
MAX_DISTINCT_SHARE = 0.5
# On its own, a column that predicts the label at least this well on held-out rows
# (balanced accuracy; R2 for regression) is set aside as a suspected leak.
LEAK_SCORE = 0.99
# A near-exact leak (see suspected_leaks), chosen on the corpus of benchmarks/corpus.py:
# the strongest honest columns there reach a skill of 0.67 (penguins' island), 0.64
# (flights' departure delay) and, for a number to regress, 0.88 (diamonds' size).
# Several honest columns can each come close to all the columns together (breast cancer's
# size measures), so that alone needs a near-perfect skill.
NEAR_LEAK_SKILL = {"classification": 0.8, "regression": 0.95}
NEAR_LEAK_OVER_NEXT = 2.0
NEAR_EXACT_SKILL = 0.95
NEAR_LEAK_OF_ALL = 0.9
LEAK_SAMPLE_ROWS = 50_000
LEAK_BINS = 64


def _looks_like_dates(values: pd.Series) -> bool:
    """Text whose values (nearly all) are dates or timestamps."""
    sample = values.iloc[:2000].astype(str)
    if not len(sample) or sample.str.match(DATE_PATTERN).mean() < 0.95:
        return False
    written = day_first_format(sample)
    parsed = pd.to_datetime(sample, errors="coerce", utc=True, format=written or "mixed")
    return bool(parsed.notna().mean() >= 0.95)


def day_first_format(values: pd.Series) -> str | None:
    """The strptime format of dates written day first (31.12.2024, 31/12/24, with or
    without a time), when they can only be read that way (a first number above 12) or are
    written with dots and read that way (no second number above 12); None otherwise."""
    text = values.astype(str).str.strip()
    parts = text.str.extract(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})\b")
    if parts[0].isna().mean() > 0.05:
        return None
    parts = parts.dropna()
    first, second = parts[0].astype(int), parts[2].astype(int)
    separator = parts[1].mode().iloc[0]
    if second.max() > 12 or not (first.max() > 12 or separator == "."):
        return None
    year = "%Y" if parts[3].str.len().max() == 4 else "%y"
    base = f"%d{separator}%m{separator}{year}"
    for time in ("", " %H:%M", " %H:%M:%S", "T%H:%M:%S", " %H:%M:%S.%f"):
        parsed = pd.to_datetime(text, format=base + time, errors="coerce")
        if parsed.notna().mean() >= 0.95:
            return base + time
    return None


@dataclass
class _Notes:
    """What the column drafts found besides each column's entry: metadata's sections."""

    non_features: dict[str, str] = dataclasses.field(default_factory=dict)
    embedded_categories: dict[str, str] = dataclasses.field(default_factory=dict)
    date_formats: dict[str, str] = dataclasses.field(default_factory=dict)
    rare_classes: dict[str, int] = dataclasses.field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """non_features always; the other sections when they hold something."""
        sections = {
            "non_features": self.non_features,
            "embedded_categories": self.embedded_categories,
            "date_formats": self.date_formats,
            "rare_classes": self.rare_classes,
        }
        return {key: value for key, value in sections.items() if value or key == "non_features"}


def _checked_task(frame: pd.DataFrame, *, target: str, task: str) -> str:
    """The task for `target`, after checking the column can be a target at all."""
    if target not in frame.columns:
        names = ", ".join(map(str, frame.columns))
        raise PipelineError(f"target column '{target}' is not among the columns: {names}")
    if holds_nested(frame[target]):
        raise PipelineError(f"target column '{target}' holds nested values (lists or maps)")
    task = infer_task(frame[target], task=task)
    if task == "regression" and not pd.api.types.is_numeric_dtype(frame[target]):
        raise PipelineError(
            f"target column '{target}' is {frame[target].dtype}, not numbers: it cannot be "
            "a regression target"
        )
    return task


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str = "auto",
    max_categories: int = MAX_CATEGORIES,
    strict_ranges: bool = False,
    seed: int = 0,
    min_rows: int = 10,
) -> dict[str, Any]:
    """A pandera schema (as the YAML mapping) proposed from a table.

    Each column gets a kind and a reason: a number, a category with its vocabulary, an
    embedded category (many values: a vocabulary learned from train rows), a date, or a
    non-feature (an identifier, free text, nested values, a single value, a suspected
    target leak) listed under metadata.non_features with the reason, for a reviewer to flip.
    A class with fewer than `min_rows` rows (too few to appear in every split) is left out
    of the target's classes and listed under metadata.rare_classes: validate quarantines
    its rows.
    """
    task = _checked_task(frame, target=target, task=task)
    notes = _Notes()
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if name == target and task == "regression":
            entry = _regression_target(series)
        elif name == target:
            entry = _class_target(series, target=target, min_rows=min_rows, notes=notes)
        else:
            entry = _feature_entry(
                series, max_categories=max_categories, strict_ranges=strict_ranges, notes=notes
            )
        order = ("description", "dtype", "nullable", "checks")
        columns[str(name)] = {key: entry[key] for key in order if key in entry}
    candidates = [
        str(name) for name in frame.columns if name != target and name not in notes.non_features
    ]
    leaks = suspected_leaks(frame, target=target, task=task, columns=candidates, seed=seed)
    for name, reason in leaks.items():
        notes.non_features[name] = reason
        notes.embedded_categories.pop(name, None)
    return {
        "schema_type": "dataframe",
        "version": "0.35.0",
        "columns": columns,
        "coerce": True,
        "strict": True,
        "unique_column_names": True,
        "metadata": notes.metadata(),
    }


def _regression_target(series: pd.Series) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": "The target: a number to predict (rows without it are dropped).",
        "dtype": "float64",
        "nullable": True,
    }
    present = series.dropna()
    if len(present) and present.min() >= 0:
        entry["checks"] = {"greater_than_or_equal_to": 0}
    return entry


def _class_target(series: pd.Series, *, target: str, min_rows: int, notes: _Notes) -> dict:
    """The target's classes; a class with fewer than `min_rows` rows goes to rare_classes."""
    present = series.dropna()
    counts = present.astype(str).value_counts()
    rare = {str(label): int(count) for label, count in counts.items() if count < min_rows}
    classes = sorted(label for label in counts.index if label not in rare)
    require_two_classes(
        len(classes),
        where=f"target column '{target}', counting classes with at least {min_rows} "
        "rows (as many as a class needs to appear in every split),",
    )
    notes.rare_classes.update(sorted(rare.items()))
    unlabelled = len(series) - len(present)
    left_out = (
        f"; {len(rare)} class(es) with fewer than {min_rows} rows left out (their "
        f"{sum(rare.values()):,} rows are quarantined by validate)"
        if rare
        else ""
    )
    return {
        "description": f"The target: {len(classes)} classes{left_out}"
        + (f" ({unlabelled:,} rows without one are dropped)." if unlabelled else "."),
        "dtype": "str",
        "nullable": True,
        "checks": {"isin": classes},
    }


def _feature_entry(
    series: pd.Series, *, max_categories: int, strict_ranges: bool, notes: _Notes
) -> dict[str, Any]:
    """One input column's entry, by kind; a column that is no model input goes to
    notes.non_features with the reason."""
    name = series.name
    nullable = bool(series.isna().any())
    if holds_nested(series):
        notes.non_features[name] = "nested values (lists or maps): not a model input"
        return {"description": "Nested values (lists or maps).", "nullable": True}
    present = series.dropna()
    distinct = present.nunique()
    entry: dict[str, Any] = {"nullable": nullable}
    if distinct == 0 or (distinct == 1 and len(present) == len(series)):
        notes.non_features[name] = "a single value in every row: carries no information"
        entry.update(description="A single value.", dtype=_plain_dtype(series))
    elif pd.api.types.is_bool_dtype(series):
        entry.update(dtype="bool", description="Yes/no.")
    elif pd.api.types.is_numeric_dtype(series):
        entry.update(_number_entry(series, strict_ranges=strict_ranges, notes=notes))
    elif pd.api.types.is_datetime64_any_dtype(series) or _looks_like_dates(present):
        written = None if is_datetime_dtype(series.dtype) else day_first_format(present)
        if written:
            notes.date_formats[str(name)] = written
        entry.update(
            dtype="datetime64[ns]",
            description="A date or timestamp: its year, month, day, weekday and hour are features.",
        )
    else:
        entry.update(_text_entry(series, max_categories=max_categories, notes=notes))
    return entry


def _number_entry(series: pd.Series, *, strict_ranges: bool, notes: _Notes) -> dict[str, Any]:
    """A number's dtype and checks; consecutive distinct integers are a row number."""
    present = series.dropna()
    distinct = present.nunique()
    entry: dict[str, Any] = {
        "dtype": "int64" if pd.api.types.is_integer_dtype(series) else "float64"
    }
    if strict_ranges and len(present):
        entry["checks"] = {
            "in_range": {"min_value": present.min().item(), "max_value": present.max().item()}
        }
    elif len(present) and present.min() >= 0:
        entry["checks"] = {"greater_than_or_equal_to": 0}
    entry["description"] = f"A number ({distinct:,} distinct values)."
    if (
        pd.api.types.is_integer_dtype(series)
        and len(present) >= 20
        and distinct == len(present)
        and present.max() - present.min() + 1 == len(present)
    ):
        notes.non_features[series.name] = "consecutive distinct integers: looks like a row number"
    return entry


def _text_entry(series: pd.Series, *, max_categories: int, notes: _Notes) -> dict[str, Any]:
    """Text: a category with its vocabulary, an embedded category, or free text."""
    name = series.name
    present = series.dropna()
    distinct = present.nunique()
    values = present.astype(str)
    share = distinct / max(len(present), 1)
    if distinct <= max_categories and distinct <= max(2, len(present) // 2):
        kind = "Yes/no" if set(values.str.lower().unique()) <= BOOLEAN_WORDS else "A category"
        return {
            "dtype": "str",
            "checks": {"isin": sorted(values.unique())},
            "description": f"{kind} ({distinct} values).",
        }
    if share <= MAX_DISTINCT_SHARE:
        notes.embedded_categories[name] = (
            f"{distinct:,} distinct values, more than {max_categories}: a vocabulary "
            "learned from train rows (train.max_vocabulary, train.min_category_rows; "
            "other values share one code) and an embedding"
        )
        return {"dtype": "str", "description": f"A category with many values ({distinct:,})."}
    notes.non_features[name] = (
        "every value is distinct: looks like an identifier"
        if distinct == len(present)
        else f"{distinct:,} distinct values in {len(present):,} rows: free text or an identifier"
    )
    return {"dtype": "str", "description": f"Text ({distinct:,} distinct values)."}


def _plain_dtype(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int64"
    if pd.api.types.is_numeric_dtype(series):
        return "float64"
    return "str"


def _is_numeric_column(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _groups(values: pd.Series, train: np.ndarray) -> np.ndarray:
    """Each row's group for the leak check: a quantile bin of a number (edges from the
    `train` rows), the value of anything else; missing is a group of its own (-1)."""
    if _is_numeric_column(values):
        numbers = values.astype("float64").to_numpy()
        known = numbers[train][~np.isnan(numbers[train])]
        if not known.size:
            return np.full(len(values), -1)
        edges = np.unique(np.quantile(known, np.linspace(0, 1, LEAK_BINS + 1)[1:-1]))
        groups = np.searchsorted(edges, numbers, side="right")
        return np.where(np.isnan(numbers), -1, groups)
    codes, _ = pd.factorize(values.astype("string"))
    return codes


def _held_out_score(groups: np.ndarray, labels: pd.Series, train: np.ndarray, task: str) -> float:
    """How well each group's train label (its majority class, or mean) predicts the
    held-out rows' labels: balanced accuracy, or R2 for regression."""
    from sklearn.metrics import balanced_accuracy_score, r2_score

    frame = pd.DataFrame({"group": groups, "label": labels.to_numpy()})
    fitted, held = frame[train], frame[~train]
    if task == "regression":
        means = fitted.groupby("group")["label"].mean()
        guess = held["group"].map(means).fillna(fitted["label"].mean())
        return float(r2_score(held["label"], guess))
    majority = fitted.groupby("group")["label"].agg(lambda part: part.value_counts().index[0])
    guess = held["group"].map(majority).fillna(fitted["label"].value_counts().index[0])
    return float(balanced_accuracy_score(held["label"], guess.astype(held["label"].dtype)))


def _skill(score: float, task: str, classes: int) -> float:
    """A held-out score on a scale where chance is 0 and perfect is 1: balanced accuracy
    rescaled by the number of classes, or R2 as it is."""
    if task == "regression":
        return score
    chance = 1 / max(classes, 2)
    return (score - chance) / (1 - chance)


def _all_columns_score(
    groups: dict[str, np.ndarray], labels: pd.Series, train: np.ndarray, task: str, seed: int
) -> float:
    """What all the columns together predict on the held-out rows (gradient boosting on
    the columns' groups): the yardstick a near-exact leak comes close to on its own."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import balanced_accuracy_score, r2_score

    matrix = np.column_stack(list(groups.values())).astype("float64")
    values = labels.to_numpy()
    if task == "regression":
        model = HistGradientBoostingRegressor(random_state=seed)
        model.fit(matrix[train], values[train].astype("float64"))
        return float(r2_score(values[~train].astype("float64"), model.predict(matrix[~train])))
    model = HistGradientBoostingClassifier(random_state=seed)
    model.fit(matrix[train], values[train])
    return float(balanced_accuracy_score(values[~train], model.predict(matrix[~train])))


def suspected_leaks(
    frame: pd.DataFrame, *, target: str, task: str, columns: list[str], seed: int = 0
) -> dict[str, str]:
    """Columns that on their own (or by whether they are missing) predict the label too
    well on held-out rows: each with the reason, starting with LEAK_REASON.

    Each column's rows are grouped (a number into quantile bins, anything else by value);
    each group's label on 70% of the labelled rows predicts the other 30%. A column is an
    exact leak at LEAK_SCORE; a near-exact one (a number or id assigned only once the
    outcome is known) when its skill (chance 0, perfect 1) reaches NEAR_LEAK_SKILL and is
    NEAR_LEAK_OVER_NEXT times any other column's, or reaches NEAR_EXACT_SKILL and comes
    within NEAR_LEAK_OF_ALL of all the columns together."""
    labelled = frame[frame[target].notna()]
    if len(labelled) > LEAK_SAMPLE_ROWS:
        labelled = labelled.sample(n=LEAK_SAMPLE_ROWS, random_state=seed)
    if len(labelled) < 50:
        return {}
    labels = labelled[target]
    if task == "classification":
        labels = labels.astype(str)
        if labels.value_counts().iloc[0] == len(labels):
            return {}
    rng = np.random.default_rng(seed)
    train = rng.random(len(labelled)) < 0.7
    with warnings.catch_warnings():  # a group's majority class may be absent from held-out rows
        warnings.simplefilter("ignore", UserWarning)
        return _leaks(labelled, labels, train, target=target, task=task, columns=columns, seed=seed)


def _leaks(
    labelled: pd.DataFrame,
    labels: pd.Series,
    train: np.ndarray,
    *,
    target: str,
    task: str,
    columns: list[str],
    seed: int,
) -> dict[str, str]:
    """Exact leaks first; then, among the other columns, near-exact ones."""
    metric = "R2" if task == "regression" else "balanced accuracy"
    groups = {
        name: _groups(labelled[name], train) for name in columns if not holds_nested(labelled[name])
    }
    scores = {
        name: _column_score(labelled[name], codes, labels, train, task)
        for name, codes in groups.items()
    }
    leaks: dict[str, str] = {}
    for name, (score, how) in scores.items():
        values = labelled[name]
        if score >= LEAK_SCORE:
            leaks[name] = (
                f"{LEAK_REASON}: {how} predicts '{target}' with {metric} {score:.3f} on held-out "
                "rows; keep it only if it is known before the outcome"
            )
        elif task == "regression" and _is_numeric_column(values):
            # A monotone transform of the target (its log, another unit) ranks rows alike.
            rho = abs(values.astype("float64").corr(labels.astype("float64"), method="spearman"))
            if rho >= LEAK_SCORE:
                leaks[name] = (
                    f"{LEAK_REASON}: it ranks the rows as '{target}' does (Spearman "
                    f"correlation {rho:.3f}); keep it only if it is known before the outcome"
                )
    kept = {name: codes for name, codes in groups.items() if name not in leaks}
    near = _near_leaks(
        {name: scores[name] for name in kept}, kept, labels, train, task=task, seed=seed
    )
    for name, (skill, together, runner_up) in near.items():
        score, how = scores[name]
        leaks[name] = (
            f"{LEAK_REASON}: {how} predicts '{target}' with {metric} {score:.3f} on held-out "
            f"rows, near-exactly (skill {skill:.2f} against {together:.2f} for all "
            f"columns together and at most {runner_up:.2f} for any other column); keep it "
            "only if it is known before the outcome"
        )
    return leaks


def _column_score(
    values: pd.Series, codes: np.ndarray, labels: pd.Series, train: np.ndarray, task: str
) -> tuple[float, str]:
    """A column's best held-out score, by its values or by whether it is missing, and how."""
    best = (_held_out_score(codes, labels, train, task), "on its own it")
    missing = values.isna().to_numpy()
    if missing.any() and not missing.all():
        score = _held_out_score(missing.astype(int), labels, train, task)
        if score >= LEAK_SCORE or score > best[0]:
            best = (score, "whether it is missing")
    return best


def _near_leaks(
    scores: dict[str, tuple[float, str]],
    groups: dict[str, np.ndarray],
    labels: pd.Series,
    train: np.ndarray,
    *,
    task: str,
    seed: int,
) -> dict[str, tuple[float, float, float]]:
    """Near-exact leaks among the columns scored: each with its skill, the skill of all
    the columns together and the best other column's."""
    classes = labels.nunique() if task == "classification" else 0
    skills = {name: _skill(score, task, classes) for name, (score, _) in scores.items()}
    strong = [name for name, skill in skills.items() if skill >= NEAR_LEAK_SKILL[task]]
    if not strong:
        return {}
    together = _skill(_all_columns_score(groups, labels, train, task, seed), task, classes)
    near: dict[str, tuple[float, float, float]] = {}
    for name in strong:
        runner_up = max((skill for other, skill in skills.items() if other != name), default=0.0)
        alone = skills[name] >= NEAR_LEAK_OVER_NEXT * max(runner_up, 0.0)
        if alone or (
            skills[name] >= NEAR_EXACT_SKILL and skills[name] >= NEAR_LEAK_OF_ALL * together
        ):
            near[name] = (skills[name], together, runner_up)
    return near


def schema_yaml(schema: dict[str, Any], *, source: str, rows: int) -> str:
    header = (
        f"# pandera schema inferred by `stages infer-schema` from {source} ({rows:,} rows).\n"
        "# Review it before committing: vocabularies (isin) are the categories the model\n"
        "# knows; an unlisted value is invalid at validation. metadata.non_features lists the\n"
        "# columns that are not model inputs, with the reason (move one out to use it);\n"
        "# metadata.embedded_categories lists text columns with many values, whose vocabulary\n"
        "# train learns from train rows.\n"
    )
    return header + yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=100)


# The gates --update-params writes, by task: relative to baselines fitted on the same
# split, so they mean something on any table. The allowed shortfall against gradient
# boosting comes from the corpus of real tables in benchmarks/corpus.py (see the README).
def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key; REMOVE deletes it (from a list, such as a gate's must_beat
    metrics, the item itself)."""
    *sections, last = key.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
    if value is not REMOVE:
        raw[last] = value
    elif isinstance(raw, list):
        raw[:] = [item for item in raw if item != last]
    else:
        raw.pop(last, None)


def fit_task(
    raw: dict[str, Any],
    task: str,
    *,
    classes: int | None = None,
    features: list[str] | None = None,
) -> list[str]:
    """Make the params that depend on the task and the table suit them, by the rules train
    and evaluate check (stages/common/tasks.py): the task's baselines and gates (relative
    to the baselines), then whatever else conflicts (monitor, class weights, the decision
    threshold and calibration for two classes only, slices of feature columns only);
    returns what changed."""
    changes = []
    evaluate = raw.setdefault("evaluate", {})
    for key, value in default_evaluation(task).items():
        if evaluate.get(key) != value:
            if isinstance(value, dict) and isinstance(evaluate.get(key), dict):
                for inner, setting in value.items():  # in place: the keys' comments stay
                    evaluate[key][inner] = flow_style(setting)
            else:
                evaluate[key] = flow_style(value)
            changes.append(f"evaluate.{key}: the {task} defaults")
    train = TrainParams.model_validate(raw.get("train", {}))
    conflicts = train_conflicts(task, 2 if classes is None else classes, train)
    conflicts += evaluate_conflicts(task, EvaluateParams.model_validate(evaluate), features)
    for conflict in conflicts:
        set_key(raw, conflict.key, flow_style(conflict.fix))
        fixed = "removed" if conflict.fix is REMOVE else conflict.fix
        changes.append(f"{conflict.key}: {fixed} ({conflict.problem.split(';')[0]})")
    return changes


def repeated_observations(frame: pd.DataFrame, *, max_values: int) -> int:
    """The rows that repeat another in a table whose every column has at most `max_values`
    values (categories, codes, yes/no): there the same row is a new observation, since so
    few rows are possible. 0 for any other table, whose exact repeats are copies (that
    prepare drops, so that no row is both trained and tested on)."""
    if any(frame[name].nunique() > max_values for name in frame.columns):
        return 0
    return int(frame.astype("string").duplicated().sum())


def fitted_batch_size(rows: int, *, train_share: float) -> int:
    """A batch size that gives an epoch about 40 steps or more: the power of two nearest
    train rows / 40, between 32 and 512. Large batches on a small table leave the network
    a handful of steps per epoch, and it stops before it has learned."""
    train_rows = max(1.0, rows * train_share)
    return int(min(512, max(32, 2 ** round(math.log2(max(train_rows / 40, 1))))))


def update_params(
    path: Path,
    *,
    options: dict[str, Any],
    target: str,
    schema_path: str,
    task: str,
    rows: int | None = None,
    classes: int | None = None,
    features: list[str] | None = None,
    rare_rows: int = 0,
    repeated_rows: int = 0,
) -> list[str]:
    """Point params.yaml at the source, its read options, the target, the task and the
    schema, and fit the task's other params (and, given the table's `rows`, the batch
    size; its number of `classes` and its `features`, what depends on them) to it;
    returns the changes made to params other than the source's."""
    raw = read_round_trip(path)
    collect = raw.setdefault("collect", {})
    for key, field in CollectParams.model_fields.items():
        if key in options:
            collect[key] = flow_style(options[key])
        elif not field.is_required():
            # A key the source does not set goes back to its default, comment kept.
            collect[key] = flow_style(field.get_default(call_default_factory=True))
    raw.setdefault("dataset", {}).update(target=target, schema=schema_path, task=task)
    changes = fit_task(raw, task, classes=classes, features=features)
    if rows and repeated_rows > REPEATED_SHARE * rows:
        # Few distinct combinations (a table of categories): repeats are observations.
        raw.setdefault("prepare", {})["drop_duplicates"] = False
        changes.append(
            f"prepare.drop_duplicates: false ({repeated_rows / rows:.0%} of rows repeat "
            "another: every column has few values, so repeats are observations, not copies)"
        )
    if rare_rows:
        validate = raw.setdefault("validate", {})
        share = rare_rows / max(rows or rare_rows, 1)
        validate["on_invalid"] = "quarantine"
        changes.append("validate.on_invalid: quarantine (the rows of the rare classes)")
        if share > ValidateParams.model_validate(dict(validate)).max_invalid_fraction:
            validate["max_invalid_fraction"] = round(share + 0.01, 2)
            changes.append(f"validate.max_invalid_fraction: {validate['max_invalid_fraction']}")
    if rows is not None:
        split = SplitParams.model_validate(dict(raw.get("split") or {}))
        share = 1 - split.validation - split.test
        batch = fitted_batch_size(rows, train_share=share)
        train = raw.setdefault("train", {})
        if train.get("batch_size") != batch:
            train["batch_size"] = batch
            changes.append(
                f"train.batch_size: {batch} (about {rows * share / batch:.0f} steps an epoch)"
            )
    write_round_trip(raw, path)
    return changes


def run(
    *,
    source: str,
    target: str,
    out: str,
    names: list[str] | None,
    task: str = "auto",
    query: str | None,
    update: str | None,
    max_categories: int,
    strict_ranges: bool,
) -> None:
    options = read_options(source, names=names, query=query)
    frame, _ = collect_table(CollectParams(**{"watch": source, **options}))
    task = _announced_task(frame, source=source, target=target, task=task)
    _announce_number_format(options)
    split = SplitParams.model_validate(
        (read_params_file(Path(update)).get("split") or {}) if update else {}
    )
    split_rows = min_class_rows(validation=split.validation, test=split.test)
    schema = infer_schema(
        frame,
        target=target,
        task=task,
        max_categories=max_categories,
        strict_ranges=strict_ranges,
        min_rows=split_rows,
    )
    with atomic_path(out, suffix=".yaml") as tmp:
        tmp.write_text(schema_yaml(schema, source=source, rows=len(frame)), encoding="utf-8")
    _announce_schema(schema, frame=frame, target=target, task=task, out=out, split_rows=split_rows)
    if not update:
        return
    metadata = schema["metadata"]
    changes = update_params(
        Path(update),
        options=options,
        target=target,
        schema_path=out,
        task=task,
        rows=len(frame),
        classes=len(schema["columns"][target]["checks"]["isin"])
        if task == "classification"
        else None,
        rare_rows=sum(metadata.get("rare_classes", {}).values()),
        repeated_rows=repeated_observations(frame, max_values=max_categories),
        features=[
            str(name)
            for name in frame.columns
            if name != target and name not in metadata["non_features"]
        ],
    )
    say("infer-schema", f"{update} now reads {source} with target '{target}' ({task})")
    if changes:
        say("infer-schema", f"params fitted to the table ({task}):")
        for change in changes:
            say("infer-schema", f"  {change}")


def _announced_task(frame: pd.DataFrame, *, source: str, target: str, task: str) -> str:
    """The task for `target`; with `auto`, the one found, said with the reason."""
    if target not in frame.columns:
        raise PipelineError(
            f"{source}: target column '{target}' (--target) is not among the columns: "
            + ", ".join(map(str, frame.columns))
        )
    if task != "auto":
        return task
    task, why = task_choice(frame[target])
    other = "classification" if task == "regression" else "regression"
    hint = f" (--task {other} to override)" if _is_numeric_column(frame[target]) else ""
    say("infer-schema", f"target '{target}': {why}, so {task}{hint}")
    return task


def _announce_number_format(options: dict[str, Any]) -> None:
    """Say so when numbers are written with a decimal comma or thousands separators."""
    decimal, thousands = options.get("decimal", "."), options.get("thousands")
    if decimal == "." and not thousands:
        return
    say(
        "infer-schema",
        f"numbers are written with {decimal!r} as the decimal mark"
        + (f" and {thousands!r} between thousands" if thousands else "")
        + " (collect.decimal, collect.thousands)",
    )


def _announce_schema(
    schema: dict[str, Any],
    *,
    frame: pd.DataFrame,
    target: str,
    task: str,
    out: str,
    split_rows: int,
) -> None:
    """One line for the schema written, then one per column set aside, embedded category,
    rare class group and day-first date."""
    metadata = schema["metadata"]
    excluded = metadata["non_features"]
    embedded = metadata.get("embedded_categories", {})
    say(
        "infer-schema",
        f"{len(frame):,} rows x {frame.shape[1]} columns ({task}); {len(excluded)} not "
        f"features, {len(embedded)} embedded categories -> {out}",
    )
    for name, reason in excluded.items():
        loud = "WARNING: " if reason.startswith(LEAK_REASON) else ""
        say("infer-schema", f"{loud}not a feature: '{name}': {reason}")
    for name, reason in embedded.items():
        say("infer-schema", f"embedded category: '{name}': {reason}")
    rare = metadata.get("rare_classes", {})
    if rare:
        say(
            "infer-schema",
            f"target '{target}': {len(rare)} class(es) too rare for every split (fewer than "
            f"{split_rows} rows) left out, their {sum(rare.values()):,} rows quarantined: "
            + ", ".join(f"{label} ({count})" for label, count in rare.items()),
        )
    for name, written in metadata.get("date_formats", {}).items():
        say("infer-schema", f"date: '{name}' is written day first ({written})")
