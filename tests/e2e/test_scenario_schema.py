"""`bench scenario-schema`: the printed JSON Schema accepts every shipped scenario and rejects
what the loader rejects (unknown sections and fields, wrong types)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bench.commands.cli import main
from bench.errors import BenchInputError
from bench.scenario.loader import validate_scenario

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["scenario-schema"]) == 0
    schema = json.loads(out.getvalue())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_shipped_scenario_is_valid_under_the_schema(validator):
    assert len(SHIPPED) >= 4
    for path in SHIPPED:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [e.message for e in validator.iter_errors(data)] == [], path.name


@pytest.mark.parametrize(("where", "change"), [
    ("a misspelt section", lambda d: d.update(lod={"rate": 1})),
    ("a misspelt load field", lambda d: d["load"].update(rat=5)),
    ("a rate that is text", lambda d: d["load"].update(rate="fast")),
    ("a negative duration", lambda d: d["load"].update(duration=-1)),
])
def test_the_schema_and_the_loader_both_reject(validator, where, change):
    data = copy.deepcopy(yaml.safe_load((REPO / "scenarios" / "quickstart.yaml").read_text(encoding="utf-8")))
    change(data)
    assert list(validator.iter_errors(data)), where
    with pytest.raises(BenchInputError):
        validate_scenario(data, "quickstart.yaml")
