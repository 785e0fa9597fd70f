"""MkDocs hooks: the reference pages and benchmark tables are written from the code and
the result files at build time, so they cannot disagree with them.

A page holds a marker such as `<!-- generated: params -->`; the hook replaces it.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import yaml
from pydantic_core import to_jsonable_python

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) if origin is None else None
    return text or str(annotation).replace("typing.", "").replace("|", "\\|")


def _constraints(field) -> str:
    marks = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    found = []
    for item in field.metadata:
        for name, sign in marks.items():
            value = getattr(item, name, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def _readers(section: str, key: str) -> str:
    from stages.cli import COMMAND_PARAMS, TOOL_PARAMS

    top = key.split(".")[0]
    names = [
        command
        for command, sections in {**COMMAND_PARAMS, **TOOL_PARAMS}.items()
        if section in sections and (sections[section] is None or top in sections[section])
    ]
    return ", ".join(names) or "infer-schema"


def _shipped(raw: dict, key: str):
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return None
        raw = raw[part]
    return raw


def params_reference() -> str:
    """Every params key: type, constraint, default, the value params.yaml ships, the
    commands that read it, and its meaning, from the params classes."""
    from stages.common.config import SECTIONS, leaf_fields

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = []
    for section, model in SECTIONS.items():
        out += [f"## `{section}`", "", (model.__doc__ or "").strip(), ""]
        out += ["| key | type | constraint | default | shipped | read by | meaning |"]
        out += ["|---|---|---|---|---|---|---|"]
        for full, field in leaf_fields(model, section + "."):
            key = full.split(".", 1)[1]
            if field.is_required():
                default = "required"
            else:
                default = field.get_default(call_default_factory=True)
                default = f"`{json.dumps(to_jsonable_python(default, exclude_none=True))}`"
            per_table = (field.json_schema_extra or {}).get("per_table")
            value = f"`{json.dumps(_shipped(shipped, full))}`"
            value += " (this table)" if per_table else ""
            cells = [
                f"`{full}`",
                _type_name(field.annotation),
                _constraints(field),
                default,
                value,
                _readers(section, key),
                (field.description or "").replace("|", "\\|").replace("\n", " "),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def outputs_reference() -> str:
    """Every stage's inputs and outputs, from dvc.yaml."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = ["| stage | reads | writes | kept in git |", "|---|---|---|---|"]
    for name, stage in stages.items():
        reads = [d for d in stage["deps"] if not d.startswith("stages/")]
        writes, in_git = [], []
        for kind in ("outs", "metrics"):
            for item in stage.get(kind, []):
                path = next(iter(item)) if isinstance(item, dict) else item
                writes.append(path)
                if isinstance(item, dict) and item[path].get("cache") is False:
                    in_git.append(path)
        cell = lambda paths: "<br>".join(f"`{p}`" for p in paths)  # noqa: E731
        out.append(f"| {name} | {cell(reads)} | {cell(writes)} | {cell(in_git)} |")
    return "\n".join(out)


