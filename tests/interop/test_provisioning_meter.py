"""Issue section 7: a meter built on code nobody here wrote accepts what the KMS provisions.

The simulated meter (tests/interop/meter.py, pyca/cryptography only) starts with the vendor's
initial KEK, applies the station's APDUs in order, and must end with keys whose check values equal
the ones the KMS reported, for suites 0, 1 and 2 and for several security setups.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.interop.meter import SimulatedMeter
from tests.kms_fixtures import TRANSPORT_KEYS, Kms, meter_row, write_manifest

SUCCESS = b"\x00\x00"


def _logical_name(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def _provision(kms: Kms, tmp_path: Path, rows: list[dict[str, str]]) -> list[dict[str, object]]:
    manifest = write_manifest(tmp_path / "meters.csv", rows)
    kms.services.provisioning.provision(manifest, tmp_path / "r.jsonl", actor="pytest")
    return [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]


def _meter_for(result: dict[str, object], setups: list[bytes]) -> SimulatedMeter:
    suite = int(str(result["suite"]))
    initial = TRANSPORT_KEYS["vendor-aes256" if suite == 2 else "vendor-aes128"]
    return SimulatedMeter(bytes.fromhex(str(result["system_title"])), suite, initial, setups)


def _written(
    result: dict[str, object],
) -> tuple[SimulatedMeter, list[tuple[dict[str, Any], bytes]]]:
    """A meter that was sent every APDU of ``result`` in order (each must succeed)."""
    entries = result["setups"]
    assert isinstance(entries, list)
    setups = [(setup, _logical_name(setup["logical_name"])) for setup in entries]
    meter = _meter_for(result, [ln for _, ln in setups])
    for setup, _ln in setups:
        for apdu in setup["apdus"]:
            assert meter.apply(bytes.fromhex(apdu))[-2:] == SUCCESS
    return meter, setups


@pytest.mark.parametrize("suite", [0, 1, 2])
@pytest.mark.parametrize("setups", ["", "0;1;3"])
def test_meter_ends_with_the_keys_the_kms_reported(
    kms: Kms, tmp_path: Path, suite: int, setups: str
) -> None:
    (result,) = _provision(kms, tmp_path, [meter_row(suite + 10, suite, setups)])
    meter, written = _written(result)
    assert len(written) == (3 if setups else 1)
    for setup, ln in written:
        assert meter.check_values(ln) == setup["kcv"]
        assert {len(k) for k in meter.keys(ln).values()} == {32 if suite == 2 else 16}


def test_every_meter_gets_unique_keys(kms: Kms, tmp_path: Path) -> None:
    results = _provision(kms, tmp_path, [meter_row(i, i % 3, "0;1") for i in range(1, 10)])
    seen: set[bytes] = set()
    for result in results:
        meter, written = _written(result)
        for _setup, ln in written:
            for key in meter.keys(ln).values():
                assert key not in seen
                seen.add(key)
    assert len(seen) == 9 * 2 * 4


def test_apdus_out_of_order_are_refused_by_the_meter(kms: Kms, tmp_path: Path) -> None:
    """The global keys are wrapped under the *new* KEK: sent first, the meter cannot unwrap them."""
    (result,) = _provision(kms, tmp_path, [meter_row(42, 0)])
    entries = result["setups"]
    assert isinstance(entries, list)
    ln = _logical_name(entries[0]["logical_name"])
    meter = _meter_for(result, [ln])
    assert meter.apply(bytes.fromhex(entries[0]["apdus"][1]))[-2:] != SUCCESS
    assert "GUEK" not in meter.keys(ln)


def test_a_meter_with_another_initial_kek_refuses_the_first_apdu(kms: Kms, tmp_path: Path) -> None:
    (result,) = _provision(kms, tmp_path, [meter_row(43, 0)])
    entries = result["setups"]
    assert isinstance(entries, list)
    ln = _logical_name(entries[0]["logical_name"])
    meter = SimulatedMeter(bytes.fromhex(str(result["system_title"])), 0, bytes(16), [ln])
    assert meter.apply(bytes.fromhex(entries[0]["apdus"][0]))[-2:] != SUCCESS
    assert meter.keys(ln)["KEK"] == bytes(16)
