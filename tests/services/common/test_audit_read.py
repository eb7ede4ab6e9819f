"""Reading the audit trail (``AuditService.events|event|export``) and checking an export offline.

The export is checked by :func:`kms.formats.audit_export.verify_export` from the file alone (no
token, no database): every line validates against its published schema, the untouched file
verifies, and an edited line, a dropped event line, a dropped checkpoint line and a chain
rewritten consistently after an edit (only the token-made signature can catch that) are each
detected. ``scripts/verify_audit_export.py`` runs the same check as a program.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kms.errors import AuditChainBroken, InputError, NotFoundError
from kms.formats.audit_export import canonical_record, chain_hash, verify_export
from kms.formats.files import atomic_text_writer
from kms.services.common import audit
from kms.services.common.audit import AuditRecord
from tests.kms_fixtures import Kms

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schema" / "formats" / "audit-export-line.schema.json").read_text())
#: Longer than 80 columns, to show nothing cuts it.
LONG_SUBJECT = "kms-ca-issuing-suite2-v1-" + "ab" * 40


def _append(kms: Kms, records: list[AuditRecord], actor: str = "pytest") -> int:
    with kms.db.begin() as session:
        return audit.append(session, actor, records)


@pytest.fixture
def trail(kms: Kms) -> Kms:
    """Events 1-3 by pytest, 4-5 by operator-1, a checkpoint (event 6), then 7-8.

    1 meter.provision A, 2 meter.provision B, 3 meter.confirm A, 4 key.use LONG_SUBJECT,
    5 meter.provision C (failure), 6 audit.checkpoint, 7-8 ic.reserve A.
    """
    _append(
        kms,
        [
            AuditRecord("meter.provision", "4D4D4D000000000A", {"suite": 0}),
            AuditRecord("meter.provision", "4D4D4D000000000B", {"suite": 1}),
            AuditRecord("meter.confirm", "4D4D4D000000000A", {"keys": "ACTIVE"}),
        ],
    )
    _append(
        kms,
        [
            AuditRecord("key.use", LONG_SUBJECT, {"version": 1}),
            AuditRecord("meter.provision", "4D4D4D000000000C", {"error": "x"}, "failure"),
        ],
        actor="operator-1",
    )
    kms.services.audit.checkpoint(actor="pytest")
    _append(kms, [AuditRecord("ic.reserve", "4D4D4D000000000A", {"block": n}) for n in (1, 2)])
    return kms


def _seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


# --- list ----------------------------------------------------------------------------------------


def test_events_are_listed_oldest_first_with_every_filter(trail: Kms) -> None:
    service = trail.services.audit
    everything = service.events()
    assert _seqs(everything) == list(range(1, 9))
    assert everything[3]["subject"] == LONG_SUBJECT
    assert everything[0]["details"] == {"suite": 0}
    assert everything[0]["occurred_at"].endswith("+00:00")

    assert _seqs(service.events(after_seq=5)) == [6, 7, 8]
    assert _seqs(service.events(operation="meter.provision")) == [1, 2, 5]
    assert _seqs(service.events(actor="operator-1")) == [4, 5]
    assert _seqs(service.events(subject="4D4D4D000000000A")) == [1, 3, 7, 8]
    assert _seqs(service.events(subject="4D4D4D000000000A", operation="ic.reserve")) == [7, 8]
    assert [e["outcome"] for e in service.events(actor="operator-1")] == ["success", "failure"]
    assert service.events(subject="nobody") == []


def test_the_limit_keeps_the_newest_events_newest_last(trail: Kms) -> None:
    assert _seqs(trail.services.audit.events(limit=3)) == [6, 7, 8]
    assert _seqs(trail.services.audit.events(operation="meter.provision", limit=2)) == [2, 5]


def test_events_from_a_time(trail: Kms) -> None:
    service = trail.services.audit
    first = datetime.datetime.fromisoformat(service.events()[0]["occurred_at"])
    assert _seqs(service.events(since=first)) == list(range(1, 9))
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert service.events(since=future) == []
    last_time = datetime.datetime.fromisoformat(service.events()[-1]["occurred_at"])
    assert _seqs(service.events(since=last_time)) == [7, 8]  # one append, one time


# --- show ----------------------------------------------------------------------------------------


def test_an_event_is_shown_whole_with_the_checkpoint_covering_it(trail: Kms) -> None:
    service = trail.services.audit
    second = service.event(2)
    first = service.event(1)
    assert second["prev_hash"] == first["hash"]
    assert first["prev_hash"] == "00" * 32
    assert second["details"] == {"suite": 1}
    assert second["details_text"] == '{"suite":1}'
    record = canonical_record(
        2,
        second["occurred_at"],
        "pytest",
        "meter.provision",
        "4D4D4D000000000B",
        "success",
        second["details_text"],
    )
    assert chain_hash(bytes.fromhex(second["prev_hash"]), record).hex() == second["hash"]
    covering = second["checkpoint"]
    assert covering is not None
    assert (covering["seq"], covering["key_label"]) == (6, trail.root.audit.label)
    assert covering["head_hash"] == service.event(6)["hash"]
    assert service.event(6)["checkpoint"]["seq"] == 6
    assert service.event(7)["checkpoint"] is None  # after the last checkpoint


def test_a_missing_event_is_not_found(trail: Kms) -> None:
    with pytest.raises(NotFoundError, match="no audit event 99"):
        trail.services.audit.event(99)


# --- export and the offline check ----------------------------------------------------------------


def _export(kms: Kms, out: Path, **options: Any) -> list[dict[str, Any]]:
    kms.services.audit.export(out, **options)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return path


def test_an_export_validates_line_by_line_and_verifies_offline(trail: Kms, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    summary = trail.services.audit.export(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]

    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert [(x["type"], x["seq"]) for x in lines] == [
        *[("event", n) for n in range(1, 7)],
        ("checkpoint", 6),
        ("event", 7),
        ("event", 8),
    ]
    assert summary == {
        "path": str(out),
        "events": 8,
        "checkpoints": 1,
        "first_seq": 1,
        "last_seq": 8,
    }
    report = verify_export(out)
    assert (report.events, report.checkpoints, report.first_seq, report.last_seq) == (8, 1, 1, 8)
    assert report.unsigned_tail == 2
    spki = trail.hsm.public_key_der(trail.root.audit)
    assert report.keys == (hashlib.sha256(spki).hexdigest(),)
    # The database's own check agrees.
    assert trail.services.audit.verify().head_hash == lines[-1]["hash"]


def test_the_schema_refuses_what_the_kms_never_writes(trail: Kms, tmp_path: Path) -> None:
    event, checkpoint = _export(trail, tmp_path / "a.jsonl")[5:7]
    for bad in (
        {**event, "hash": "XYZ"},
        {**event, "details": {"suite": 1}},
        {**event, "extra": 1},
        {**checkpoint, "signature": "00" * 10},
        {k: v for k, v in checkpoint.items() if k != "public_key"},
        {**event, "type": "checkpoint"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_a_partial_export_since_a_seq_verifies(trail: Kms, tmp_path: Path) -> None:
    lines = _export(trail, tmp_path / "tail.jsonl", since=4)
    assert [(x["type"], x["seq"]) for x in lines] == [
        ("event", 5),
        ("event", 6),
        ("checkpoint", 6),
        ("event", 7),
        ("event", 8),
    ]
    assert verify_export(tmp_path / "tail.jsonl").first_seq == 5
    # Nothing to sign, nothing from the token: an export after the last checkpoint.
    assert [x["type"] for x in _export(trail, tmp_path / "t2.jsonl", since=6)] == ["event"] * 2


def test_an_edited_line_is_detected_offline(trail: Kms, tmp_path: Path) -> None:
    lines = _export(trail, tmp_path / "audit.jsonl")
    for index, field, value in [
        (1, "subject", "4D4D4D00000000FF"),
        (4, "outcome", "success"),
        (0, "details", '{"suite":2}'),
        (3, "actor", "someone-else"),
        (7, "occurred_at", "2020-01-01T00:00:00.000000+00:00"),
    ]:
        edited = [dict(x) for x in lines]
        edited[index][field] = value
        with pytest.raises(AuditChainBroken, match=f"line {index + 1}: .*altered"):
            verify_export(_write(tmp_path / f"edited-{index}.jsonl", edited))


def test_a_dropped_line_is_detected_offline(trail: Kms, tmp_path: Path) -> None:
    lines = _export(trail, tmp_path / "audit.jsonl")
    with pytest.raises(AuditChainBroken, match="event 3 is missing"):
        verify_export(_write(tmp_path / "no-event.jsonl", lines[:2] + lines[3:]))
    with pytest.raises(AuditChainBroken, match="checkpoint signed at event 6 is missing"):
        verify_export(_write(tmp_path / "no-checkpoint.jsonl", lines[:6] + lines[7:]))
    with pytest.raises(AuditChainBroken, match="does not start from the genesis"):
        first = {**lines[0], "prev_hash": "11" * 32}
        verify_export(_write(tmp_path / "no-genesis.jsonl", [first, *lines[1:]]))


def test_a_rewritten_chain_is_caught_by_the_checkpoint_signature(
    trail: Kms, tmp_path: Path
) -> None:
    """Edit event 2 and recompute every hash after it, as anyone could (SHA-256 is unkeyed):
    the links hold, and only the signature made in the token fails."""
    lines = _export(trail, tmp_path / "audit.jsonl")
    lines[1]["subject"] = "4D4D4D00000000FF"
    prev = bytes(32)
    for line in lines:
        if line["type"] != "event":
            continue
        fields = [line[k] for k in ("seq", "occurred_at", "actor", "operation", "subject")]
        record = canonical_record(*fields, line["outcome"], line["details"])
        line["prev_hash"], digest = prev.hex(), chain_hash(prev, record)
        line["hash"] = digest.hex()
        prev = digest
    lines[6]["head_hash"] = lines[5]["hash"]  # the checkpoint line names the new head
    with pytest.raises(AuditChainBroken, match="line 7: the checkpoint at event 6 does not verify"):
        verify_export(_write(tmp_path / "rewritten.jsonl", lines))


def test_an_export_never_replaces_a_file_unless_forced(trail: Kms, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "audit.jsonl"
    out.write_text("an earlier export\n")
    with pytest.raises(InputError, match="already exists"):
        trail.services.audit.export(out)
    assert out.read_text() == "an earlier export\n"
    assert [p.name for p in folder.iterdir()] == ["audit.jsonl"]  # no temporary file left
    trail.services.audit.export(out, force=True)
    assert verify_export(out).events == 8


def test_the_script_checks_an_export_and_exits_6_when_broken(trail: Kms, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    lines = _export(trail, out)
    script = [sys.executable, str(ROOT / "scripts" / "verify_audit_export.py")]
    good = subprocess.run(
        [*script, str(out), "--json"], capture_output=True, text=True, check=False
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["events"] == 8
    lines[2]["subject"] = "edited"
    bad_file = _write(tmp_path / "bad.jsonl", lines)
    bad = subprocess.run([*script, str(bad_file)], capture_output=True, text=True, check=False)
    assert bad.returncode == 6
    assert "event 3 was altered" in bad.stderr


def test_a_file_made_while_the_export_is_written_is_not_replaced(tmp_path: Path) -> None:
    """The refusal holds at the moment the file is put in place, not only when it starts."""
    out = tmp_path / "audit.jsonl"
    with pytest.raises(InputError, match="already exists"):  # noqa: SIM117 - the order matters
        with atomic_text_writer(out, overwrite=False, what="audit export") as handle:
            handle.write("new\n")
            out.write_text("someone else's\n")
    assert out.read_text() == "someone else's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]
