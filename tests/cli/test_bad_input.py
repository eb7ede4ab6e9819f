"""Bad input to the ``kms`` command (docs/architecture.md, invariant 7), black box.

Every case checks four things: the exit status (2 for bad input or usage, 4 for a wrong PIN), a
message that names the problem (for a manifest: the row, counted from 1 for the first meter,
and the field), a ``--json`` error object with ``error`` and ``message``, and that NOTHING was
written: no result file and no temporary file in the output directory, and every table of the
database exactly as before (read with SQLAlchemy, not through the KMS).

The bad manifests share one initialised KMS (a CLI start-up costs ~0.5 s) and are run as
subtests, each reported on its own: the KMS holds root keys, a 16-byte transport key and one
ACTIVE meter, and every manifest starts with a good new meter, so a KMS that wrote row by row
would leave it behind.

To keep the suite quick, the plain and the ``--json`` run of a refused command go concurrently
when neither opens the token (``together=True``). Two processes opening one SoftHSM2 token at the
same instant sometimes fail with "no token labelled ..." (exit 4), so those run one after the
other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import (
    Cli,
    describe,
    dump_database,
    initialised_kms,
    one_line,
    raw_output,
    stderr_json,
    write_key_file,
    write_text,
)
from tests.kms_fixtures import TRANSPORT_KEYS

HEADER = "system_title,suite,initial_kek,serial,setups\n"
TITLE_A = "4D4D4D00000000AA"  # provisioned and confirmed before the bad manifests
TITLE_B = "4D4D4D0000000002"
GOOD = "4D4D4D0000000001,0,vendor-aes128,SN1,0\n"
MANIFEST = "meters.csv"
OUT = Path("out") / "result.jsonl"


def provision_args(manifest: str = MANIFEST, out: Path = OUT) -> list[str]:
    return ["provision", "--manifest", manifest, "--out", str(out)]


def assert_refused(
    cli: Cli,
    args: list[str],
    *,
    status: int,
    names: list[str],
    env: dict[str, str] | None = None,
    together: bool = False,
) -> dict[str, object]:
    """Run ``args`` plainly and with ``--json``: both refused with ``status``, naming ``names``,
    and nothing in the directory of ``--out`` (if any). Returns the JSON error object."""
    out_dir = cli.cwd / args[args.index("--out") + 1] if "--out" in args else None
    if out_dir is not None:
        out_dir = out_dir.parent
        out_dir.mkdir(parents=True, exist_ok=True)
    if together:
        plain, machine = cli.many(args, [*args, "--json"], env=env)
    else:
        plain, machine = cli(*args, env=env), cli(*args, "--json", env=env)
    assert plain.returncode == status, describe(plain)
    assert machine.returncode == status, describe(machine)
    message = one_line(plain.stderr)
    assert message.startswith("error:"), describe(plain)
    error = stderr_json(machine)
    assert machine.stdout == "", describe(machine)
    for name in names:
        assert name in message, f"{name!r} not in the message\n{describe(plain)}"
        assert name in str(error["message"]), f"{name!r} not in the JSON message\n{error}"
    if out_dir is not None:
        leftovers = sorted(p.name for p in out_dir.iterdir())
        assert leftovers == [], f"files left in the output directory: {leftovers}"
    return error


# --- manifests ---------------------------------------------------------------------------------

#: case -> (manifest text, words the error must name).
BAD_MANIFESTS = {
    "too-many-fields": (HEADER + GOOD + f"{TITLE_B},0,vendor-aes128,SN2,0,surplus\n", ["row 2"]),
    "system-title-not-hex": (
        HEADER + GOOD + "4D4D4D00000000ZZ,0,vendor-aes128,SN2,0\n",
        ["row 2", "system_title"],
    ),
    "system-title-7-bytes": (
        HEADER + GOOD + "4D4D4D00000002,0,vendor-aes128,SN2,0\n",
        ["row 2", "system_title"],
    ),
    "system-title-9-bytes": (
        HEADER + GOOD + "4D4D4D000000000002,0,vendor-aes128,SN2,0\n",
        ["row 2", "system_title"],
    ),
    "duplicate-in-file": (
        HEADER + GOOD + "4D4D4D0000000001,0,vendor-aes128,SN-other,0\n",
        ["row 2", "system_title"],
    ),
    "duplicate-in-database": (
        HEADER + GOOD + f"{TITLE_A},0,vendor-aes128,SN-A,0\n",
        ["row 2", "system_title", TITLE_A],
    ),
    "unknown-suite": (HEADER + GOOD + f"{TITLE_B},3,vendor-aes128,SN2,0\n", ["row 2", "suite"]),
    "unknown-initial-kek": (
        HEADER + GOOD + f"{TITLE_B},0,vendor-nobody,SN2,0\n",
        ["row 2", "initial_kek", "vendor-nobody"],
    ),
    "transport-key-too-short-for-suite-2": (
        HEADER + GOOD + f"{TITLE_B},2,vendor-aes128,SN2,0\n",
        ["row 2", "initial_kek"],
    ),
    "header-lacks-initial_kek": (
        "system_title,suite,serial\n4D4D4D0000000001,0,SN1\n",
        ["initial_kek"],
    ),
    "empty-file": ("", [MANIFEST]),
    "header-only": (HEADER, [MANIFEST]),
}


def test_a_bad_manifest_is_refused_naming_row_and_field_and_nothing_is_written(
    cli: Cli, subtests: pytest.Subtests
) -> None:
    initialised_kms(cli, ["vendor-aes128"])
    write_text(cli.cwd / "a.csv", HEADER + f"{TITLE_A},0,vendor-aes128,SN-A,0\n")
    cli.ok("provision", "--manifest", "a.csv", "--out", "a.jsonl")
    cli.ok("provision", "confirm", "--system-title", TITLE_A)

    for case, (text, names) in BAD_MANIFESTS.items():
        with subtests.test(case=case):
            manifest = write_text(cli.cwd / case / MANIFEST, text)
            before = dump_database(cli.database_url)

            args = provision_args(str(manifest.relative_to(cli.cwd)), Path(case, "out", OUT.name))
            assert_refused(cli, args, status=2, names=names)

            after = dump_database(cli.database_url)
            assert after == before
            assert [m["system_title"].hex().upper() for m in after["meter"]] == [TITLE_A]


# --- the KMS not ready -------------------------------------------------------------------------


def test_provisioning_on_an_uninitialised_token_names_kms_init(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    write_text(cli.cwd / MANIFEST, HEADER + GOOD)
    before = dump_database(cli.database_url)

    assert_refused(cli, provision_args(), status=2, names=["kms init"])

    assert dump_database(cli.database_url) == before


def test_a_wrong_pin_is_refused_with_exit_4_and_no_pin_is_ever_printed(cli: Cli) -> None:
    initialised_kms(cli, ["vendor-aes128"])
    write_text(cli.cwd / MANIFEST, HEADER + GOOD)
    right_pin = cli.env["KMS_USER_PIN"]
    wrong_pin = "wr0ng-" + right_pin[::-1]
    wrong = {"KMS_USER_PIN": wrong_pin}
    before = dump_database(cli.database_url)

    error = assert_refused(cli, provision_args(), status=4, names=["PIN"], env=wrong)
    assert str(error["error"]).startswith("hsm")
    generate = cli("transport-key", "generate", "--label", "never-made", "--json", env=wrong)
    assert generate.returncode == 4, describe(generate)
    stderr_json(generate)

    assert dump_database(cli.database_url) == before
    for proc in cli.runs:
        for pin in (right_pin, wrong_pin):
            assert pin.encode() not in raw_output(proc), f"a PIN was printed by {proc.args}"


#: Every command that needs the schema (all but ``init`` and ``db upgrade``; ``selftest`` and
#: ``db status`` do not read the tables).
NEEDS_SCHEMA = {
    "provision": provision_args(),
    "provision-confirm": ["provision", "confirm", "--system-title", TITLE_B],
    "meter-list": ["meter", "list"],
    "meter-show": ["meter", "show", "--system-title", TITLE_B],
    "transport-key-import": [
        "transport-key", "import", "--label", "vendor-aes128", "--key-file",
        "keys/vendor-aes128.hex",
    ],
    "transport-key-generate": ["transport-key", "generate", "--label", "station-batch"],
    "transport-key-list": ["transport-key", "list"],
    "audit-checkpoint": ["audit", "checkpoint"],
    "audit-verify": ["audit", "verify"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(NEEDS_SCHEMA))
def test_a_database_that_is_not_migrated_is_refused_naming_kms_db_upgrade(
    cli: Cli, command: str
) -> None:
    write_text(cli.cwd / MANIFEST, HEADER + GOOD)
    write_key_file(cli.cwd / "keys", "vendor-aes128", TRANSPORT_KEYS["vendor-aes128"])

    args = NEEDS_SCHEMA[command]
    together = args[0] == "meter" or args[:2] == ["transport-key", "list"]
    assert_refused(cli, args, status=2, names=["kms db upgrade"], together=together)

    assert dump_database(cli.database_url) == {}, "a refused command created tables"


# --- transport key files -----------------------------------------------------------------------

BAD_KEY_FILES = {
    "not-hex": ("5A17C0DE5A17C0DE5A17C0DE5A17C0ZZ\n", ["hexadecimal"]),
    "15-bytes": ("5A17C0DE5A17C0DE5A17C0DE5A17C0\n", ["15"]),
}


@pytest.mark.parametrize("case", list(BAD_KEY_FILES))
def test_a_bad_transport_key_file_is_refused_and_nothing_is_written(cli: Cli, case: str) -> None:
    text, names = BAD_KEY_FILES[case]
    cli.ok("init")
    key_file = write_text(cli.cwd / "keys" / "vendor.hex", text)
    before = dump_database(cli.database_url)

    args = ["transport-key", "import", "--label", "vendor", "--key-file", "keys/vendor.hex"]
    # The key file is read before the token is opened, so the two runs can go together.
    assert_refused(cli, args, status=2, names=["vendor.hex", *names], together=True)

    assert dump_database(cli.database_url) == before
    for proc in cli.runs[-2:]:
        assert text.strip().encode() not in raw_output(proc), "the key file was echoed"
    # Nothing went into the token either: the label is still free.
    write_key_file(key_file.parent, "vendor", TRANSPORT_KEYS["vendor-aes128"])
    cli.ok(*args)
