"""The ``kms`` command end to end, as a provisioning station drives it (black box, subprocesses).

init (idempotent) -> selftest -> transport-key import/generate -> provision (result.jsonl) ->
meter list/show (PENDING) -> the same manifest again (byte-identical result) -> confirm (ACTIVE)
-> the manifest once more (refused) -> audit checkpoint/verify; and ``--help`` of every command.

Each test has its own SoftHSM2 token and database (``kms_env``). The key_transfer APDUs in
result.jsonl are checked with pyca/cryptography from the known transport keys only: unwrapping
them must give keys whose check values are the ones the KMS reported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from tests.cli.helpers import (
    Cli,
    describe,
    dump_database,
    initialised_kms,
    one_line,
    read_jsonl,
    stderr_json,
    stdout_json,
    write_key_file,
)
from tests.kms_fixtures import TRANSPORT_KEYS, meter_row, write_manifest

RESULT_SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[2] / "schema" / "formats" / "provision-result.schema.json"
    ).read_text(encoding="utf-8")
)
ROOT_PURPOSES = {"STORAGE", "BINDING", "AUDIT"}
ROLES = ("KEK", "GUEK", "GBEK", "GAK")
#: key_id of each global key in a key_transfer entry (Green Book: 0 unicast, 1 broadcast, 2 AK).
KEY_IDS = {0: "GUEK", 1: "GBEK", 2: "GAK"}
UPPER_HEX = re.compile(r"(?:[0-9A-F]{2})+")
KCV = re.compile(r"[0-9A-F]{6}")

#: Suites 0, 1 and 2, and a meter with two security setups.
MANIFEST_ROWS = [meter_row(1, 0), meter_row(2, 1, "0;1"), meter_row(3, 2)]
EXPECTED_SETUPS = {
    "4D4D4D0000000001": ["0.0.43.0.0.255"],
    "4D4D4D0000000002": ["0.0.43.0.0.255", "0.0.43.0.1.255"],
    "4D4D4D0000000003": ["0.0.43.0.0.255"],
}


def kcv_of(key: bytes) -> str:
    """The key check value: the first 3 bytes of AES-ECB of a zero block, in upper-case hex."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - a KCV
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex().upper()


def key_transfer_entries(apdu: bytes, logical_name: str) -> dict[int, bytes]:
    """key_id -> wrapped key of an action-request to security setup method 2 (key_transfer).

    Parsed by hand from the Green Book encoding, so the test does not trust the KMS's own codec:
    C3 01 invoke-id, class 64, the setup's logical name, method 2, parameters present, then an
    array of structure {enum key_id, octet-string wrapped_key}.
    """
    e = int(logical_name.split(".")[4])
    head = bytes([0xC3, 0x01]) + apdu[2:3] + bytes([0x00, 0x40, 0, 0, 43, 0, e, 255, 0x02, 0x01])
    assert apdu[: len(head)] == head, apdu.hex()
    assert apdu[len(head)] == 0x01, "the parameter is an array"
    count, pos = apdu[len(head) + 1], len(head) + 2
    entries: dict[int, bytes] = {}
    for _ in range(count):
        assert apdu[pos : pos + 3] == bytes([0x02, 0x02, 0x16]), apdu[pos:].hex()
        key_id = apdu[pos + 3]
        assert apdu[pos + 4] == 0x09, "wrapped_key is an octet-string"
        length = apdu[pos + 5]
        entries[key_id] = apdu[pos + 6 : pos + 6 + length]
        assert len(entries[key_id]) == length
        pos += 6 + length
    assert pos == len(apdu), "no trailing bytes"
    return entries


