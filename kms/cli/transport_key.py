"""``kms transport-key``: the audited ceremony that brings a vendor's initial master key in."""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli._context import Context, emit_json, json_option, pass_context, run, table
from kms.db import RootKey, RootKeyPurpose
from kms.db import repository as repo
from kms.services.common import root_keys


@click.group("transport-key")
def transport_key() -> None:
    """Initial (vendor default or batch) master keys, held in the token."""


@transport_key.command("import")
@click.option("--label", required=True, help="Token label for the key (never reused).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the key in hex (16 or 32 bytes); the key never goes on the command line.",
)
@json_option
@pass_context
def import_key(ctx: Context, label: str, key_file: Path, json_output: bool) -> None:
    """Import a meter vendor's initial master key as a non-extractable token object.

    This is the one audited ceremony where plaintext key material enters the KMS
    (docs/architecture.md, invariant 1). Compare the printed check value (KCV) with the vendor's.
    """

    def body() -> None:
        value = root_keys.read_key_file(key_file)
        db = ctx.database()  # the schema gate before the token login
        row = root_keys.create_transport_key(
            ctx.hsm(), db, ctx.config.actor, label, value, len(value)
        )
        _print(row, json_output, "imported")

    run(json_output, body)


@transport_key.command("generate")
@click.option("--label", required=True, help="Token label for the key (never reused).")
@click.option(
    "--length",
    type=click.Choice(["16", "32"]),
    default="16",
    show_default=True,
    help="Key length in bytes: 16 for suites 0 and 1, 32 for suite 2.",
)
@json_option
@pass_context
def generate_key(ctx: Context, label: str, length: str, json_output: bool) -> None:
    """Generate a transport key inside the token (for meters whose vendor takes it from us)."""

    def body() -> None:
        db = ctx.database()  # the schema gate before the token login
        row = root_keys.create_transport_key(
            ctx.hsm(), db, ctx.config.actor, label, None, int(length)
        )
        _print(row, json_output, "generated")

    run(json_output, body)


@transport_key.command("list")
@json_option
@pass_context
def list_keys(ctx: Context, json_output: bool) -> None:
    """List the transport keys recorded (labels, algorithms and check values)."""

    def body() -> None:
        with ctx.database().begin() as session:
            rows = [
                root_keys.describe_transport_key(r)
                for r in repo.root_keys(session, RootKeyPurpose.TRANSPORT)
            ]
        if json_output:
            emit_json(rows)
        else:
            table(
                "Transport keys",
                ["label", "algorithm", "KCV", "created"],
                [
                    [str(r["label"]), str(r["algorithm"]), str(r["kcv"]), str(r["created_at"])]
                    for r in rows
                ],
            )

    run(json_output, body)


def _print(row: RootKey, json_output: bool, action: str) -> None:
    if json_output:
        emit_json({**root_keys.describe_transport_key(row), "action": action})
    else:
        kcv = row.check_value.hex().upper() if row.check_value else "-"
        click.echo(f"{action} transport key {row.label!r} ({row.algorithm}), KCV {kcv}")