def corpus_table() -> str:
    rows = json.loads((ROOT / "benchmarks/corpus.json").read_text())
    out = [
        "| table | its mess | rows | score | network | gradient boosting | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        network = row.get("network")
        gbm = row.get("gbm")
        out.append(
            f"| {row['table']} | {row['mess']} | {row['rows']:,} | {row['score']} | "
            f"{network if network is None else f'{network:.4f}'} | "
            f"{gbm if gbm is None else f'{gbm:.4f}'} | {row['seconds']} |"
        )
    return "\n".join(out)


def quality_table() -> str:
    quality = json.loads((ROOT / "benchmarks/quality.json").read_text())
    overall = quality["overall"]
    out = [
        f"Seeds {', '.join(map(str, overall['seeds']))}; mean gap {overall['mean_gap']:+.4f}, "
        f"worst {overall['worst_gap']:+.4f} ({overall['worst_table']}).",
        "",
        "| table | score | network (mean ± sd) | gradient boosting | gap |",
        "|---|---|---|---|---|",
    ]
    for row in quality["tables"]:
        out.append(
            f"| {row['table']} | {row['score']} | {row['network']:.4f} ± {row['network_std']:.4f} "
            f"| {row['gbm']:.4f} ± {row['gbm_std']:.4f} | {row['gap']:+.4f} |"
        )
    return "\n".join(out)


def serve_table() -> str:
    """benchmarks/serve.json: latencies, throughput and memory of `stages serve`."""
    serve = json.loads((ROOT / "benchmarks/serve.json").read_text())
    out = ["| measure | server processes | value |", "|---|---|---|"]
    for part in serve["single_row"]:
        out.append(
            f"| one-row requests, {part['clients']} concurrent client(s) | {part['workers']} | "
            f"p50 {part['p50_ms']} ms, p99 {part['p99_ms']} ms ({part['requests']:,} requests) |"
        )
    for part in serve["rows_per_second_1000_row_requests"]:
        out.append(
            f"| 1,000-row requests, {part['clients']} concurrent client(s) | {part['workers']} | "
            f"{part['rows_per_second']:,} rows/s ({part['server_cpu_ms_per_1000_rows']} ms of "
            "server CPU per 1,000 rows) |"
        )
    memory = serve["resident_mb"]
    after = [key for key in memory if key.startswith("after_") and key != "after_100_requests"]
    out.append(
        f"| resident memory after 100 and {after[0].split('_')[1]} requests | 1 | "
        f"{memory['after_100_requests']} MB, {memory[after[0]]} MB "
        f"({memory['growth']:+.2%}) |"
    )
    out.append(f"\n{serve['machine']}.")
    return "\n".join(out)


def tune_table() -> str:
    """benchmarks/tune.json: the default and tuned network and boosting on the test split."""
    path = ROOT / "benchmarks/tune.json"
    if not path.exists():
        return "No run recorded yet (benchmarks/tune.json)."
    tune = json.loads(path.read_text())
    seeds = sorted({row["seed"] for row in tune["results"]})
    rows = f"at most {tune['max_rows']:,} rows per table" if tune["max_rows"] else "full tables"
    out = [
        f"This run: {tune['trials']} trials, seed(s) {', '.join(map(str, seeds))}, {rows}.",
        "",
        "| table | seed | score | network | tuned network | boosting | tuned boosting | tuning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in tune["results"]:
        out.append(
            f"| {row['table']} | {row['seed']} | {row['score']} | {row['network_default']:.4f} "
            f"| {row['network_tuned']:.4f} | {row['gbm_default']:.4f} | {row['gbm_tuned']:.4f} "
            f"| {row['tune_seconds']:,.0f} s |"
        )
    mean = tune["mean"]
    out.append(
        f"| mean | | | {mean['network_default']:.4f} | {mean['network_tuned']:.4f} "
        f"| {mean['gbm_default']:.4f} | {mean['gbm_tuned']:.4f} | |"
    )
    runs = tune.get("pruning_runs") or ([tune["pruning"]] if tune["pruning"] else [])
    for pruning in runs:
        pruned, unpruned = pruning["pruned"], pruning["unpruned"]
        out += [
            "",
            f"Pruning ({pruning['table']}, seed {pruning['seed']}): {pruned['seconds']:,.0f} s "
            f"with it, {unpruned['seconds']:,.0f} s without; best validation score "
            f"{pruned['validation']:.4f} against {unpruned['validation']:.4f}.",
        ]
    if tune.get("note"):
        out += ["", tune["note"]]
    return "\n".join(out)


def scale_table() -> str:
    """benchmarks/scale.json: every stage's seconds and peak memory per row count and engine."""
    path = ROOT / "benchmarks/scale.json"
    if not path.exists():
        return "No run recorded yet (benchmarks/scale.json)."
    scale = json.loads(path.read_text())
    runs = scale["data_stages"]
    names = [f"{run['rows'] / 1e6:g}M rows, {run.get('engine', 'embedded')}" for run in runs]
    embedded = sorted(
        (run for run in runs if run.get("engine", "embedded") == "embedded"),
        key=lambda run: run["rows"],
    )
    growth = embedded[-1]["rows"] > embedded[0]["rows"] if embedded else False
    if growth:  # how far each stage's peak grew from the fewest rows to the most
        small, large = embedded[0], embedded[-1]
        names.append(f"peak at {large['rows'] / 1e6:g}M / at {small['rows'] / 1e6:g}M")
    out = ["| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    stages = list(runs[0]["stages"])
    for stage in stages:
        cells = []
        if growth:
            ratio = large["stages"][stage]["peak_mb"] / small["stages"][stage]["peak_mb"] - 1
            cells_after = [f"{ratio:+.0%}"]
        else:
            cells_after = []
        for run in runs:
            r = run["stages"].get(stage)
            if r is None:
                cells.append("")
                continue
            cell = f"{r['seconds']:,.1f} s, {r['peak_mb'] / 1000:.2f} GB"
            if "workers_peak_mb" in r:
                cell += f" (workers {r['workers_peak_mb'] / 1000:.2f} GB)"
            cells.append(cell)
        shown = "train (1 epoch)" if stage == "train" else stage
        out.append(f"| {shown} | " + " | ".join(cells + cells_after) + " |")
    ends = [
        f"{run['end_to_end_s']:,.1f} s, peak {run['end_to_end_peak_mb'] / 1000:.2f} GB"
        for run in runs
    ]
    out.append("| end to end | " + " | ".join(ends + ([""] if growth else [])) + " |")
    out.append(f"\n{scale['machine']}.")
    if scale.get("note"):
        out += ["", scale["note"]]
    return "\n".join(out)


GENERATORS = {
    "scale": scale_table,
    "tune": tune_table,
    "serve": serve_table,
    "params": params_reference,
    "outputs": outputs_reference,
    "corpus": corpus_table,
    "quality": quality_table,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for name, render in GENERATORS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
