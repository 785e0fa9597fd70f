import numpy as np
import pandas as pd
import pytest

from stages.common.errors import PipelineError
from stages.data.schema import load_schema, non_features
from stages.data.validation import failure_message, validate_frame, validation_report


def test_valid_frame_passes_and_is_coerced(schema, raw_frame):
    raw = raw_frame.assign(age=raw_frame["age"].astype(str))
    validated, cases = validate_frame(raw, schema=schema)
    assert cases.empty
    assert validated["age"].dtype == "int64"
    assert validated["age"].tolist() == [25, 40, 33, 58, 19]
    assert raw["age"].dtype != "int64"  # the input frame is not mutated


def test_every_failure_is_reported(schema, raw_frame):
    bad = raw_frame.copy()
    bad.loc[0, "age"] = 150  # out of range
    bad.loc[1, "color"] = "purple"  # not in the vocabulary
    bad.loc[2, "color"] = "orange"
    bad.loc[3, "hours"] = np.inf  # not finite
    bad.loc[4, "label"] = None  # target must be present
    validated, cases = validate_frame(bad, schema=schema)
    assert validated is None
    found = {(row.column, row.check, row.failure_case, row.index) for row in cases.itertuples()}
    assert ("age", "in_range(0, 120)", "150", 0) in found
    assert ("color", "isin(['red', 'green', 'blue'])", "purple", 1) in found
    assert ("color", "isin(['red', 'green', 'blue'])", "orange", 2) in found
    assert ("hours", "finite", "inf", 3) in found
    assert ("label", "not_nullable", "<missing>", 4) in found

    report = validation_report(len(bad), bad.shape[1], cases, schema_path="schema.yaml")
    assert report["valid"] is False
    assert report["invalid_rows"] == 5
    by_check = {(item["column"], item["check"]): item["failures"] for item in report["failures"]}
    assert by_check[("color", "isin(['red', 'green', 'blue'])")] == 2

    error = failure_message(report, source="data/raw/table.parquet")
    assert error.message.startswith("data/raw/table.parquet: 5 of 5 rows failed the schema")
    assert any(
        line.startswith("column 'color', check isin(['red', 'green', 'blue']): 2 failures")
        for line in error.details
    )


def test_missing_and_unexpected_columns(schema, raw_frame):
    bad = raw_frame.drop(columns=["hours"]).assign(extra=1)
    _, cases = validate_frame(bad, schema=schema)
    checks = set(zip(cases["check"], cases["failure_case"], strict=True))
    assert ("column_in_dataframe", "hours") in checks
    assert ("column_in_schema", "extra") in checks
    report = validation_report(len(bad), bad.shape[1], cases, schema_path="schema.yaml")
    assert failure_message(report, source="raw").message.startswith("raw: the table failed")


def test_non_features_come_from_schema_metadata(schema):
    assert non_features(schema) == {"id": "an identifier, not a property of the row"}


def test_schema_errors(tmp_path):
    with pytest.raises(PipelineError, match="schema file not found"):
        load_schema(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns:\n  a:\n    dtype: not-a-dtype\n")
    with pytest.raises(PipelineError, match="not a valid pandera schema"):
        load_schema(broken)


def test_shipped_schema_accepts_the_shipped_data():
    from stages.common.config import load_params
    from stages.data.sources import read_source

    from ..conftest import REPO

    params = load_params(REPO / "params.yaml")
    collect = params.collect.model_copy(update={"source": str(REPO / params.collect.source)})
    frame = read_source(params=collect)
    validated, cases = validate_frame(frame, schema=load_schema(REPO / params.dataset.schema_path))
    assert cases.empty, cases.head()
    assert len(validated) == 32561
    assert pd.api.types.is_integer_dtype(validated["age"])


def test_a_row_failing_several_checks_is_quarantined_once_with_every_reason(schema, raw_frame):
    from stages.common.config import ValidateParams
    from stages.data.validation import apply_policy, validate_frame, validation_report

    frame = raw_frame.copy()
    frame.loc[2, "age"] = -5
    frame.loc[2, "color"] = "purple"
    validated, cases = validate_frame(frame, schema=schema)
    report = validation_report(len(frame), frame.shape[1], cases, schema_path="schema.yaml")
    policy = ValidateParams(on_invalid="quarantine", max_invalid_fraction=0.5)
    valid, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report=report,
        schema=schema,
        policy=policy,
        columns=("row_id", "reason"),
        source="raw.parquet",
    )
    assert error is None and list(quarantine["row_id"]) == [2]
    reason = quarantine["reason"].iloc[0]
    assert "age: '-5' fails in_range" in reason and "color: 'purple' fails" in reason
    assert 2 not in valid.index and len(valid) == len(frame) - 1


