"""docs/architecture.md, invariant 1, through the command line: no secret leaves the token in
plaintext.

The transport keys of :data:`tests.kms_fixtures.TRANSPORT_KEYS` are imported with
``kms transport-key import`` (the one audited ceremony where plaintext enters), then meters are
provisioned (and provisioned again, which unwraps the stored blobs), listed, shown, confirmed and
the audit log checkpointed and verified; a few requests are refused on the way. Afterwards the
keys' bytes -- raw, hex in either case, base64 -- must appear nowhere: not in any row of any
table (read with SQLAlchemy), not in the stdout or stderr of any command, not in result.jsonl,
and not in any file under the test's directory but the key files themselves. Neither may the
user PIN.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tests.cli.helpers import (
    Cli,
    describe,
    dump_database,
    initialised_kms,
    raw_output,
    value_bytes,
    write_text,
)
from tests.kms_fixtures import TRANSPORT_KEYS, meter_row, write_manifest

ROWS = [meter_row(1, 0), meter_row(2, 1, "0;1"), meter_row(3, 2), meter_row(4, 2, "0;1;2")]


def forms(secret: bytes) -> list[bytes]:
    """The spellings of ``secret`` searched for (hex is compared case-insensitively)."""
    return [secret, secret.hex().encode(), base64.b64encode(secret)]


def leaked(blob: bytes, secrets: dict[str, bytes]) -> list[str]:
    """The names of the secrets found in ``blob``."""
    lowered = blob.lower()
    found = []
    for name, secret in secrets.items():
        raw, hex_lower, b64 = forms(secret)
        if raw in blob or hex_lower in lowered or b64 in blob:
            found.append(name)
    return found


def test_transport_keys_and_the_pin_appear_nowhere(cli: Cli) -> None:
    key_files = initialised_kms(cli)
    write_manifest(cli.cwd / "meters.csv", ROWS)
    cli.ok("provision", "--manifest", "meters.csv", "--out", "result.jsonl")
    # A repeat run re-derives the APDUs from the stored blobs (unwrap, then wrap again).
    cli.ok("provision", "--manifest", "meters.csv", "--out", "result.jsonl", "--json")

    # Refusals that handle key material: an existing label, a 32-byte key's row on a 16-byte key,
    # and key files holding a key with a typo or cut short.
    refused = [
        cli("transport-key", "import", "--label", "vendor-aes128", "--key-file",
            key_files["vendor-aes256"]),
        cli("provision", "--manifest", write_manifest(cli.cwd / "wrong.csv", [
            {**meter_row(9, 2), "initial_kek": "vendor-aes128"}]), "--out", "wrong.jsonl"),
    ]  # fmt: skip
    value = TRANSPORT_KEYS["vendor-aes128"]
    bad_files = {
        "typo": write_text(cli.cwd / "keys" / "typo.hex", value.hex().upper()[:-1] + "G\n"),
        "short": write_text(cli.cwd / "keys" / "short.hex", value[:15].hex().upper() + "\n"),
    }
    # These never open the token, so they can run together.
    title = ROWS[1]["system_title"]
    bad_imports: list[list[str | Path]] = [
        ["transport-key", "import", "--label", f"vendor-{name}", "--key-file", path, *flag]
        for name, path in bad_files.items()
        for flag in ([], ["--json"])
    ]
    together = cli.many(
        ["meter", "list"],
        ["meter", "list", "--json"],
        ["meter", "show", "--system-title", title],
        ["meter", "show", "--system-title", title, "--json"],
        ["transport-key", "list"],
        ["transport-key", "list", "--json"],
        *bad_imports,
    )
    refused += together[6:]
    for proc in together[:6]:
        assert proc.returncode == 0, describe(proc)
    for proc in refused:
        assert proc.returncode == 2, describe(proc)
    cli.ok("provision", "confirm", "--from", "result.jsonl")
    cli.ok("audit", "checkpoint")
    cli.ok("audit", "verify")

    secrets = {f"transport key {label}": value for label, value in TRANSPORT_KEYS.items()}
    pin = cli.env["KMS_USER_PIN"].encode()
    # The search finds what it looks for: each key file holds its key.
    for label, path in key_files.items():
        assert leaked(path.read_bytes(), secrets) == [f"transport key {label}"]

    # Every row of every table.
    tables = dump_database(cli.database_url)
    for name in ("meter", "security_setup", "key_version", "root_key", "audit_event"):
        assert tables.get(name), f"table {name} is empty or missing: the search would prove nothing"
    for name, rows in tables.items():
        for row in rows:
            for column, stored in row.items():
                blob = value_bytes(stored)
                assert not leaked(blob, secrets), f"{leaked(blob, secrets)} in {name}.{column}"
                assert pin not in blob, f"the PIN is in {name}.{column}"

    # Everything every command printed, the PIN included.
    for proc in cli.runs:
        output = raw_output(proc)
        assert not leaked(output, secrets), f"{leaked(output, secrets)}\n{describe(proc)}"
        assert pin not in output, f"the PIN was printed by {proc.args}"
        for path in bad_files.values():
            assert path.read_bytes().strip().lower() not in output.lower(), describe(proc)

    # result.jsonl and every other file under the test's directory, but the key files.
    result = cli.cwd / "result.jsonl"
    assert len(result.read_text().splitlines()) == len(ROWS)
    searched = []
    for path in sorted(cli.cwd.rglob("*")):
        if not path.is_file() or path.parent == cli.cwd / "keys":
            continue
        blob = path.read_bytes()
        assert not leaked(blob, secrets), f"{leaked(blob, secrets)} in {path}"
        assert pin not in blob, f"the PIN is in {path}"
        searched.append(path.name)
    assert "result.jsonl" in searched and "meters.csv" in searched
