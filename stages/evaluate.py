"""evaluate: judge the trained model on the unseen test split, against baselines and gates.

Reads models/network.keras (on Keras's numpy backend: no TensorFlow start),
data/split/test.parquet, data/prepared/encoding.json, the baselines' test predictions
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

from stages.common import paths
from stages.common.config import (
    Params,
)
from stages.common.errors import PipelineError
from stages.common.io import (
    atomic_path,
    read_json,
    read_table,
    say,
    write_csv,
    write_json,
    write_table,
)
from stages.common.tasks import HEADLINE, SECOND, check_evaluate_params, metric_label
from stages.data.encoding import ROW_ID, EncodingSpec, to_arrays
from stages.evaluation.baselines import read_predictions, scores_of
from stages.evaluation.figures import plot_tables, write_figures
from stages.evaluation.importance import permutation_importance
from stages.evaluation.metrics import bootstrap
from stages.evaluation.report import (
    Findings,
    dominant_column,
    render_report,
)
from stages.evaluation.scoring import (
    check_gates,
    decision_report,
    metric_intervals,
    model_outputs,
    prediction_table,
    regression_table,
    slices_report,
)
from stages.model.build import model_vocabularies
from stages.model.files import load_model
from stages.model.inference import class_probabilities, predict_values


def run(params: Params) -> None:
    """The evaluate command: score model and baselines on the test split, with intervals,
    calibration, importance and slices; write the report; check the gates."""
    spec = EncodingSpec.load(paths.ENCODING_SPEC)
    settings = params.evaluate
    check_evaluate_params(spec.task, settings, [feature.name for feature in spec.features])
    task, seed = spec.task, params.dataset.seed
    regression = task == "regression"
    test_rows = read_table(paths.split_table("test"))
    model = load_model(paths.NETWORK)  # the splits are encoded already
    vocabularies = model_vocabularies(model)
    x_test, y_test = to_arrays(test_rows, spec, vocabularies)
    outputs = model_outputs(model, x_test, task=task)
    # The headline is what the model decides, at its own threshold; accuracy at 0.5 beside.
    metrics = scores_of(y_test, outputs.predicted, task=task, labels=outputs.labels)
    predictions = read_predictions(  # fitted on the train split by the baselines stage
        paths.BASELINES_PREDICTIONS,
        names=settings.baselines,
        row_ids=test_rows[ROW_ID],
        n_classes=len(spec.classes),
    )
    scored = read_json(paths.BASELINES_METRICS)  # the baselines stage scored the same rows
    baselines = {name: scored[name] for name in predictions}
    samples = bootstrap(
        y_test,
        {
            "model": (outputs.predicted, outputs.labels),
            **{name: (values, None) for name, values in predictions.items()},
        },
        task=task,
        resamples=settings.resamples,
        seed=seed,
        max_rows=settings.interval_rows,
    )
    intervals = metric_intervals(
        samples,
        {"model": metrics, **baselines},
        level=settings.interval,
        resamples=settings.resamples,
        seed=seed,
    )
    intervals["resampled_rows"] = min(len(y_test), settings.interval_rows)
    training = read_json(paths.TRAIN_REPORT)
    decision = (
        None
        if regression
        else decision_report(y_test, outputs, training=training.get("calibration"))
    )
    importance = None
    if settings.importance_repeats:
        importance = permutation_importance(
            (lambda inputs: predict_values(model, inputs))
            if regression
            else (lambda inputs: class_probabilities(model, inputs)[0]),
            x_test,
            y_test,
            spec=spec,
            repeats=settings.importance_repeats,
            max_rows=settings.importance_rows,
            seed=seed,
        )
    slices = slices_report(test_rows, y_test, outputs, spec=spec, settings=settings, seed=seed)

    summary = {**metrics, "test_rows": len(y_test)}
    at_half = None
    if outputs.threshold is not None:
        summary["threshold"] = round(outputs.threshold, 6)
        at_half = decision["threshold"]["test_at_0.5"]["accuracy"]
        summary["accuracy_at_0.5"] = at_half
    write_json(summary, paths.EVALUATE_METRICS)
    write_json(intervals, paths.EVALUATE_INTERVALS)
    write_json(slices, paths.EVALUATE_SLICES)
    write_json(decision or {}, paths.EVALUATE_DECISION)  # a regressor has neither
    if regression:
        table = regression_table(test_rows[ROW_ID], y_test, outputs.predicted)
        tables = {"predicted_vs_actual": table[["actual", "predicted"]]}
    else:
        table = prediction_table(
            test_rows[ROW_ID],
            y_test,
            outputs.predicted,
            classes=spec.classes,
            labels=outputs.labels,
        )
        tables = plot_tables(y_test, outputs.predicted, classes=spec.classes, labels=outputs.labels)
    if importance is not None:
        tables["importance"] = importance
    for name, frame in tables.items():
        write_csv(frame, f"{paths.EVALUATE_PLOTS}/{name}.csv")
    write_table(table, paths.EVALUATE_PREDICTIONS)
    headline, second = HEADLINE[spec.task], SECOND[spec.task]
    low, high = intervals["model"][headline]
    against = ", ".join(f"{name} {scores[headline]:.4f}" for name, scores in baselines.items())
    decided = ""
    if outputs.threshold is not None:
        decided = f" at the model's threshold {outputs.threshold:.3f}"
        if outputs.threshold != 0.5:
            decided += f" (at 0.5: {at_half:.4f})"
    say(
        "evaluate",
        f"{len(y_test):,} test rows: {metric_label(headline)} {metrics[headline]:.4f}{decided} "
        f"({settings.interval:.0%} interval {low:.4f} to {high:.4f}), {metric_label(second)} "
        f"{metrics[second]:.4f} (baselines' {metric_label(headline)}: {against or 'none'}) -> "
        f"{paths.EVALUATE_METRICS}",
    )
    gates = check_gates(metrics, baselines, settings.gates, intervals)
    found = Findings(
        metrics, baselines, intervals, decision, importance, slices, gates, len(y_test)
    )
    figures = write_figures(
        training=training, tables=tables, outputs=outputs, y_true=y_test, found=found, spec=spec
    )
    report = render_report(
        validation=read_json(paths.VALIDATE_REPORT),
        splits=read_json(paths.SPLIT_REPORT),
        training=training,
        found=found,
        figures=figures,
    )
    with atomic_path(paths.REPORT, suffix=".md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    missed = [gate for gate in gates if not gate["passed"]]
    if missed:
        raise PipelineError(
            f"{len(missed)} of {len(gates)} gates missed (params: evaluate.gates)",
            [f"{gate['metric']} = {gate['value']}: needs {gate['gate']}" for gate in missed],
        )
    dominant = dominant_column(importance) if importance is not None else None
    if dominant is not None:
        say("evaluate", f"warning: {dominant.replace('`', chr(39))}")
    write_json(
        {"passed": True, "gates": gates, "warnings": [dominant] if dominant else []},
        paths.EVALUATE_VERDICT,
    )
    say("evaluate", f"{len(gates)} gate(s) passed -> {paths.EVALUATE_VERDICT}")
