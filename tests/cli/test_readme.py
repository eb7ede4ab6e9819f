"""The README's examples run as written: the station's Python example against a real token and
database, through the installed package's API."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from kms.cli.main import cli as kms_cli
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


def _pki_commands() -> list[list[str]]:
    """The `kms ...` lines of the README's PKI shell block, each split as a shell would."""
    text = README.read_text()
    match = re.search(r"<!-- readme-commands: pki -->\n```sh\n(.*?)```", text, re.S)
    assert match, "README.md has no shell block marked readme-commands: pki"
    lines = [line.split("  #")[0].strip() for line in match.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("kms ")]


def test_every_command_and_option_of_the_readme_pki_block_exists() -> None:
    commands = _pki_commands()
    assert commands
    named: list[str] = []
    for words in commands:
        command: click.Command = kms_cli
        path = ["kms"]
        rest = words[1:]
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            sub = command.get_command(click.Context(command), rest[0])
            assert sub is not None, f"README: `{' '.join(path)}` has no subcommand {rest[0]!r}"
            command, path, rest = sub, [*path, rest[0]], rest[1:]
        assert not isinstance(command, click.Group), f"README: `{' '.join(words)}` names a group"
        options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        for word in rest:
            if word.startswith("--"):
                option = word.split("=")[0]
                assert option in options, f"README: `{' '.join(path)}` has no option {option}"
        if arguments and isinstance(arguments[0].type, click.Choice):
            assert rest[0] in arguments[0].type.choices, f"README: {' '.join(words)}"
        named.append(" ".join(path))
    # Every ceremony appears as it is run, in order: officers, then the root, then the rest.
    for needed in ("ca create-root", "ca create-issuing", "ca rotate", "ca create-backup-key",
                   "ca backup", "ca restore", "officer add", "ceremony approve"):  # fmt: skip
        assert f"kms {needed}" in named, needed
    first = named.index
    assert first("kms officer add") < first("kms ca create-root") < first("kms ca create-issuing")
    assert first("kms ca create-backup-key") < first("kms ca backup") < first("kms ca restore")
    joined = [" ".join(w) for w in commands]
    assert any("add-officer" in c and "--officer-key" in c for c in joined)
    assert any("backup-ca-key" in c and "--wrapping-key-kcv" in c for c in joined)
    assert any(c.startswith("kms officer add") and "--request" in c for c in joined)


def test_the_readme_names_the_pki_settings_and_the_csr_hash_before_they_are_needed() -> None:
    text = README.read_text()
    section = text[text.index("### PKI (suites 1 and 2)") :]
    assert "KMS_PKI_ORGANIZATION" in text[: text.index("kms ca create-root")]
    assert "ecdsa-with-SHA384" in section and "P-384" in section
    help_text = CliRunner().invoke(kms_cli, ["cert", "issue", "--help"]).output
    assert "ecdsa-with-SHA384" in " ".join(help_text.split())
