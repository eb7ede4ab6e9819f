"""Provisioning service (steps 1 and 2) in process: keys, states, APDUs, repeat runs, confirm."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from kms.db import KeyState, MeterState
from kms.db import repository as repo
from kms.dlms.key_transfer import KeyId, parse_key_transfer_request
from kms.errors import InputError, NotFoundError, SessionLost
from kms.formats.result import read_result_titles
from kms.services.provisioning import provision
from kms.services.provisioning.provision import ProvisioningService
from tests.kms_fixtures import TRANSPORT_KEYS, Kms, meter_row, write_manifest


def _service(kms: Kms) -> ProvisioningService:
    return kms.services.provisioning


def confirm(kms: Kms, titles: list[bytes]) -> provision.ConfirmReport:
    return kms.services.provisioning.confirm(titles, actor=kms.config.actor)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_provision_stores_pending_versions_and_returns_two_apdus_per_setup(
    kms: Kms, tmp_path: Path
) -> None:
    rows = [meter_row(1, 0), meter_row(2, 1, "0;1"), meter_row(3, 2)]
    manifest = write_manifest(tmp_path / "meters.csv", rows)
    report = _service(kms).provision(manifest, tmp_path / "result.jsonl", actor="pytest")

    assert (report.meters, report.generated, report.repeated, report.keys) == (3, 3, 0, 16)
    results = _lines(tmp_path / "result.jsonl")
    assert [r["system_title"] for r in results] == [r["system_title"] for r in rows]
    with kms.db.begin() as session:
        meters = repo.meters_by_system_title(
            session, [bytes.fromhex(r["system_title"]) for r in rows]
        )
        for result in results:
            meter = meters[bytes.fromhex(str(result["system_title"]))]
            assert meter.state is MeterState.PENDING
            setups = result["setups"]
            assert isinstance(setups, list)
            assert len(setups) == len(meter.setups)
            length = 32 if meter.suite == 2 else 16
            for setup, stored in zip(setups, meter.setups, strict=True):
                assert {k.role.value for k in stored.keys} == {"KEK", "GUEK", "GBEK", "GAK"}
                for key in stored.keys:
                    assert (key.version, key.state, key.key_length) == (1, KeyState.PENDING, length)
                    assert setup["kcv"][key.role.value] == key.check_value.hex().upper()
                assert len(setup["apdus"]) == 2


def test_key_transfer_apdus_carry_the_new_kek_alone_then_the_global_keys(
    kms: Kms, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [meter_row(7, 0)])
    _service(kms).provision(manifest, tmp_path / "r.jsonl", actor="pytest")
    setup = _lines(tmp_path / "r.jsonl")[0]["setups"][0]  # type: ignore[index]
    first = parse_key_transfer_request(bytes.fromhex(setup["apdus"][0]))
    second = parse_key_transfer_request(bytes.fromhex(setup["apdus"][1]))
    assert [e.key_id for e in first.entries] == [KeyId.MASTER_KEY]
    assert [e.key_id for e in second.entries] == [
        KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY,
        KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY,
        KeyId.AUTHENTICATION_KEY,
    ]
    assert first.logical_name == second.logical_name == bytes.fromhex("00002B0000FF")
    # The first entry unwraps under the meter's initial KEK (pyca as the oracle).
    new_kek = aes_key_unwrap(TRANSPORT_KEYS["vendor-aes128"], first.entries[0].key_wrapped)
    for entry in second.entries:
        assert len(aes_key_unwrap(new_kek, entry.key_wrapped)) == 16


def test_repeat_run_for_pending_meters_returns_the_same_bytes_and_generates_nothing(
    kms: Kms, tmp_path: Path
) -> None:
    rows = [meter_row(i, i % 3, "3;0;1" if i % 2 else "") for i in range(1, 7)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    service = _service(kms)
    service.provision(manifest, tmp_path / "a.jsonl", actor="pytest")
    again = service.provision(manifest, tmp_path / "b.jsonl", actor="pytest")
    assert (again.generated, again.repeated) == (0, 6)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    with kms.db.begin() as session:
        assert repo.count_meters(session) == {"PENDING": 6}


def test_chunks_commit_independently_and_a_rerun_completes_the_result(
    kms: Kms, tmp_path: Path
) -> None:
    """The documented resume rule: committed chunks stay PENDING and are re-derived."""
    rows = [meter_row(i, 0) for i in range(1, 6)]
    first_two = write_manifest(tmp_path / "part.csv", rows[:2])
    whole = write_manifest(tmp_path / "all.csv", rows)
    service = _service(kms)
    service.provision(first_two, tmp_path / "part.jsonl", actor="pytest")
    report = service.provision(whole, tmp_path / "all.jsonl", actor="pytest")
    assert (report.generated, report.repeated) == (3, 2)
    part = (tmp_path / "part.jsonl").read_text().splitlines()
    assert (tmp_path / "all.jsonl").read_text().splitlines()[:2] == part


def test_active_meter_is_refused_and_nothing_is_written(kms: Kms, tmp_path: Path) -> None:
    service = _service(kms)
    service.provision(
        write_manifest(tmp_path / "a.csv", [meter_row(1, 0)]), tmp_path / "a.jsonl", actor="pytest"
    )
    confirm(kms, [bytes.fromhex(meter_row(1, 0)["system_title"])])
    manifest = write_manifest(tmp_path / "b.csv", [meter_row(2, 0), meter_row(1, 0)])
    with pytest.raises(InputError) as info:
        service.provision(manifest, tmp_path / "b.jsonl", actor="pytest")
    assert (info.value.row, info.value.field) == (2, "system_title")
    assert "ACTIVE" in str(info.value)
    assert not (tmp_path / "b.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.jsonl")] == []
    with kms.db.begin() as session:
        assert (
            repo.meter_by_system_title(session, bytes.fromhex(meter_row(2, 0)["system_title"]))
            is None
        )


def test_pending_meter_with_another_manifest_row_is_refused(kms: Kms, tmp_path: Path) -> None:
    service = _service(kms)
    service.provision(
        write_manifest(tmp_path / "a.csv", [meter_row(1, 0)]), tmp_path / "a.jsonl", actor="pytest"
    )
    changed = meter_row(1, 0, "0;1")
    with pytest.raises(InputError) as info:
        service.provision(
            write_manifest(tmp_path / "b.csv", [changed]), tmp_path / "b.jsonl", actor="pytest"
        )
    assert info.value.field == "system_title"


def test_confirm_activates_meter_and_keys_and_is_idempotent(kms: Kms, tmp_path: Path) -> None:
    service = _service(kms)
    service.provision(
        write_manifest(tmp_path / "m.csv", [meter_row(1, 0), meter_row(2, 2, "0;3")]),
        tmp_path / "r.jsonl",
        actor="pytest",
    )
    titles = read_result_titles(tmp_path / "r.jsonl")
    report = confirm(kms, titles)
    assert report.activated == [t.hex().upper() for t in titles]
    assert report.keys_activated == 4 + 8
    with kms.db.begin() as session:
        for meter in repo.meters_by_system_title(session, titles).values():
            assert meter.state is MeterState.ACTIVE and meter.confirmed_at is not None
            assert {k.state for s in meter.setups for k in s.keys} == {KeyState.ACTIVE}
    again = confirm(kms, titles)
    assert (again.activated, again.keys_activated) == ([], 0)
    assert again.already_active == report.activated


def test_confirm_of_unknown_meter_changes_nothing(kms: Kms, tmp_path: Path) -> None:
    service = _service(kms)
    service.provision(
        write_manifest(tmp_path / "m.csv", [meter_row(1, 0)]), tmp_path / "r.jsonl", actor="pytest"
    )
    known = bytes.fromhex(meter_row(1, 0)["system_title"])
    with pytest.raises(NotFoundError, match="4D4D4D00000000FF"):
        confirm(kms, [known, bytes.fromhex("4D4D4D00000000FF")])
    with kms.db.begin() as session:
        meter = repo.meter_by_system_title(session, known)
        assert meter is not None and meter.state is MeterState.PENDING


def test_every_provisioning_and_confirmation_is_audited(kms: Kms, tmp_path: Path) -> None:
    service = _service(kms)
    manifest = write_manifest(tmp_path / "m.csv", [meter_row(1, 0), meter_row(2, 1)])
    service.provision(manifest, tmp_path / "r.jsonl", actor="pytest")
    service.provision(manifest, tmp_path / "r.jsonl", actor="pytest")
    confirm(kms, read_result_titles(tmp_path / "r.jsonl"))
    with kms.db.begin() as session:
        ops = [(e.operation, e.subject) for e in repo.audit_events(session)]
    title = meter_row(1, 0)["system_title"]
    assert ("meter.provision", title) in ops
    assert ("meter.provision.repeat", title) in ops
    assert ("meter.confirm", title) in ops


def test_read_result_titles_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"system_title": "4D4D4D0000000001"}\n{"system_title": "zz"}\n')
    with pytest.raises(InputError) as info:
        read_result_titles(path)
    assert (info.value.row, info.value.field) == (2, "system_title")


def test_small_chunks_commit_in_manifest_order(kms: Kms, tmp_path: Path) -> None:
    config = dataclasses.replace(kms.config, provision_chunk_size=2)
    service = kms.services_with(config).provisioning
    rows = [meter_row(i, i % 3) for i in range(1, 8)]
    seen: list[tuple[int, int]] = []
    report = service.provision(
        write_manifest(tmp_path / "m.csv", rows),
        tmp_path / "r.jsonl",
        actor="pytest",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert report.generated == 7
    assert [r["system_title"] for r in _lines(tmp_path / "r.jsonl")] == [
        r["system_title"] for r in rows
    ]
    assert seen == [(2, 7), (4, 7), (6, 7), (7, 7)]
    with kms.db.begin() as session:
        assert repo.count_meters(session) == {"PENDING": 7}
        provisioned = [
            e.subject for e in repo.audit_events(session) if e.operation == "meter.provision"
        ]
    assert provisioned == [r["system_title"] for r in rows]


def test_a_failure_mid_run_keeps_committed_chunks_and_writes_no_result(
    kms: Kms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resume rule: earlier chunks stay PENDING, no result file, a re-run completes it."""
    config = dataclasses.replace(kms.config, provision_chunk_size=2)
    service = kms.services_with(config).provisioning
    rows = [meter_row(i, 0) for i in range(1, 8)]
    work = tmp_path / "station"
    work.mkdir()
    manifest = write_manifest(work / "m.csv", rows)
    real_generate = provision._Run._generate
    calls = {"n": 0}

    def failing_generate(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 6:
            raise SessionLost("the token went away")
        return real_generate(*args)

    monkeypatch.setattr(provision._Run, "_generate", failing_generate)
    with pytest.raises(SessionLost):
        service.provision(manifest, work / "r.jsonl", actor="pytest")
    assert sorted(p.name for p in work.iterdir()) == ["m.csv"]
    with kms.db.begin() as session:
        assert repo.count_meters(session) == {"PENDING": 4}

    monkeypatch.undo()
    report = service.provision(manifest, work / "r.jsonl", actor="pytest")
    assert (report.generated, report.repeated) == (3, 4)
    assert len(_lines(work / "r.jsonl")) == 7
