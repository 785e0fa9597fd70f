"""evaluate: judge the trained model on the unseen test split, against baselines and gates.

Reads models/network.keras (on Keras's numpy backend: no TensorFlow start),
data/split/test (partition by partition: memory does not grow with its rows; a split of
more than `EXACT_ROWS` rows is judged in one pass, stages.evaluation.streamed),
data/prepared/encoding.json, the baselines' test predictions
(reports/baselines/predictions.parquet, fitted on the train split by the baselines stage)
and the earlier stages' reports. Writes:

- reports/evaluate/metrics.json: the model's test metrics (accuracy, balanced accuracy,
  macro precision, recall and F1, ROC AUC, log loss, calibration error; for two classes its
  decision threshold), the file `dvc metrics show` prints;
- intervals.json (a bootstrap interval for every
  metric of the model and the baselines, and for the model's difference to each baseline),
  slices.json (metrics per group of `evaluate.slices`), calibration.json (the calibration
  and threshold train fitted, before and after on the test rows), beside it;
- the data of `dvc plots` in reports/evaluate/plots/ (confusion.csv with one row per test
  row at the model's threshold, roc.csv, precision_recall.csv, calibration.csv,
  importance.csv: permutation importance per raw column);
- the test predictions (reports/evaluate/predictions.parquet), reports/report.md with its
  PNG figures, and, when every gate in `evaluate.gates` passes,
  reports/evaluate/verdict.json; a missed gate fails the stage naming metric, value and gate.

For regression the metrics are MAE, RMSE and R2, the plot is predicted against actual
(reports/evaluate/plots/predicted_vs_actual.csv), the baselines are regressors and there
is no calibration or threshold (calibration.json holds `{}`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.common import paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import (
    EXACT_ROWS,
    atomic_path,
    drawn_rows,
    partitions,
    read_json,
    rows_within,
    say,
    write_csv,
    write_json,
    write_table,
)
from stages.common.tasks import check_evaluate_params
from stages.data.encoding import (
    ROW_ID,
    TARGET,
    EncodingSpec,
    concat_inputs,
    take_rows,
    to_arrays,
)
from stages.evaluation.baselines import read_predictions, scores_of
from stages.evaluation.figures import confusion_counts, reliability, write_figures
from stages.evaluation.importance import slice_columns
from stages.evaluation.report import (
    Findings,
    dominant_column,
    render_report,
)
from stages.evaluation.scoring import (
    Judged,
    bootstrap_intervals,
    check_gates,
    concat_outputs,
    headline_line,
    model_importance,
    model_outputs,
    resampled_metrics,
    result_tables,
    slices_report,
    summary_metrics,
    whole_decision_report,
)
from stages.evaluation.streamed import judge_streamed
from stages.model.build import model_vocabularies
from stages.model.files import load_model


def run(params: Params) -> None:
    """The evaluate command: score model and baselines on the test split, with intervals,
    calibration, importance and slices; write the report; check the gates."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    settings, seed = params.evaluate, params.dataset.seed
    check_evaluate_params(spec.task, settings, [feature.name for feature in spec.features])
    model = load_model(paths.NETWORK)  # the splits are encoded already
    training = read_json(paths.TRAIN_REPORT)
    parts = partitions(paths.split_table("test"))
    whole = sum(part.rows for part in parts) <= EXACT_ROWS
    judge = judge_whole if whole else judge_streamed
    judged = judge(model, parts, spec=spec, settings=settings, seed=seed, training=training)
    gates = check_gates(judged.metrics, judged.baselines, settings.gates, judged.intervals)
    found = Findings(
        judged.metrics,
        judged.baselines,
        judged.intervals,
        judged.decision,
        judged.importance,
        judged.slices,
        gates,
        judged.rows,
    )
    tables = _write_results(found, judged)
    say("evaluate", headline_line(found, judged.threshold, task=spec.task, level=settings.interval))
    _write_report(found, training=training, tables=tables, drawn=judged.drawn, spec=spec)
    _check_verdict(found)


