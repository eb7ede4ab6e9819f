"""result.jsonl matches its published JSON Schema (schema/formats/), for every suite."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.kms_fixtures import Kms, meter_row, write_manifest

FORMATS = Path(__file__).resolve().parents[3] / "schema" / "formats"
SCHEMA = json.loads((FORMATS / "provision-result.schema.json").read_text())


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_result_line_validates(kms: Kms, tmp_path: Path) -> None:
    rows = [meter_row(1, 0), meter_row(2, 1, "0;1"), meter_row(3, 2, "255")]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    kms.services.provisioning.provision(manifest, tmp_path / "r.jsonl", actor="pytest")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        jsonschema.validate(json.loads(line), SCHEMA)


@pytest.mark.parametrize(
    "broken",
    [
        {"system_title": "4d4d4d0000000001"},
        {"suite": 3},
        {"extra": 1},
    ],
)
def test_the_schema_rejects_what_the_kms_never_writes(broken: dict[str, object]) -> None:
    line = {
        "system_title": "4D4D4D0000000001",
        "suite": 0,
        "setups": [
            {
                "logical_name": "0.0.43.0.0.255",
                "kcv": {"KEK": "000000", "GUEK": "000000", "GBEK": "000000", "GAK": "000000"},
                "apdus": ["C301C1004000002B0000FF020101", "C301C1004000002B0000FF020101"],
            }
        ],
    }
    jsonschema.validate(line, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**line, **broken}, SCHEMA)
