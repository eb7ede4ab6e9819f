"""``kms key-agreement``: security setup method 3 with a suite 1 or 2 meter, in two steps."""

from __future__ import annotations

import click

from kms.cli._context import (
    Context,
    emit_json,
    json_option,
    parse_hex,
    pass_context,
    run,
    setup_option,
    system_title_option,
)
from kms.dlms.key_transfer import KeyId
from kms.dlms.system_title import parse_system_title
from kms.errors import InputError
from kms.services.provisioning import key_agreement

_KEY_IDS = {role.value: key_id for key_id, role in key_agreement.ROLE_OF_KEY_ID.items()}


@click.group("key-agreement")
def key_agreement_group() -> None:
    """Agree GUEK, GBEK, GAK or KEK with a meter (Ephemeral Unified Model, ECDH in the token)."""


@key_agreement_group.command("start")
@system_title_option
@setup_option
@click.option(
    "--keys",
    default="GUEK,GBEK,GAK",
    show_default=True,
    help="Comma-separated keys to agree: GUEK, GBEK, GAK, KEK.",
)
@json_option
@pass_context
def start(ctx: Context, system_title: str, setup: int, keys: str, json_output: bool) -> None:
    """Make the key_agreement action-request for the station to send to the meter.

    Needs the KMS's signing key for KMS_CLIENT_SYSTEM_TITLE on the meter's curve (kms entity
    create) and the meter's signing certificate (kms cert issue). Prints a handle: give it to
    `kms key-agreement complete` with the meter's answer within the hour.
    """

    def body() -> None:
        title = parse_system_title(system_title)
        key_ids = _key_ids(keys)
        db = ctx.database()
        started = key_agreement.start(
            ctx.hsm(), db, ctx.config, ctx.config.actor, title, key_ids, setup=setup
        )
        if json_output:
            emit_json(started.to_dict())
        else:
            click.echo(f"handle {started.handle} (expires {started.expires_at.isoformat()})")
            click.echo(started.apdu.hex().upper())

    run(json_output, body)


def _key_ids(text: str) -> list[KeyId]:
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _KEY_IDS]
    if unknown or not names:
        raise InputError(
            f"unknown key {', '.join(unknown) or '(none)'}; expected GUEK, GBEK, GAK or KEK",
            field="keys",
        )
    return [_KEY_IDS[n] for n in names]


@key_agreement_group.command("complete")
@click.option("--handle", required=True, help="The handle `start` printed.")
@click.option(
    "--response", required=True, help="The meter's action-response (or its return data), hex."
)
@json_option
@pass_context
def complete(ctx: Context, handle: str, response: str, json_output: bool) -> None:
    """Check the meter's signed ephemeral keys and store the agreed keys (PENDING until
    `kms provision confirm`)."""

    def body() -> None:
        data = parse_hex(response, "response")
        db = ctx.database()
        info = key_agreement.complete(ctx.hsm(), db, ctx.config, ctx.config.actor, handle, data)
        if json_output:
            emit_json(info)
        else:
            for key in info["keys"]:  # type: ignore[attr-defined]
                click.echo(
                    f"{key['role']} version {key['version']} agreed (KCV {key['kcv']}, "
                    f"{key['algorithm']}, KDF {info['kdf']})"
                )

    run(json_output, body)


@key_agreement_group.command("cancel")
@click.option("--handle", required=True, help="The handle `start` printed.")
@json_option
@pass_context
def cancel(ctx: Context, handle: str, json_output: bool) -> None:
    """Give up a pending key agreement; its ephemeral keys are destroyed in the token."""

    def body() -> None:
        db = ctx.database()
        key_agreement.cancel(ctx.hsm(), db, ctx.config.actor, handle)
        if json_output:
            emit_json({"handle": handle, "state": "CANCELLED"})
        else:
            click.echo(f"key agreement {handle} cancelled")

    run(json_output, body)
