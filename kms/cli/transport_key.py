"""``kms transport-key``: the audited ceremony that brings a vendor's initial master key in."""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli._context import Context, Output, command, table
from kms.services.common.root_keys import read_transport_key


@click.group("transport-key")
def transport_key() -> None:
    """Initial (vendor default or batch) master keys, held in the token."""


@command(transport_key, "import")
@click.option("--label", required=True, help="Token label for the key (never reused).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the key in hex (16 or 32 bytes); the key never goes on the command line.",
)
def import_key(ctx: Context, out: Output, label: str, key_file: Path) -> None:
    """Import a meter vendor's initial master key as a non-extractable token object.

    This is the one audited ceremony where plaintext key material enters the KMS
    (docs/architecture.md, invariant 1). Compare the printed check value (KCV) with the vendor's.
    """
    value = read_transport_key(key_file)
    made = ctx.services.root_keys.create_transport_key(
        actor=ctx.actor, label=label, value=value, length=len(value)
    )
    _print(out, made, "imported")


@command(transport_key, "generate")
@click.option("--label", required=True, help="Token label for the key (never reused).")
@click.option(
    "--length",
    type=click.Choice(["16", "32"]),
    default="16",
    show_default=True,
    help="Key length in bytes: 16 for suites 0 and 1, 32 for suite 2.",
)
def generate_key(ctx: Context, out: Output, label: str, length: str) -> None:
    """Generate a transport key inside the token (for meters whose vendor takes it from us)."""
    made = ctx.services.root_keys.create_transport_key(
        actor=ctx.actor, label=label, value=None, length=int(length)
    )
    _print(out, made, "generated")


@command(transport_key, "list")
def list_keys(ctx: Context, out: Output) -> None:
    """List the transport keys recorded (labels, algorithms and check values)."""
    rows = ctx.services.root_keys.transport_keys()
    out.result(
        rows,
        lambda: table(
            "Transport keys",
            ["label", "algorithm", "KCV", "created"],
            [
                [str(r["label"]), str(r["algorithm"]), str(r["kcv"]), str(r["created_at"])]
                for r in rows
            ],
        ),
    )


def _print(out: Output, made: dict[str, object], action: str) -> None:
    out.result(
        {**made, "action": action},
        f"{action} transport key {made['label']!r} ({made['algorithm']}), KCV {made['kcv'] or '-'}",
    )
