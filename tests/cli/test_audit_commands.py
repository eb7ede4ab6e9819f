"""``kms audit list|show|export`` through the real command: a security officer reads the trail
without sqlite3, and an export is checked offline from the file alone.

The KMS is set up by ``kms init`` and two transport-key imports (events 1-5: three
``root_key.created``, two ``transport_key.import``), then ``kms audit checkpoint`` (event 6) by an
actor whose name is longer than a terminal is wide, then one more import (event 7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kms.errors import AuditChainBroken
from kms.formats.audit_export import verify_export
from tests.cli.helpers import Cli, describe, initialised_kms, stderr_json, write_key_file
from tests.kms_fixtures import TRANSPORT_KEYS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema" / "formats" / "audit-export-line.schema.json").read_text())
#: Wider than 80 columns on its own: a table must not cut it.
LONG_ACTOR = "officer-" + "0123456789abcdef" * 6


@pytest.fixture
def trail(cli: Cli) -> Cli:
    initialised_kms(cli)
    signer = cli("audit", "checkpoint", env={"KMS_ACTOR": LONG_ACTOR})
    assert signer.returncode == 0, describe(signer)
    key = write_key_file(cli.cwd / "keys", "late", TRANSPORT_KEYS["vendor-aes128"][::-1])
    cli.ok("transport-key", "import", "--label", "late", "--key-file", key)
    return cli


def _seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


def test_list_filters_and_prints_json(trail: Cli) -> None:
    everything = trail.json("audit", "list")
    assert _seqs(everything) == list(range(1, 8))
    assert [e["operation"] for e in everything] == [
        *["root_key.created"] * 3,
        *["transport_key.import"] * 2,
        "audit.checkpoint",
        "transport_key.import",
    ]
    assert everything[5]["actor"] == LONG_ACTOR
    assert _seqs(trail.json("audit", "list", "--operation", "transport_key.import")) == [4, 5, 7]
    assert _seqs(trail.json("audit", "list", "--actor", LONG_ACTOR)) == [6]
    assert _seqs(trail.json("audit", "list", "--subject", "late")) == [7]
    assert _seqs(trail.json("audit", "list", "--since", "5")) == [6, 7]
    assert _seqs(trail.json("audit", "list", "--limit", "2")) == [6, 7]
    assert trail.json("audit", "list", "--from", "2999-01-01") == []
    assert _seqs(trail.json("audit", "list", "--from", everything[0]["occurred_at"])) == list(
        range(1, 8)
    )


def _cells(table_text: str) -> list[list[str]]:
    """The rows of a rich table, each cell's folded pieces joined again (a row starts where the
    first column is not blank)."""
    rows: list[list[str]] = []
    for line in table_text.splitlines():
        if not line.startswith("│"):
            continue
        pieces = [p.strip() for p in line.split("│")[1:-1]]
        if pieces[0] or not rows:
            rows.append(pieces)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], pieces, strict=True)]
    return rows


def test_list_prints_a_table_that_cuts_no_identifier(trail: Cli) -> None:
    events = trail.json("audit", "list")
    for env in ({}, {"COLUMNS": "300"}):  # a pipe is 80 columns wide to rich
        proc = trail("audit", "list", env=env)
        assert proc.returncode == 0, describe(proc)
        assert "…" not in proc.stdout
        rows = _cells(proc.stdout)
        assert [r[0] for r in rows] == [str(e["seq"]) for e in events]
        assert [r[2] for r in rows] == [e["actor"] for e in events]
        assert [r[3] for r in rows] == [e["operation"] for e in events]
        assert [r[4] for r in rows] == [e["subject"] for e in events]
        assert [r[1] for r in rows] == [e["occurred_at"][:19] + "Z" for e in events]
    assert LONG_ACTOR in proc.stdout  # on one line when the terminal is wide enough


def test_list_needs_no_token(trail: Cli) -> None:
    proc = trail("audit", "list", "--json", env={"KMS_USER_PIN": "not-the-pin"})
    assert proc.returncode == 0, describe(proc)
    assert len(json.loads(proc.stdout)) == 7


def test_a_bad_time_is_refused(trail: Cli) -> None:
    proc = trail("audit", "list", "--from", "yesterday", "--json")
    assert proc.returncode == 2, describe(proc)
    assert stderr_json(proc)["field"] == "--from"


def test_show_prints_one_event_whole(trail: Cli) -> None:
    event = trail.json("audit", "show", "--seq", "6")
    before = trail.json("audit", "show", "--seq", "5")
    assert event["prev_hash"] == before["hash"]
    assert (event["operation"], event["actor"]) == ("audit.checkpoint", LONG_ACTOR)
    assert event["checkpoint"]["seq"] == 6
    assert event["checkpoint"]["head_hash"] == event["hash"]
    assert before["checkpoint"]["seq"] == 6  # covered by the checkpoint after it
    assert before["details"]["label"] == "vendor-aes256"
    assert trail.json("audit", "show", "--seq", "7")["checkpoint"] is None

    text = trail.ok("audit", "show", "--seq", "6").stdout
    for whole in (event["hash"], event["prev_hash"], LONG_ACTOR, "checkpoint 1 at event 6"):
        assert whole in text


def test_show_of_a_missing_event_exits_2(trail: Cli) -> None:
    proc = trail("audit", "show", "--seq", "99", "--json")
    assert proc.returncode == 2, describe(proc)
    assert stderr_json(proc)["error"] == "usage.not_found"


def test_export_writes_lines_that_validate_and_verify_offline(trail: Cli) -> None:
    out = trail.cwd / "audit.jsonl"
    summary = trail.json("audit", "export", "--out", out)
    assert (summary["events"], summary["checkpoints"]) == (7, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert [x["type"] for x in lines].count("checkpoint") == 1
    report = verify_export(out)
    assert (report.events, report.checkpoints, report.unsigned_tail) == (7, 1, 1)
    assert trail.json("audit", "verify")["head_hash"] == lines[-1]["hash"]

    lines[3]["subject"] = "someone-else"  # an edited line
    edited = trail.cwd / "edited.jsonl"
    edited.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(AuditChainBroken, match="event 4 was altered"):
        verify_export(edited)


def test_export_refuses_an_existing_file_unless_forced(trail: Cli) -> None:
    out = trail.cwd / "audit.jsonl"
    out.write_text("kept\n")
    proc = trail("audit", "export", "--out", out, "--json")
    assert proc.returncode == 2, describe(proc)
    assert "already exists" in stderr_json(proc)["message"]
    assert out.read_text() == "kept\n"
    trail.ok("audit", "export", "--out", out, "--force")
    assert verify_export(out).events == 7
    tail = trail.json("audit", "export", "--out", trail.cwd / "tail.jsonl", "--since", "6")
    assert (tail["first_seq"], tail["events"], tail["checkpoints"]) == (7, 1, 0)
