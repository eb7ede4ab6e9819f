"""``kms status`` through the real command: every check reported, none stopping the others, and
the exit status of the most serious failure when the KMS is unhealthy."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, update
from sqlalchemy.pool import NullPool

from kms.db import AuditCheckpoint, ModelBase
from tests.cli.helpers import Cli, describe, initialised_kms, raw_output
from tests.cli.test_database_unreachable import CLOSED_PORT_URL

CHECKS = [
    "database",
    "schema",
    "token",
    "profile",
    "root_keys",
    "certificate_authorities",
    "audit",
]


def _status(cli: Cli, status: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``kms status --json``, which must exit ``status``; its checks by name."""
    proc = cli("status", "--json", env=env)
    assert proc.returncode == status, describe(proc)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert report["healthy"] is (status == 0)
    return {c["name"]: c for c in report["checks"]}


def test_an_initialised_kms_is_healthy(cli: Cli) -> None:
    initialised_kms(cli)
    cli.ok("audit", "checkpoint")
    checks = _status(cli, 0)
    assert all(c["ok"] and c["error"] is None for c in checks.values())
    assert "kms-audit-v1" in checks["root_keys"]["detail"]
    assert "2 transport keys" in checks["root_keys"]["detail"]
    assert checks["certificate_authorities"]["detail"] == "none (no CA made yet)"
    assert "last checkpoint at event 6" in checks["audit"]["detail"]
    assert "signature verified); 0 events since" in checks["audit"]["detail"]

    text = cli.ok("status").stdout
    assert "healthy" in text and "UNHEALTHY" not in text
    assert all(name in text for name in CHECKS)


def test_an_empty_database_is_unhealthy_with_the_schema_behind(cli: Cli) -> None:
    checks = _status(cli, 2)
    assert checks["database"]["ok"] and checks["token"]["ok"] and checks["profile"]["ok"]
    assert not checks["schema"]["ok"]
    assert checks["schema"]["error"] == "usage.schema_outdated"
    assert "kms db upgrade" in checks["schema"]["detail"]
    assert all(checks[n]["skipped"] for n in ("root_keys", "certificate_authorities", "audit"))
    text = cli("status")
    assert text.returncode == 2 and "UNHEALTHY" in text.stdout


def test_a_migrated_database_without_root_keys_is_unhealthy(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    checks = _status(cli, 2)
    assert checks["schema"]["ok"]
    assert checks["root_keys"]["error"] == "usage.not_initialised"
    assert "kms init" in checks["root_keys"]["detail"]
    assert checks["audit"]["ok"] and checks["audit"]["detail"] == "no events yet"


def test_a_wrong_pin_fails_the_token_and_the_rest_is_still_checked(cli: Cli) -> None:
    initialised_kms(cli)
    cli.ok("audit", "checkpoint")
    wrong = "not-the-pin-7f3a"
    proc = cli("status", "--json", env={"KMS_USER_PIN": wrong})
    assert proc.returncode == 4, describe(proc)
    assert wrong.encode() not in raw_output(proc)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["token"]["error"] == "hsm.pin_incorrect"
    assert checks["profile"]["skipped"] and checks["root_keys"]["skipped"]
    assert checks["database"]["ok"] and checks["schema"]["ok"]
    assert checks["certificate_authorities"]["ok"]
    assert checks["audit"]["ok"]
    assert "signature not checked" in checks["audit"]["detail"]


def test_an_unreachable_database_and_a_wrong_pin_are_both_reported(cli: Cli) -> None:
    env = {"KMS_DATABASE_URL": CLOSED_PORT_URL, "KMS_USER_PIN": "not-the-pin-7f3a"}
    proc = cli("status", "--json", env=env)
    assert proc.returncode == 5, describe(proc)  # the database's family outranks the token's
    assert "unused" not in proc.stdout + proc.stderr  # the URL's password is not echoed
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["database"]["error"] == "database"
    assert checks["token"]["error"] == "hsm.pin_incorrect"
    assert checks["schema"]["skipped"] and checks["audit"]["skipped"]


def test_a_checkpoint_that_no_longer_matches_its_event_exits_6(cli: Cli) -> None:
    initialised_kms(cli)
    cli.ok("audit", "checkpoint")
    engine = create_engine(cli.database_url, poolclass=NullPool)
    table = ModelBase.metadata.tables[AuditCheckpoint.__tablename__]
    with engine.begin() as conn:
        conn.execute(update(table).values(head_hash=bytes(32)))
    engine.dispose()
    checks = _status(cli, 6)
    assert checks["audit"]["error"] == "integrity.audit_chain"
    assert "kms audit verify" in checks["audit"]["detail"]
    assert checks["root_keys"]["ok"] and checks["token"]["ok"]
