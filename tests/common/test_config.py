import copy
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from stages.common.config import leaf_fields, load_params, parse_params
from stages.common.errors import PipelineError

from ..conftest import REPO


def shipped_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_shipped_params_parse():
    params = parse_params(shipped_params())
    assert params.dataset.target == "income"
    assert params.dataset.schema_path == "schemas/adult.yaml"
    assert params.train.hidden_units and params.train.epochs > 0


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", "ten", "train.epochs: Input should be a valid integer"),
        ("train", "learning_rate", -1.0, "train.learning_rate: Input should be greater than 0"),
        ("train", "optimizer", "adagrad", "train.optimizer: Input should be"),
        ("train", "epochz", 3, "train.epochz: unknown key"),
        ("split", "test", 1.5, "split.test: Input should be less than 1"),
        ("collect", "header", "no", "collect.header: Input should be a valid boolean"),
    ],
)
def test_bad_params_name_the_key(section, key, value, expected):
    raw = shipped_params()
    raw[section][key] = value
    with pytest.raises(PipelineError) as caught:
        parse_params(raw)
    assert "invalid params" in caught.value.message
    assert any(line.startswith(expected) for line in caught.value.details), caught.value.details


def test_missing_section_and_unknown_section():
    raw = shipped_params()
    del raw["collect"]
    raw["trian"] = {}
    with pytest.raises(PipelineError) as caught:
        parse_params(raw)
    assert "collect: missing key" in caught.value.details
    assert "trian: unknown key" in caught.value.details


def test_split_fractions_must_leave_train_rows():
    raw = shipped_params()
    raw["split"].update(validation=0.5, test=0.5)
    with pytest.raises(PipelineError) as caught:
        parse_params(raw)
    assert "validation + test must be below 1" in str(caught.value)


def test_headerless_source_needs_names():
    raw = shipped_params()
    raw["collect"]["names"] = None
    with pytest.raises(PipelineError, match="without a header row needs `names`"):
        parse_params(raw)


def test_overrides_apply_on_top_of_the_file(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = load_params(path, {"train": {"epochs": 3, "hidden_units": [8]}})
    assert params.train.epochs == 3
    assert params.train.hidden_units == [8]
    assert params.train.batch_size == shipped_params()["train"]["batch_size"]


def test_missing_and_malformed_params_file(tmp_path: Path):
    with pytest.raises(PipelineError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(bad)


def _value(raw, key):
    for part in key.split("."):
        raw = raw[part]
    return raw


def test_params_yaml_holds_every_key_at_its_default_or_marked_per_table():
    """One home per default: the params classes. params.yaml ships every key, at the
    class's default unless the key is marked as set for its table (the Adult file's layout,
    columns and gates)."""
    raw = shipped_params()
    per_table = []
    for key, field in leaf_fields():
        value = _value(raw, key)  # KeyError: a key params.yaml lacks
        if (field.json_schema_extra or {}).get("per_table"):
            per_table.append(key)
            continue
        default = field.get_default(call_default_factory=True)
        assert not field.is_required(), f"{key}: required but not marked per table"
        # The shipped value read as the key's type (a mapping of sections, such as
        # tune.space, as its sections), then compared with the default.
        assert TypeAdapter(field.annotation).validate_python(value) == default, key
    assert "train.model" not in per_table and "dataset.target" in per_table


def test_a_key_removed_from_params_yaml_falls_back_to_the_value_it_ships():
    raw = shipped_params()
    shipped = parse_params(raw)
    removed = 0
    for key, field in leaf_fields():
        if (field.json_schema_extra or {}).get("per_table"):
            continue
        fewer = copy.deepcopy(raw)
        *parents, last = key.split(".")
        del _value(fewer, ".".join(parents))[last]
        assert parse_params(fewer) == shipped, key
        removed += 1
    assert removed > 60
