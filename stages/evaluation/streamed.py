"""evaluate on a test split larger than `EXACT_ROWS`: one pass over its partitions.

Each partition is scored by the model and added to running sums (`stages.evaluation.tally`):
the metrics, the calibration before and after, the curves and the slices' groups. Its
rows are appended to the predictions file and to the per-row plot data as they come, and
the rows of two seeded samples are kept: `evaluate.interval_rows` of them for the
intervals (resampled and narrowed by sqrt(sample / rows) around the value on every row, as
on a smaller split) and `evaluate.importance_rows` for permutation importance. A number
column's slices are cut at the quartiles of the interval sample. Memory holds a
partition, the samples and the sums, whatever the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.common import paths
from stages.common.config import EvaluateParams
from stages.common.io import FileWriter, Partition, drawn_rows, read_json, rows_within
from stages.common.tasks import LOWER_IS_BETTER
from stages.data.encoding import ROW_ID, EncodingSpec, concat_inputs, take_rows, to_arrays
from stages.evaluation.baselines import PredictionRows
from stages.evaluation.figures import thinned
from stages.evaluation.importance import (
    quartile_edges,
    slice_columns,
    slice_labels,
    slice_table,
)
from stages.evaluation.metrics import narrowed_bootstrap, narrowed_means
from stages.evaluation.scoring import (
    Judged,
    bootstrap_intervals,
    decision_report,
    model_importance,
    model_outputs,
    prediction_table,
    regression_table,
    slice_scores,
)
from stages.evaluation.tally import ClassTally, ValueTally, rounded
from stages.model.build import model_vocabularies


class _Kept:
    """What the pass keeps of the sampled rows, a partition's share at a time."""

    def __init__(self) -> None:
        self.parts: dict[str, list] = {}

    def add(self, **values) -> None:
        for name, value in values.items():
            self.parts.setdefault(name, []).append(value)

    def joined(self, name: str):
        parts = self.parts.get(name, [])
        if not parts or parts[0] is None:
            return None
        if isinstance(parts[0], dict):
            return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        return concat_inputs(parts)


def _slice_edges(parts: list[Partition], chosen: np.ndarray, spec, columns: list[str]) -> dict:
    """The quartiles of each number column `evaluate.slices` groups by, on the sampled
    rows (only those columns are read)."""
    if not columns:
        return {}
    read = slice_columns(spec, columns)
    frame = pd.concat(
        [
            part.read(columns=read).iloc[rows_within(chosen, part.start, part.rows)]
            for part in parts
        ],
        ignore_index=True,
    )
    edges = {column: quartile_edges(frame, spec, column) for column in columns}
    return {
        column: cut for column, cut in edges.items() if cut is not None and np.unique(cut).size > 1
    }


def _groups(found: dict, labels: pd.Series, per_row: np.ndarray) -> None:
    """Add a partition's rows and per-row values to each group's (rows, sum)."""
    sums = pd.Series(per_row).groupby(labels.to_numpy()).agg(["size", "sum"])
    for label, (rows, total) in sums.iterrows():
        held = found.setdefault(label, [0, 0.0])
        held[0] += int(rows)
        held[1] += float(total)