def test_a_value_that_is_not_a_number_is_quarantined_with_its_row(schema, raw_frame):
    from stages.common.config import ValidateParams
    from stages.data.transform import clean_frame, unparsed_values
    from stages.data.validation import apply_policy, validate_frame, validation_report

    raw = raw_frame.astype({"age": object})
    raw.loc[1, "age"] = "unknown"
    raw.loc[2, "age"] = 33.5
    frame = clean_frame(raw, missing_tokens=["NA"], schema=schema)
    unreadable = unparsed_values(raw, frame, missing_tokens=["NA"], schema=schema)
    assert unreadable[["check", "failure_case", "index"]].values.tolist() == [
        ["parses as a number", "unknown", 1],
        ["is a whole number", "33.5", 2],
    ]
    validated, cases = validate_frame(frame, schema=schema, earlier=unreadable)
    report = validation_report(len(frame), frame.shape[1], cases, schema_path="schema.yaml")
    valid, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report=report,
        schema=schema,
        policy=ValidateParams(on_invalid="quarantine", max_invalid_fraction=0.5),
        columns=("row_id", "reason"),
        source="raw.parquet",
    )
    assert error is None
    assert quarantine["reason"].tolist() == [
        "age: 'unknown' is not a number",
        "age: '33.5' is not a whole number",
    ]
    assert list(valid.index) == [0, 3, 4] and valid["age"].dtype == "int64"


def test_a_table_level_failure_is_never_quarantined(schema, raw_frame):
    from stages.common.config import ValidateParams
    from stages.data.validation import apply_policy, validate_frame, validation_report

    frame = raw_frame.drop(columns=["age"])
    validated, cases = validate_frame(frame, schema=schema)
    report = validation_report(len(frame), frame.shape[1], cases, schema_path="schema.yaml")
    policy = ValidateParams(on_invalid="quarantine", max_invalid_fraction=1.0)
    valid, quarantine, error = apply_policy(
        frame,
        validated=validated,
        cases=cases,
        report=report,
        schema=schema,
        policy=policy,
        columns=("row_id", "reason"),
        source="raw.parquet",
    )
    assert valid is None and quarantine.empty
    assert error is not None and "age" in str(error) + " ".join(error.details)


def _corruptions(frame: pd.DataFrame, schema, rng: np.random.Generator):
    """Frames that differ from `frame` in one way each: a value out of its range or below
    its bound, a missing value, a column missing, an extra column, a number as text."""
    for name, column in schema.columns.items():
        for check in column.checks:
            stats = check.statistics or {}
            for bound in ("min_value", "max_value"):
                if bound in stats:
                    changed = frame.copy()
                    row = int(rng.integers(len(frame)))
                    step = -1 if bound == "min_value" else 1
                    changed.loc[row, name] = stats[bound] + step
                    yield f"{name} past {bound}", changed
        changed = frame.copy()
        changed[name] = changed[name].astype(object)
        changed.loc[int(rng.integers(len(frame))), name] = None
        yield f"{name} missing a value", changed
        yield f"without {name}", frame.drop(columns=[name])
    yield "an extra column", frame.assign(extra=1)
    yield "a number as text", frame.assign(age=frame["age"].astype(str))


@pytest.mark.parametrize("source", ["tiny", "adult"])
def test_the_quick_check_passes_only_rows_pandera_passes(source, schema, raw_frame):
    """passes_quickly lets a frame skip pandera's run: it may say "not certain" of a valid
    frame, never "valid" of one pandera rejects, and a frame it passes is what pandera
    returns. It passes valid rows (or scoring would gain nothing)."""
    from stages.data.transform import clean_frame
    from stages.data.validation import passes_quickly
    from stages.model.predictor import feature_schema

    from ..conftest import REPO

    if source == "adult":
        from stages.common.config import load_params
        from stages.data.sources import read_source

        params = load_params(REPO / "params.yaml")
        collect = params.collect.model_copy(update={"source": str(REPO / params.collect.source)})
        declared = load_schema(REPO / params.dataset.schema_path)
        schema = feature_schema(declared, target="income")
        rows = read_source(params=collect).drop(columns=["income"]).sample(300, random_state=0)
        tokens = params.prepare.missing_tokens
    else:
        schema = feature_schema(schema, target="label")
        rows, tokens = raw_frame.drop(columns=["label"]), ["?"]
    frame = clean_frame(rows.reset_index(drop=True), missing_tokens=tokens, schema=schema)
    assert passes_quickly(frame, schema)
    pd.testing.assert_frame_equal(schema.validate(frame.copy(), lazy=True), frame)
    rng = np.random.default_rng(0)
    for what, changed in _corruptions(frame, schema, rng):
        validated, cases = validate_frame(changed, schema=schema)
        if passes_quickly(changed, schema):
            assert cases.empty, (what, cases)
            pd.testing.assert_frame_equal(validated, changed, obj=what)
        else:
            assert what != "an extra column" or not cases.empty


def test_the_quick_check_leaves_what_it_cannot_judge_to_pandera(schema, raw_frame):
    import pandera.pandas as pa

    from stages.data.transform import clean_frame
    from stages.data.validation import passes_quickly

    frame = clean_frame(raw_frame, missing_tokens=["?"], schema=schema)
    assert passes_quickly(frame, schema)
    for changed in (
        schema.update_column("id", unique=True),
        pa.DataFrameSchema(schema.columns, checks=[pa.Check(lambda table: len(table) > 0)]),
        pa.DataFrameSchema(schema.columns, unique=["id", "age"]),
        pa.DataFrameSchema(schema.columns, ordered=True),
        pa.DataFrameSchema(schema.columns, strict="filter"),
    ):
        assert not passes_quickly(frame, changed)
