"""The README's examples run as written: the station's Python example against a real token and
database, through the installed package's API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import Cli, initialised_kms, read_jsonl
from tests.kms_fixtures import meter_row, write_manifest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(name: str) -> str:
    text = README.read_text()
    match = re.search(
        rf"<!-- readme-example: {re.escape(name)} -->\n```python\n(.*?)```", text, re.S
    )
    assert match, f"README.md has no python example marked {name!r}"
    return match.group(1)


def test_the_station_example_provisions_and_confirms(cli: Cli) -> None:
    initialised_kms(cli)
    rows = [meter_row(1, 0), meter_row(2, 1), meter_row(3, 2)]
    write_manifest(cli.cwd / "meters.csv", rows)
    done = subprocess.run(
        [sys.executable, "-c", _example("station")],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3 meters provisioned, 12 keys", "3 meters ACTIVE"]
    assert len(read_jsonl(cli.cwd / "result.jsonl")) == 3
    meters = cli.json("meter", "list")
    assert {m["state"] for m in meters} == {"ACTIVE"}