def check_result_line(line: dict[str, Any], suite: int, transport_key: bytes) -> None:
    """The exact shape of a result.jsonl line (and its published JSON Schema), and APDUs that
    carry the keys the KCVs name."""
    jsonschema.validate(line, RESULT_SCHEMA)
    assert set(line) == {"system_title", "suite", "setups"}
    assert UPPER_HEX.fullmatch(line["system_title"]) and len(line["system_title"]) == 16
    assert line["suite"] == suite and type(line["suite"]) is int
    assert [s["logical_name"] for s in line["setups"]] == EXPECTED_SETUPS[line["system_title"]]
    length = 32 if suite == 2 else 16
    for setup in line["setups"]:
        assert set(setup) == {"logical_name", "kcv", "apdus"}
        assert list(setup["kcv"]) == list(ROLES)
        assert all(KCV.fullmatch(v) for v in setup["kcv"].values()), setup["kcv"]
        assert len(setup["apdus"]) == 2
        assert all(UPPER_HEX.fullmatch(a) for a in setup["apdus"]), setup["apdus"]
        first, second = (bytes.fromhex(a) for a in setup["apdus"])
        # 1: the new KEK alone (key_id 3), wrapped under the meter's initial (transport) KEK.
        wrapped = key_transfer_entries(first, setup["logical_name"])
        assert list(wrapped) == [3]
        kek = aes_key_unwrap(transport_key, wrapped[3])
        assert len(kek) == length
        assert kcv_of(kek) == setup["kcv"]["KEK"]
        # 2: GUEK, GBEK and GAK wrapped under the new KEK.
        wrapped = key_transfer_entries(second, setup["logical_name"])
        assert sorted(wrapped) == [0, 1, 2]
        for key_id, role in KEY_IDS.items():
            key = aes_key_unwrap(kek, wrapped[key_id])
            assert len(key) == length
            assert kcv_of(key) == setup["kcv"][role]


