import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stages.cli import cli
from stages.common import paths

from .conftest import REPO, TINY_SCHEMA

STAGES = ["collect", "validate", "prepare", "split", "train", "evaluate"]

TINY_CSV = "age,hours,color,id,label\n" + "".join(
    f"{20 + i},{(i * 7) % 50}.5,{['red', 'green', 'blue'][i % 3]},r{i},{['no', 'yes'][i % 2]}\n"
    for i in range(60)
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """A folder with a tiny source, schema and params, as the current directory."""
    (tmp_path / "tiny.csv").write_text(TINY_CSV)
    (tmp_path / "schema.yaml").write_text(TINY_SCHEMA)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"].update(target="label", schema="schema.yaml")
    params["collect"] = {"source": "tiny.csv", "watch": "tiny.csv"}
    params["evaluate"]["slices"] = ["color"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_lists_the_six_stages_in_order_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from stages.cli import cli\n"
        "for args in [['--help'], *[[name, '--help'] for name in sys.argv[1:]]]:\n"
        "    try:\n"
        "        cli(args, prog_name='stages')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'jax'}))\n"
    )
    commands = [*STAGES, "predict", "export", "compare"]
    result = subprocess.run(
        [sys.executable, "-c", code, *commands],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert result.stdout.rstrip().endswith("[]"), result.stdout[-300:]
    listing = result.stdout.split("Commands:")[1]
    positions = [listing.index(f"  {name} ") for name in STAGES]
    assert positions == sorted(positions)
    assert "--learning-rate" in result.stdout and "train.learning_rate]" in result.stdout


def test_python_dash_m_stages_runs():
    result = subprocess.run(
        [sys.executable, "-m", "stages", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0
    assert "collect" in result.stdout and "evaluate" in result.stdout


def test_data_stages_run_by_hand_with_overrides(workdir: Path):
    result = invoke("collect", "--max-rows", "40")
    assert result.exit_code == 0, result.output
    assert "collect: 40 rows x 5 columns" in result.output
    assert json.loads(Path(paths.COLLECT_REPORT).read_text())["rows"] == 40
    for stage in ("validate", "prepare"):
        result = invoke(stage)
        assert result.exit_code == 0, result.output
    result = invoke("split", "--validation", "0.25", "--test", "0.25", "--seed", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(Path(paths.SPLIT_REPORT).read_text())
    assert {name: part["rows"] for name, part in report.items()} == {
        "train": 20,
        "validation": 10,
        "test": 10,
    }


def test_missing_source_exits_1_with_a_message_and_writes_nothing(workdir: Path):
    result = invoke("collect", "--source", "absent.csv")
    assert result.exit_code == 1
    assert result.output.startswith("error: absent.csv: file not found")
    assert "Traceback" not in result.output
    assert not Path(paths.RAW_TABLE).exists()


def test_bad_override_names_the_key(workdir: Path):
    result = invoke("train", "--epochs", "ten")
    assert result.exit_code == 1
    assert "train.epochs: Input should be a valid integer" in result.output
    result = invoke("train", "--hidden-units", "16,0")
    assert result.exit_code == 1
    assert "every hidden layer needs at least one unit" in result.output


def test_invalid_rows_fail_validate_with_a_full_report_and_no_table(workdir: Path):
    Path("tiny.csv").write_text(TINY_CSV.replace(",red,", ",purple,").replace("25,", "250,", 1))
    assert invoke("collect").exit_code == 0
    result = invoke("validate")
    assert result.exit_code == 1
    assert "rows failed the schema schema.yaml" in result.output
    assert "column 'color', check isin(['red', 'green', 'blue']): 20 failures" in result.output
    assert "column 'age', check in_range(0, 120): 1 failures" in result.output
    assert not Path(paths.VALIDATED_TABLE).exists()
    report = json.loads(Path(paths.VALIDATE_REPORT).read_text())
    assert report["valid"] is False and report["invalid_rows"] == 21
    assert len(Path(paths.VALIDATE_FAILURES).read_text().splitlines()) == 1 + 21


def test_a_stage_without_its_input_says_which_stage_to_run(workdir: Path):
    result = invoke("validate")
    assert result.exit_code == 1
    assert "data/raw/table.parquet: not found; run the stage that writes it first" in result.output


def test_a_damaged_model_is_a_clear_error(workdir: Path):
    for stage in ("collect", "validate", "prepare", "split"):
        assert invoke(stage).exit_code == 0
    Path(paths.NETWORK).parent.mkdir(parents=True)
    Path(paths.NETWORK).write_bytes(b"not a zip archive")
    result = invoke("evaluate")
    assert result.exit_code == 1
    assert result.output.startswith("error: models/network.keras: cannot load the model")
    assert not Path(paths.EVALUATE_METRICS).exists()


def test_a_missed_gate_fails_evaluate_and_a_met_one_writes_the_verdict(workdir: Path):
    for stage in ("collect", "validate", "prepare", "split", "baselines"):
        assert invoke(stage).exit_code == 0
    assert invoke("train", "--epochs", "2", "--hidden-units", "8").exit_code == 0
    missed = invoke("evaluate", "--gates", "{minimum: {accuracy: 0.999}}")
    assert missed.exit_code == 1
    assert "error: 1 of 1 gates missed (params: evaluate.gates)" in missed.output
    assert "  accuracy = " in missed.output and ": needs >= 0.999" in missed.output
    assert not Path(paths.EVALUATE_VERDICT).exists()
    met = invoke("evaluate", "--gates", "{minimum: {accuracy: 0.0}}")
    assert met.exit_code == 0, met.output
    verdict = json.loads(Path(paths.EVALUATE_VERDICT).read_text())
    assert verdict["passed"] is True and verdict["gates"][0]["gate"] == ">= 0.0"


def test_quarantine_moves_invalid_rows_aside_with_their_reason(workdir: Path):
    import pandas as pd

    Path("tiny.csv").write_text(TINY_CSV.replace("25,", "250,", 1).replace("r7,", "r7,", 1))
    assert invoke("collect").exit_code == 0
    result = invoke("validate", "--on-invalid", "quarantine")
    assert result.exit_code == 0, result.output
    assert "59 rows valid, 1 quarantined" in result.output
    quarantine = pd.read_parquet(paths.QUARANTINE_TABLE)
    assert quarantine["row_id"].tolist() == [5]
    assert quarantine["reason"].tolist() == ["age: '250' fails in_range(0, 120)"]
    validated = pd.read_parquet(paths.VALIDATED_TABLE)
    assert len(validated) == 59 and 5 not in set(validated["row_id"])
    metrics = json.loads(Path(paths.VALIDATE_METRICS).read_text())
    assert metrics["quarantined_rows"] == 1
    assert metrics["failures"] == {"age:in_range(0, 120)": 1}


def test_quarantine_beyond_the_allowed_fraction_fails(workdir: Path):
    Path("tiny.csv").write_text(TINY_CSV.replace(",red,", ",purple,"))  # a third of the rows
    assert invoke("collect").exit_code == 0
    result = invoke("validate", "--on-invalid", "quarantine", "--max-invalid-fraction", "0.1")
    assert result.exit_code == 1
    assert "33.33% of rows are invalid, more than validate.max_invalid_fraction (10.00%)" in (
        result.output
    )
    assert not Path(paths.VALIDATED_TABLE).exists()
    assert not Path(paths.QUARANTINE_TABLE).exists()


def test_unexpected_columns_fail_or_are_dropped_by_policy(workdir: Path):
    Path("tiny.csv").write_text(
        "\n".join(f"{line},{i}" for i, line in enumerate(TINY_CSV.splitlines())).replace(
            ",0\n", ",extra\n", 1
        )
        + "\n"
    )
    assert invoke("collect").exit_code == 0
    failed = invoke("validate")
    assert failed.exit_code == 1
    assert "the table failed the schema schema.yaml" in failed.output
    assert "column '<table>', check column_in_schema: 1 failures (e.g. 'extra')" in failed.output
    dropped = invoke("validate", "--unexpected-columns", "drop")
    assert dropped.exit_code == 0, dropped.output
    assert "unexpected columns dropped: extra" in dropped.output


def test_a_stage_module_loads_with_the_collector_paused_and_leaves_it_running():
    import gc

    from stages.cli import stage_module

    sys.modules.pop("stages.tools.compare", None)
    frozen = gc.get_freeze_count()
    seen = []
    gc.callbacks.append(lambda phase, info: seen.append(phase))
    try:
        module = stage_module("tools.compare")
        with pytest.raises(ModuleNotFoundError):
            stage_module("no_such_stage")
    finally:
        gc.callbacks.pop()
    assert module.__name__ == "stages.tools.compare"
    assert seen == []  # no collection ran while they loaded
    assert gc.isenabled()
    assert gc.get_freeze_count() > frozen