def judge_whole(model, parts, *, spec: EncodingSpec, settings, seed: int, training) -> Judged:
    """Everything evaluate reports, from the model's outputs on every test row held at
    once (metrics exactly as scikit-learn gives them); writes the predictions file."""
    test_rows, y_test, outputs, importance_rows = score_test_split(
        model, parts, spec, settings=settings, seed=seed
    )
    # The headline is what the model decides, at its own threshold; accuracy at 0.5 beside.
    metrics = scores_of(y_test, outputs.predicted, task=spec.task, labels=outputs.labels)
    predictions = read_predictions(  # fitted on the train split by the baselines stage
        paths.BASELINES_PREDICTIONS,
        names=settings.baselines,
        row_ids=test_rows[ROW_ID],
        n_classes=len(spec.classes),
    )
    scored = read_json(paths.BASELINES_METRICS)  # the baselines stage scored the same rows
    baselines = {name: scored[name] for name in predictions}
    samples = resampled_metrics(
        y_test, outputs, predictions, task=spec.task, settings=settings, seed=seed
    )
    intervals = bootstrap_intervals(
        samples, metrics, baselines, rows=len(y_test), settings=settings, seed=seed
    )
    importance = None
    if importance_rows is not None:
        importance = model_importance(
            model, *importance_rows, spec=spec, settings=settings, seed=seed
        )
    slices = slices_report(test_rows, y_test, outputs, spec=spec, settings=settings, seed=seed)
    table, tables = result_tables(test_rows, y_test, outputs, spec=spec)
    write_table(table, paths.EVALUATE_PREDICTIONS)
    decision, drawn = None, {"scatter": tables.get("predicted_vs_actual")}
    if spec.task == "classification":
        decision = whole_decision_report(y_test, outputs, training=training.get("calibration"))
        drawn = {
            "confusion": confusion_counts(y_test, outputs.labels, len(spec.classes)),
            "before": reliability(y_test, outputs.uncalibrated),
            "threshold": outputs.threshold,
        }
    return Judged(
        metrics,
        baselines,
        intervals,
        decision,
        importance,
        slices,
        len(y_test),
        outputs.threshold,
        tables,
        drawn,
    )


def score_test_split(model, parts, spec: EncodingSpec, *, settings, seed: int):
    """The model on the test split's partitions, one by one: (the rows' ids, targets and
    the columns `evaluate.slices` groups by; the targets; the model's outputs; the inputs
    and targets of the rows permutation importance uses, None without it: every row when
    there are at most `evaluate.importance_rows`, else that many drawn by the seed)."""
    total = sum(part.rows for part in parts)
    chosen = None
    if settings.importance_repeats and total > settings.importance_rows:
        chosen = drawn_rows(total, settings.importance_rows, seed=seed)
    vocabularies = model_vocabularies(model)
    keep = [ROW_ID, TARGET, *slice_columns(spec, settings.slices)]
    kept, targets, outputs, sample = [], [], [], []
    for part in parts:
        frame = part.read().reset_index(drop=True)
        x, y = to_arrays(frame, spec, vocabularies)
        outputs.append(model_outputs(model, x, task=spec.task))
        kept.append(frame[keep])
        targets.append(y)
        if chosen is None and settings.importance_repeats:
            sample.append(x)
        elif chosen is not None:
            sample.append(take_rows(x, rows_within(chosen, part.start, part.rows)))
    rows = pd.concat(kept, ignore_index=True)
    y_test = np.concatenate(targets)
    if not sample:
        return rows, y_test, concat_outputs(outputs), None
    y_sample = y_test if chosen is None else y_test[chosen]
    return rows, y_test, concat_outputs(outputs), (concat_inputs(sample), y_sample)


def _write_results(found: Findings, judged: Judged) -> dict:
    """metrics.json and the files beside it, the plots' data; returns the plots' tables."""
    write_json(summary_metrics(found, judged.threshold), paths.EVALUATE_METRICS)
    write_json(found.intervals, paths.EVALUATE_INTERVALS)
    write_json(found.slices, paths.EVALUATE_SLICES)
    write_json(found.decision or {}, paths.EVALUATE_DECISION)  # a regressor has neither
    tables = dict(judged.tables)
    if found.importance is not None:
        tables["importance"] = found.importance
    for name, frame in tables.items():
        write_csv(frame, f"{paths.EVALUATE_PLOTS}/{name}.csv")
    return tables


def _write_report(found: Findings, *, training, tables, drawn, spec) -> None:
    figures = write_figures(training=training, tables=tables, found=found, spec=spec, drawn=drawn)
    report = render_report(
        validation=read_json(paths.VALIDATE_REPORT),
        splits=read_json(paths.SPLIT_REPORT),
        training=training,
        found=found,
        figures=figures,
        fitted=read_json(paths.BASELINES_FIT),
    )
    with atomic_path(paths.REPORT, suffix=".md") as tmp:
        tmp.write_text(report, encoding="utf-8")


def _check_verdict(found: Findings) -> None:
    """Fail naming every missed gate; else write the verdict, with any warning."""
    gates = found.gates
    missed = [gate for gate in gates if not gate["passed"]]
    if missed:
        raise PipelineError(
            f"{len(missed)} of {len(gates)} gates missed (params: evaluate.gates)",
            [f"{gate['metric']} = {gate['value']}: needs {gate['gate']}" for gate in missed],
        )
    dominant = dominant_column(found.importance) if found.importance is not None else None
    if dominant is not None:
        say("evaluate", f"warning: {dominant.replace('`', chr(39))}")
    write_json(
        {"passed": True, "gates": gates, "warnings": [dominant] if dominant else []},
        paths.EVALUATE_VERDICT,
    )
    say("evaluate", f"{len(gates)} gate(s) passed -> {paths.EVALUATE_VERDICT}")
