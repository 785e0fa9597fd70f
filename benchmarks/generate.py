"""Adult-like synthetic rows for the benchmarks, in the shipped file's format.

Rows are drawn from the real Adult rows with replacement; age and fnlwgt are jittered so
that almost no row is an exact duplicate. The file has no header, `?` for missing values
and ", " between values, like data/adult.data, so collect reads it with the shipped params.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def generate(target: Path, rows: int, *, seed: int = 0, block: int = 1_000_000) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())["collect"]
    names = params["names"]
    source = pd.read_csv(
        REPO / "data/adult.data", header=None, names=names, skipinitialspace=True, na_values=["?"]
    )
    rng = np.random.default_rng(seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as out:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            chunk = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
            chunk["fnlwgt"] = (chunk["fnlwgt"] * rng.uniform(0.9, 1.1, n)).round().astype("int64")
            chunk["age"] = np.clip(chunk["age"] + rng.integers(-2, 3, n), 17, 90)
            chunk.to_csv(out, header=False, index=False, na_rep="?", sep=",")
    # The shipped file has ", " between values; collect's skip_initial_space reads both.
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=int)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    print(generate(args.target, args.rows))
