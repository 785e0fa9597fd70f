"""compare: fail when a metric regressed against a git revision by more than a tolerance.

`dvc metrics diff` shows differences but always exits 0, so it cannot guard a CI job.
This reads the metrics file at a revision through DVC (from git, or from DVC's cache for a
DVC-tracked file) and the one in the workspace, and exits non-zero on a regression.
"""

from __future__ import annotations

from typing import Any

from stages.common.errors import PipelineError
from stages.common.io import read_json
from stages.common.tasks import LOWER_IS_BETTER


def _lookup(metrics: dict[str, Any], key: str, where: str) -> float:
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise PipelineError(f"metric '{key}' is not in the metrics {where}")
        value = value[part]
    if not isinstance(value, int | float):
        raise PipelineError(f"metric '{key}' {where} is not a number: {value!r}")
    return float(value)


def compare_metrics(
    base: dict[str, Any], current: dict[str, Any], *, names: list[str], tolerance: float
) -> list[dict[str, Any]]:
    """One row per metric: base and current values, the change, and whether it regressed.

    A metric regresses when it got worse by more than `tolerance` (lower log loss,
    calibration error, MAE and RMSE are better; higher is better for the rest). Nested
    metrics are named with dots: `logistic.accuracy` in reports/baselines/metrics.json.
    """
    rows = []
    for name in names:
        before = _lookup(base, name, "at the base revision")
        after = _lookup(current, name, "in the workspace")
        worse_by = after - before if name.split(".")[-1] in LOWER_IS_BETTER else before - after
        rows.append(
            {
                "metric": name,
                "base": before,
                "current": after,
                "change": round(after - before, 6),
                "regressed": worse_by > tolerance,
            }
        )
    return rows


def metrics_at_revision(target: str, rev: str) -> dict[str, Any]:
    """The metrics file `target` as it was at git revision `rev`."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        found = dvc.api.metrics_show(target, rev=rev)
    except FileNotFoundError:
        raise PipelineError(f"{target}: no such metrics file at revision '{rev}'") from None
    except DvcException as exc:
        raise PipelineError(
            f"cannot read {target} at revision '{rev}': {exc}",
            ["if that revision's outputs are on a DVC remote, run `dvc pull` for it first"],
        ) from None
    if not found:
        raise PipelineError(f"{target} has no metrics at revision '{rev}'")
    return found


def run(*, rev: str, metrics: list[str], tolerance: float, target: str) -> None:
    import click

    rows = compare_metrics(
        metrics_at_revision(target, rev), read_json(target), names=metrics, tolerance=tolerance
    )
    for row in rows:
        status = "REGRESSED" if row["regressed"] else "ok"
        click.echo(
            f"{row['metric']}: {row['base']:.6g} at {rev} -> {row['current']:.6g} now "
            f"({row['change']:+.6g}) {status}"
        )
    regressed = [row["metric"] for row in rows if row["regressed"]]
    if regressed:
        raise PipelineError(
            f"{', '.join(regressed)} regressed against {rev} by more than {tolerance}"
        )
