"""A database that cannot be reached is a database failure (exit 5) with a one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import describe, run, stderr_json

CLOSED_PORT_URL = "postgresql+psycopg2://kms:unused@127.0.0.1:1/kms"


@pytest.mark.parametrize(
    "args",
    [
        ["meter", "list"],
        ["db", "upgrade"],
        ["provision", "confirm", "--system-title", "4D4D4D0000000001"],
    ],
    ids=["meter-list", "db-upgrade", "confirm"],
)
def test_an_unreachable_database_exits_5(
    args: list[str], kms_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**kms_env, "KMS_DATABASE_URL": CLOSED_PORT_URL}
    proc = run([*args, "--json"], env, tmp_path)
    assert proc.returncode == 5, describe(proc)
    error = stderr_json(proc)
    assert error["error"] == "database"
    assert "Traceback" not in proc.stderr
    assert "unused" not in proc.stderr  # the URL's password is not echoed
