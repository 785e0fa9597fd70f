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

from stages.data.encoding import EncodingSpec, value_column

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
        if feature.kind in ("numeric", "datetime"):
            for name in feature.numeric_parts():
                yield name, feature.name, "number", feature.indicator
        else:
            yield value_column(feature.name), feature.name, feature.kind, None


def _absent(encoded: pd.DataFrame, name: str, kind: str, indicator: str | None) -> np.ndarray:
    """Rows where the encoded column is missing: its indicator for a number, no text for an
    embedded category, code -1 for a listed category (missing, or unseen at prediction)."""
    values = encoded[name]
    if kind == "number":
        if indicator is not None and indicator in encoded.columns:
            return encoded[indicator].to_numpy() == 1
        return np.zeros(len(encoded), dtype=bool)
    if kind == "embedded":
        return values.isna().to_numpy()
    return values.to_numpy() < 0


def _present_labels(values: pd.Series, kind: str) -> pd.Series:
    """Present category values as the text the profile keys its shares by."""
    return (values.astype(int) if kind == "categorical" else values).astype(str)


def train_profile(train: pd.DataFrame, spec: EncodingSpec) -> dict[str, Any]:
    """The profile of the train split's encoded rows."""
    columns = {}
    for name, source, kind, indicator in _columns(spec):
        absent = _absent(train, name, kind, indicator)
        entry: dict[str, Any] = {
            "source": source,
            "kind": kind,
            "indicator": indicator,
            "missing": float(absent.mean()),
        }
        present = train[name][~absent]
        if kind == "number":
            numbers = present.to_numpy(dtype="float64")
            edges = np.unique(np.quantile(numbers, QUANTILES)) if numbers.size else np.array([])
            entry["edges"] = edges.tolist()
            counts = _number_bins(numbers, entry["edges"])
            entry["shares"] = (counts / max(counts.sum(), 1)).tolist()
        else:
            shares = _present_labels(present, kind).value_counts(normalize=True)
            top = shares.iloc[:TOP_CATEGORIES]
            entry["shares"] = {**top.round(6).to_dict(), OTHER: round(float(1 - top.sum()), 6)}
        columns[name] = entry
    return {"rows": len(train), "columns": columns}


def _number_bins(numbers: np.ndarray, edges: list[float]) -> np.ndarray:
    """Rows per bin between the train deciles `edges` (below the first, ..., above the last)."""
    return np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1)


def _category_bins(labels: pd.Series, shares: dict[str, float]) -> np.ndarray:
    """Rows per category of the profile; a value it does not list counts as the last, other."""
    names = list(shares)
    positions = pd.Index(names[:-1]).get_indexer(labels)
    return np.bincount(np.where(positions < 0, len(names) - 1, positions), minlength=len(names))


def _code_bins(codes: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """`_category_bins` for a listed category's codes (0 and up), without turning every code
    into text: the profile keys its shares by the code as text."""
    names = list(shares)
    other = len(names) - 1
    codes = codes.astype("int64")
    lookup = np.full(int(codes.max(initial=0)) + 1, other)
    for position, name in enumerate(names[:-1]):
        if int(name) < lookup.size:
            lookup[int(name)] = position
    return np.bincount(lookup[codes], minlength=len(names))


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
            kind = entry["kind"]
            absent = _absent(encoded, name, kind, entry["indicator"])
            present = encoded[name][~absent]
            if kind == "number":
                bins = _number_bins(present.to_numpy(dtype="float64"), entry["edges"])
            elif kind == "categorical":
                bins = _code_bins(present.to_numpy(), entry["shares"])
            else:
                bins = _category_bins(_present_labels(present, kind), entry["shares"])
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


class RollingDrift:
    """The drift of the latest rows, about `window` of them: rows are counted into
    `buckets` blocks of window / buckets rows; a full block joins the window and the
    oldest leaves it, so memory stays the same however many rows pass."""

    def __init__(self, profile: dict[str, Any], *, window: int, buckets: int = 10) -> None:
        self.profile = profile
        self.block_rows = max(1, window // buckets)
        self.buckets = buckets
        self.full: list[tuple[DriftCounter, dict[str, int]]] = []
        self.current = DriftCounter(profile)
        self.unseen: dict[str, int] = {}

    def add(self, encoded: pd.DataFrame, unseen: dict[str, int]) -> bool:
        """Count a batch's valid encoded rows and its unseen values per column. True when
        this closed a block (the moment to look at the summary again)."""
        self.current.add(encoded)
        for name, count in unseen.items():
            self.unseen[name] = self.unseen.get(name, 0) + count
        if self.current.rows < self.block_rows:
            return False
        self.full = [*self.full[-(self.buckets - 1) :], (self.current, self.unseen)]
        self.current, self.unseen = DriftCounter(self.profile), {}
        return True

    def summary(self, *, threshold: float) -> dict[str, Any]:
        """`DriftCounter.summary` over the rows in the window and the open block."""
        total = DriftCounter(self.profile)
        unseen: dict[str, int] = {}
        for counter, seen in [*self.full, (self.current, self.unseen)]:
            total.rows += counter.rows
            for name, counts in counter.counts.items():
                total.counts[name] = total.counts.get(name, 0) + counts
                total.missing[name] = total.missing.get(name, 0) + counter.missing[name]
            for name, count in seen.items():
                unseen[name] = unseen.get(name, 0) + count
        return total.summary(threshold=threshold, unseen=unseen)