def walk_keys(obj: Any) -> set[str]:
    """Every dictionary key anywhere in a JSON document."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in walk_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in walk_keys(v)}
    return set()


# --- init, selftest, transport keys --------------------------------------------------------------


def test_init_creates_the_root_keys_once_and_a_second_run_finds_them_present(cli: Cli) -> None:
    first = cli.json("init")
    assert {k["purpose"] for k in first["root_keys"]} == ROOT_PURPOSES
    assert {k["action"] for k in first["root_keys"]} == {"created"}
    rows_after_first = dump_database(cli.database_url)

    second = cli.json("init")
    assert {k["purpose"] for k in second["root_keys"]} == ROOT_PURPOSES
    assert [k["action"] for k in second["root_keys"]] == ["present"] * 3
    assert [k["label"] for k in second["root_keys"]] == [k["label"] for k in first["root_keys"]]
    assert dump_database(cli.database_url) == rows_after_first, "init rewrote something"


def test_selftest_passes_and_lists_the_mechanisms(cli: Cli) -> None:
    report = cli.json("selftest")
    assert report["passed"] is True
    assert report["tests"] and all(t["passed"] for t in report["tests"]), report["tests"]
    assert {"AES_KEY_WRAP", "AES_GCM", "AES_KEY_GEN"} <= set(report["mechanisms"])
    assert report["profile_mechanisms"]


def test_transport_keys_are_imported_with_the_vendors_kcv_generated_and_never_relabelled(
    cli: Cli,
) -> None:
    cli.ok("init")
    files = {
        label: write_key_file(cli.cwd / "keys", label, value)
        for label, value in TRANSPORT_KEYS.items()
    }
    proc = cli.ok("transport-key", "import", "--label", "vendor-aes128", "--key-file",
                  files["vendor-aes128"])  # fmt: skip
    assert f"KCV {kcv_of(TRANSPORT_KEYS['vendor-aes128'])}" in proc.stdout, describe(proc)
    imported = cli.json(
        "transport-key", "import", "--label", "vendor-aes256", "--key-file", files["vendor-aes256"]
    )
    assert imported["kcv"] == kcv_of(TRANSPORT_KEYS["vendor-aes256"])
    assert (imported["label"], imported["algorithm"]) == ("vendor-aes256", "AES-256")
    generated = cli.json("transport-key", "generate", "--label", "station-batch-7")
    assert (generated["algorithm"], generated["action"]) == ("AES-128", "generated")
    assert KCV.fullmatch(generated["kcv"])

    before = dump_database(cli.database_url)
    again = cli(
        "transport-key", "import", "--label", "vendor-aes128", "--key-file",
        files["vendor-aes256"], "--json",
    )  # fmt: skip
    assert again.returncode == 2, describe(again)
    assert "vendor-aes128" in stderr_json(again)["message"]
    assert dump_database(cli.database_url) == before, "a refused import changed the database"

    listed = {k["label"]: k["kcv"] for k in cli.json("transport-key", "list")}
    assert listed == {
        "vendor-aes128": kcv_of(TRANSPORT_KEYS["vendor-aes128"]),
        "vendor-aes256": kcv_of(TRANSPORT_KEYS["vendor-aes256"]),
        "station-batch-7": generated["kcv"],
    }


# --- provisioning ---------------------------------------------------------------------------


def test_provision_show_repeat_confirm_refuse_and_audit(cli: Cli) -> None:
    initialised_kms(cli)
    write_manifest(cli.cwd / "meters.csv", MANIFEST_ROWS)

    summary = cli.json("provision", "--manifest", "meters.csv", "--out", "result.jsonl")
    assert (summary["meters"], summary["generated"], summary["repeated"]) == (3, 3, 0)
    assert summary["keys"] == 4 * 4
    result = cli.cwd / "result.jsonl"
    first_bytes = result.read_bytes()
    lines = read_jsonl(result)
    assert [line["system_title"] for line in lines] == [r["system_title"] for r in MANIFEST_ROWS]
    for line, row in zip(lines, MANIFEST_ROWS, strict=True):
        check_result_line(line, int(row["suite"]), TRANSPORT_KEYS[row["initial_kek"]])

    listed = cli.json("meter", "list")
    assert [(m["system_title"], m["suite"], m["state"]) for m in listed] == [
        (r["system_title"], int(r["suite"]), "PENDING") for r in MANIFEST_ROWS
    ]
    assert {m["serial"] for m in listed} == {r["serial"] for r in MANIFEST_ROWS}
    assert not any("wrapped" in key for key in walk_keys(listed))
    for line in lines:
        show = cli.ok("meter", "show", "--system-title", line["system_title"], "--json")
        assert "wrapped" not in show.stdout
        meter = stdout_json(show)
        assert not any("wrapped" in key for key in walk_keys(meter))
        assert meter["state"] == "PENDING"
        shown = {
            s["logical_name"]: {k["role"]: (k["kcv"], k["state"], k["version"]) for k in s["keys"]}
            for s in meter["setups"]
        }
        assert shown == {
            s["logical_name"]: {role: (s["kcv"][role], "PENDING", 1) for role in ROLES}
            for s in line["setups"]
        }

    # The same manifest again while PENDING: the same keys, the same bytes, nothing new stored.
    stored = dump_database(cli.database_url)
    again = cli.json("provision", "--manifest", "meters.csv", "--out", "result.jsonl")
    assert (again["generated"], again["repeated"]) == (0, 3)
    assert result.read_bytes() == first_bytes
    assert sorted(p.name for p in cli.cwd.iterdir() if p.name.endswith(".tmp")) == []
    after = dump_database(cli.database_url)
    for table in ("meter", "security_setup", "key_version", "root_key"):
        assert after[table] == stored[table], table

    confirmed = cli.json("provision", "confirm", "--from", "result.jsonl")
    assert confirmed["activated"] == [r["system_title"] for r in MANIFEST_ROWS]
    assert confirmed["keys_activated"] == 16
    meter = cli.json("meter", "show", "--system-title", "4D4D4D0000000002")
    assert meter["state"] == "ACTIVE"
    assert meter["confirmed_at"]
    assert [k["state"] for s in meter["setups"] for k in s["keys"]] == ["ACTIVE"] * 8
    assert {m["state"] for m in cli.json("meter", "list")} == {"ACTIVE"}

    before_refusal = dump_database(cli.database_url)
    refused = cli("provision", "--manifest", "meters.csv", "--out", "again.jsonl")
    assert refused.returncode == 2, describe(refused)
    message = one_line(refused.stderr)
    assert "row 1" in message and "system_title" in message, message
    assert not (cli.cwd / "again.jsonl").exists()
    assert sorted(p.name for p in cli.cwd.iterdir() if p.name.endswith(".tmp")) == []
    assert result.read_bytes() == first_bytes
    assert dump_database(cli.database_url) == before_refusal

    checkpoint = cli.json("audit", "checkpoint")
    verified = cli.json("audit", "verify")
    assert verified["ok"] is True
    assert verified["checkpoints"] >= 1
    assert verified["head_seq"] == checkpoint["seq"] == verified["events"]


# --- --help ------------------------------------------------------------------------------------

#: Every command, and what its --help must mention (its options, or its subcommands).
HELP = {
    (): [
        "init",
        "config",
        "db",
        "selftest",
        "transport-key",
        "provision",
        "meter",
        "apdu",
        "association",
        "hls",
        "audit",
    ],
    ("init",): ["--json"],
    ("config",): ["show"],
    ("config", "show"): ["--json"],
    ("db",): ["upgrade", "status"],
    ("db", "upgrade"): ["--json"],
    ("db", "status"): ["--json"],
    ("selftest",): ["--json"],
    ("transport-key",): ["import", "generate", "list"],
    ("transport-key", "import"): ["--label", "--key-file", "--json"],
    ("transport-key", "generate"): ["--label", "--length", "--json"],
    ("transport-key", "list"): ["--json"],
    ("provision",): ["--manifest", "--out", "--json", "confirm"],
    ("provision", "confirm"): ["--system-title", "--from", "--json"],
    ("meter",): ["list", "show"],
    ("meter", "list"): ["--json"],
    ("meter", "show"): ["--system-title", "--json"],
    ("apdu",): ["protect", "verify"],
    ("apdu", "protect"): ["--system-title", "--setup", "--sc", "--apdu", "--form", "--association"],
    ("apdu", "verify"): ["--system-title", "--setup", "--apdu", "--association", "--json"],
    ("association",): ["open", "close"],
    ("association", "open"): ["--system-title", "--setup", "--sc", "--max-pdu-size", "--json"],
    ("association", "close"): ["--association", "--json"],
    ("hls",): ["challenge", "answer", "check", "secret"],
    ("hls", "challenge"): ["--mechanism", "--length", "--json"],
    ("hls", "answer"): ["--system-title", "--mechanism", "--server-challenge", "--json"],
    ("hls", "check"): ["--system-title", "--mechanism", "--client-challenge", "--response"],
    ("hls", "secret"): ["import"],
    ("hls", "secret", "import"): ["--system-title", "--setup", "--secret-file", "--json"],
    ("audit",): ["checkpoint", "verify"],
    ("audit", "checkpoint"): ["--json"],
    ("audit", "verify"): ["--json"],
}


def test_help_of_every_command_exits_0_and_names_its_options(cli: Cli) -> None:
    procs = cli.many(*[[*command, "--help"] for command in HELP])
    for (command, words), proc in zip(HELP.items(), procs, strict=True):
        assert proc.returncode == 0, describe(proc)
        assert "Usage:" in proc.stdout, describe(proc)
        missing = [w for w in words if w not in proc.stdout]
        assert not missing, f"`kms {' '.join(command)} --help` lacks {missing}\n{proc.stdout}"


def test_tables_never_cut_an_identifier(cli: Cli) -> None:
    """Piped, a table is as wide as its longest value: a 64-character label stays whole."""
    initialised_kms(cli)
    label = "vendor-" + "x" * 57
    key_file = write_key_file(cli.cwd, label, bytes(range(16)))
    cli.ok("transport-key", "import", "--label", label, "--key-file", key_file)
    listed = cli.ok("transport-key", "list").stdout
    assert any(label in line for line in listed.splitlines()), listed
