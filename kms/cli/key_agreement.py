"""``kms key-agreement``: security setup method 3 with a suite 1 or 2 meter, in two steps."""

from __future__ import annotations

import click

from kms.cli._context import (
    Context,
    Output,
    command,
    parse_hex,
    setup_option,
    system_title_option,
)
from kms.errors import InputError
from kms.services.provisioning.key_agreement import ROLE_OF_KEY_ID
from kms.services.vocabulary import KeyId, parse_system_title

_KEY_IDS = {role.value: key_id for key_id, role in ROLE_OF_KEY_ID.items()}


@click.group("key-agreement")
def key_agreement_group() -> None:
    """Agree GUEK, GBEK, GAK or KEK with a meter (Ephemeral Unified Model, ECDH in the token)."""


@command(key_agreement_group, "start")
@system_title_option
@setup_option
@click.option(
    "--keys",
    default="GUEK,GBEK,GAK",
    show_default=True,
    help="Comma-separated keys to agree: GUEK, GBEK, GAK, KEK.",
)
def start(ctx: Context, out: Output, system_title: str, setup: int, keys: str) -> None:
    """Make the key_agreement action-request for the station to send to the meter.

    Needs the KMS's signing key for KMS_CLIENT_SYSTEM_TITLE on the meter's curve (kms entity
    create) and the meter's signing certificate (kms cert issue). Prints a handle: give it to
    `kms key-agreement complete` with the meter's answer within the hour.
    """
    title = parse_system_title(system_title)
    key_ids = _key_ids(keys)
    started = ctx.services.key_agreements.start(title, key_ids, actor=ctx.actor, setup=setup)

    def text() -> None:
        click.echo(f"handle {started.handle} (expires {started.expires_at.isoformat()})")
        click.echo(started.apdu.hex().upper())

    out.result(started.to_dict(), text)


def _key_ids(text: str) -> list[KeyId]:
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _KEY_IDS]
    if unknown or not names:
        raise InputError(
            f"unknown key {', '.join(unknown) or '(none)'}; expected GUEK, GBEK, GAK or KEK",
            field="keys",
        )
    return [_KEY_IDS[n] for n in names]


@command(key_agreement_group, "complete")
@click.option("--handle", required=True, help="The handle `start` printed.")
@click.option(
    "--response", required=True, help="The meter's action-response (or its return data), hex."
)
def complete(ctx: Context, out: Output, handle: str, response: str) -> None:
    """Check the meter's signed ephemeral keys and store the agreed keys (PENDING until
    `kms provision confirm`)."""
    data = parse_hex(response, "response")
    info = ctx.services.key_agreements.complete(handle, data, actor=ctx.actor)

    def text() -> None:
        for key in info["keys"]:  # type: ignore[attr-defined]
            click.echo(
                f"{key['role']} version {key['version']} agreed (KCV {key['kcv']}, "
                f"{key['algorithm']}, KDF {info['kdf']})"
            )

    out.result(info, text)


@command(key_agreement_group, "cancel")
@click.option("--handle", required=True, help="The handle `start` printed.")
def cancel(ctx: Context, out: Output, handle: str) -> None:
    """Give up a pending key agreement; its ephemeral keys are destroyed in the token."""
    ctx.services.key_agreements.cancel(handle, actor=ctx.actor)
    out.result({"handle": handle, "state": "CANCELLED"}, f"key agreement {handle} cancelled")