class _TestPass:
    """The running sums and the sampled rows of one pass over the test partitions."""

    def __init__(self, model, parts: list[Partition], *, spec: EncodingSpec, settings, seed):
        self.model, self.spec, self.settings = model, spec, settings
        self.classify = spec.task == "classification"
        n_classes = len(spec.classes)
        self.total = sum(part.rows for part in parts)
        self.sampled = drawn_rows(self.total, min(self.total, settings.interval_rows), seed=seed)
        self.important = None
        if settings.importance_repeats:
            size = min(self.total, settings.importance_rows)
            self.important = drawn_rows(self.total, size, seed=seed)
        self.edges = _slice_edges(parts, self.sampled, spec, settings.slices)
        self.vocabularies = model_vocabularies(model)
        self.baselines = PredictionRows(
            paths.BASELINES_PREDICTIONS, names=settings.baselines, n_classes=n_classes
        )
        self.tally = ClassTally(n_classes) if self.classify else ValueTally()
        self.before = ClassTally(n_classes) if self.classify else None
        self.groups: dict[str, dict] = {column: {} for column in settings.slices}
        self.kept, self.threshold, self.metric = _Kept(), None, None

    def add(self, part: Partition) -> pd.DataFrame:
        """Score one partition and add it up; returns its rows of the predictions file."""
        frame = part.read().reset_index(drop=True)
        x, y = to_arrays(frame, self.spec, self.vocabularies)
        outputs = model_outputs(self.model, x, task=self.spec.task)
        self.threshold = outputs.threshold
        baselines = self.baselines.take(frame[ROW_ID])
        if self.classify:
            self.tally.add(y, outputs.predicted, outputs.labels)
            self.before.add(y, outputs.uncalibrated)
            table = prediction_table(
                frame[ROW_ID],
                y,
                outputs.predicted,
                classes=self.spec.classes,
                labels=outputs.labels,
            )
        else:
            self.tally.add(y, outputs.predicted)
            table = regression_table(frame[ROW_ID], y, outputs.predicted)
        self.metric, per_row = slice_scores(y, outputs, task=self.spec.task)
        labels = {
            column: slice_labels(frame, self.spec, column, self.edges.get(column))
            for column in self.settings.slices
        }
        for column, label in labels.items():
            _groups(self.groups[column], label, per_row)
        within = rows_within(self.sampled, part.start, part.rows)
        self.kept.add(
            y=y[within],
            predicted=outputs.predicted[within],
            labels=None if outputs.labels is None else outputs.labels[within],
            baselines={name: values[within] for name, values in baselines.items()},
            groups={column: label.to_numpy()[within] for column, label in labels.items()},
            per_row=per_row[within],
        )
        if self.important is not None:
            chosen = rows_within(self.important, part.start, part.rows)
            self.kept.add(x_important=take_rows(x, chosen), y_important=y[chosen])
        return table

    def intervals(self, metrics, baselines, *, seed: int) -> dict[str, Any]:
        """The intervals, resampled from the sampled rows, around the values on all."""
        sampled_baselines = self.kept.joined("baselines")
        samples = narrowed_bootstrap(
            self.kept.joined("y"),
            {
                "model": (self.kept.joined("predicted"), self.kept.joined("labels")),
                **{name: (values, None) for name, values in sampled_baselines.items()},
            },
            {"model": self.tally.metrics(), **baselines},
            rows=self.total,
            task=self.spec.task,
            resamples=self.settings.resamples,
            seed=seed,
        )
        return bootstrap_intervals(
            samples, metrics, baselines, rows=self.total, settings=self.settings, seed=seed
        )

    def importance(self, *, seed: int) -> pd.DataFrame | None:
        if self.important is None:
            return None
        x, y = self.kept.joined("x_important"), self.kept.joined("y_important")
        return model_importance(self.model, x, y, spec=self.spec, settings=self.settings, seed=seed)

    def decision(self, metrics, training) -> dict[str, Any]:
        return decision_report(
            rounded(self.before.metrics(decided=False)),
            rounded(self.tally.metrics(decided=False)),
            metrics,
            threshold=self.threshold,
            training=training.get("calibration"),
        )

    def figures(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """The plots' tables still to write, and what the figures draw beside them."""
        if not self.classify:
            scatter = pd.DataFrame(
                {
                    "actual": np.ravel(self.kept.joined("y")),
                    "predicted": np.ravel(self.kept.joined("predicted")),
                }
            )
            return {}, {"scatter": scatter}
        pooled = self.tally.pooled()
        tables = {
            "roc": thinned(pooled.roc()),
            "precision_recall": thinned(pooled.precision_recall()),
            "calibration": pooled.reliability(),
        }
        drawn = {
            "confusion": self.tally.decided,
            "before": self.before.pooled().reliability(),
            "threshold": self.threshold,
        }
        return tables, drawn


def judge_streamed(
    model,
    parts: list[Partition],
    *,
    spec: EncodingSpec,
    settings: EvaluateParams,
    seed: int,
    training: dict[str, Any],
) -> Judged:
    """Everything evaluate reports, from one pass over the test partitions; writes the
    predictions file and the per-row plot data on the way."""
    judged = _TestPass(model, parts, spec=spec, settings=settings, seed=seed)
    per_row = "confusion" if judged.classify else "predicted_vs_actual"
    with (
        FileWriter(paths.EVALUATE_PREDICTIONS) as predictions,
        FileWriter(f"{paths.EVALUATE_PLOTS}/{per_row}.csv") as plot,
    ):
        for part in parts:
            table = judged.add(part)
            predictions.write(table)
            plot.write(table[["actual", "predicted"]])
        judged.baselines.finish()
    metrics = rounded(judged.tally.metrics())
    scored = read_json(paths.BASELINES_METRICS)  # the baselines stage scored the same rows
    baselines = {name: scored[name] for name in settings.baselines}
    slices = _slices(judged.groups, judged.kept, settings=settings, metric=judged.metric, seed=seed)
    tables, drawn = judged.figures()
    return Judged(
        metrics,
        baselines,
        judged.intervals(metrics, baselines, seed=seed),
        judged.decision(metrics, training) if judged.classify else None,
        judged.importance(seed=seed),
        slices,
        judged.total,
        judged.threshold,
        tables,
        drawn,
    )


def _slices(groups: dict, kept: _Kept, *, settings, metric: str, seed: int) -> dict:
    """`slices_report` from the groups' sums, the intervals from the sampled rows."""
    per_row, labels = kept.joined("per_row"), kept.joined("groups") or {}
    report = {}
    for column, found in groups.items():
        summed = {}
        for label, (rows, value) in found.items():
            mean = value / rows
            in_sample = per_row[labels[column] == label]
            summed[label] = (
                rows,
                mean,
                narrowed_means(in_sample, mean, rows=rows, resamples=settings.resamples, seed=seed),
            )
        total = sum(rows for rows, _ in found.values())
        overall = sum(value for _, value in found.values()) / max(total, 1)
        report[column] = slice_table(
            summed,
            overall,
            metric=metric,
            lower_is_better=metric in LOWER_IS_BETTER,
            level=settings.interval,
        )
    return report
