"""Drift: how far new rows have moved from the train split, column by column.

train writes a profile of the train split (models/profile.json): per encoded column, the
train rows' decile edges and the share of rows in each (numbers and date parts), or the
share of each category (the 50 most frequent, the rest pooled), and the share missing.
`stages predict` counts its rows into the same bins and writes, beside its output, the
population stability index (PSI) of every column, its share of missing and of unseen
values, and which columns drifted past `predict.drift_threshold`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.encoding import EncodingSpec, missing_column, value_column

TOP_CATEGORIES = 50
QUANTILES = np.linspace(0, 1, 11)[1:-1]
OTHER = "<other>"
FLOOR = 1e-4  # share given to an empty bin, so the PSI stays finite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins."""
    expected = np.maximum(np.asarray(expected, dtype="float64"), FLOOR)
    actual = np.maximum(np.asarray(actual, dtype="float64"), FLOOR)
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _columns(spec: EncodingSpec):
    """(encoded column, raw column, kind, missing indicator or None) of every feature."""
    for feature in spec.features:
        indicator = missing_column(feature.name) if feature.nullable else None
        if feature.kind in ("numeric", "datetime"):
            for name in feature.numeric_parts():
                yield name, feature.name, "number", indicator
        else:
            yield value_column(feature.name), feature.name, feature.kind, None


def train_profile(train: pd.DataFrame, spec: EncodingSpec) -> dict[str, Any]:
    """The profile of the train split's encoded rows."""
    columns = {}
    for name, source, kind, indicator in _columns(spec):
        values = train[name]
        absent = (
            train[indicator].to_numpy() == 1
            if indicator
            else (values.isna().to_numpy() if kind == "embedded" else np.zeros(len(train), bool))
        )
        entry: dict[str, Any] = {"source": source, "kind": kind, "missing": float(absent.mean())}
        present = values[~absent]
        if kind == "number":
            numbers = present.to_numpy(dtype="float64")
            edges = np.unique(np.quantile(numbers, QUANTILES)) if numbers.size else np.array([])
            counts = np.bincount(
                np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1
            )
            entry.update(edges=edges.tolist(), shares=(counts / max(counts.sum(), 1)).tolist())
        else:
            if kind == "categorical":
                present = present[present >= 0].astype(int)
            shares = present.astype(str).value_counts(normalize=True)
            top = shares.iloc[:TOP_CATEGORIES]
            entry["shares"] = {**top.round(6).to_dict(), OTHER: round(float(1 - top.sum()), 6)}
        columns[name] = entry
    return {"rows": len(train), "columns": columns}


class DriftCounter:
    """Counts rows into the bins of a train profile, batch by batch."""

    def __init__(self, profile: dict[str, Any]) -> None:
        self.profile = profile
        self.rows = 0
        self.counts: dict[str, np.ndarray] = {}
        self.missing: dict[str, int] = {}

    def add(self, encoded: pd.DataFrame) -> None:
        """Count the encoded rows of one batch (prepare's layout, valid rows only)."""
        self.rows += len(encoded)
        for name, entry in self.profile["columns"].items():
            if name not in encoded.columns:
                continue
            values = encoded[name]
            indicator = missing_column(entry["source"])
            if entry["kind"] == "number":
                absent = (
                    encoded[indicator].to_numpy() == 1
                    if indicator in encoded.columns
                    else np.zeros(len(encoded), bool)
                )
                numbers = values.to_numpy(dtype="float64")[~absent]
                edges = np.asarray(entry["edges"])
                bins = np.bincount(
                    np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1
                )
            else:
                absent = (
                    values.isna().to_numpy()
                    if entry["kind"] == "embedded"
                    else (values.to_numpy() < 0)
                )
                present = values[~absent]
                if entry["kind"] == "categorical":
                    present = present.astype(int)
                labels = list(entry["shares"])
                known = pd.Index(labels[:-1])
                positions = known.get_indexer(present.astype(str))
                positions = np.where(positions < 0, len(labels) - 1, positions)
                bins = np.bincount(positions, minlength=len(labels))
            self.counts[name] = self.counts.get(name, 0) + bins
            self.missing[name] = self.missing.get(name, 0) + int(absent.sum())

    def summary(self, *, threshold: float, unseen: dict[str, int] | None = None) -> dict[str, Any]:
        """Per raw column: the largest PSI of its encoded columns, the share missing (train
        and batch) and, given `unseen` (values outside the model's vocabulary, per raw
        column), the share unseen; and the columns past `threshold`."""
        per_column: dict[str, dict[str, Any]] = {}
        for name, entry in self.profile["columns"].items():
            if name not in self.counts or not self.rows:
                continue
            expected = entry["shares"]
            expected = list(expected.values()) if isinstance(expected, dict) else expected
            value = psi(expected, self.counts[name]) if self.counts[name].sum() else 0.0
            source = per_column.setdefault(
                entry["source"],
                {
                    "psi": 0.0,
                    "missing_train": round(entry["missing"], 6),
                    "missing_batch": round(self.missing[name] / self.rows, 6),
                },
            )
            source["psi"] = round(max(source["psi"], value), 6)
        kinds = {entry["source"]: entry["kind"] for entry in self.profile["columns"].values()}
        for source, count in (unseen or {}).items():
            if source in per_column and self.rows:
                share = count / self.rows
                per_column[source]["unseen_batch"] = round(share, 6)
                if kinds[source] == "categorical":  # an unseen category also encodes as -1
                    missing = per_column[source]["missing_batch"] - share
                    per_column[source]["missing_batch"] = round(max(missing, 0.0), 6)
        drifted = sorted(name for name, item in per_column.items() if item["psi"] > threshold)
        return {
            "rows": self.rows,
            "train_rows": self.profile["rows"],
            "threshold": threshold,
            "drifted": drifted,
            "columns": per_column,
        }
