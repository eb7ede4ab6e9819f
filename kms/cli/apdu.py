"""``kms apdu protect|verify``: cipher an APDU for a meter, or check and decipher its answer.

Every cryptographic step runs in the token; the head-end's system title comes from kms.toml or
``KMS_CLIENT_SYSTEM_TITLE``. One command protects one APDU, so it reserves exactly one invocation
counter (a long-running head-end uses :mod:`kms.services.hes.protection` and reserves them in
blocks).
"""

from __future__ import annotations

import click

from kms.cli._context import (
    Context,
    Output,
    command,
    console,
    err_console,
    parse_hex,
    setup_option,
    system_title_option,
)
from kms.errors import InputError
from kms.services.hes.protection import Form
from kms.services.vocabulary import parse_system_title

_ASSOCIATION = click.option(
    "--association",
    help="Handle of an open association (`kms association open`): its dedicated key ciphers "
    "ded- and general-ded- APDUs.",
)


@click.group("apdu")
def apdu() -> None:
    """Protect and verify xDLMS APDUs with a meter's keys, inside the token."""


@command(apdu, "protect")
@system_title_option
@setup_option
@click.option(
    "--sc",
    "security_control",
    required=True,
    help="Security control byte, e.g. 0x30 (suite 0, authenticated and encrypted), 0x10 "
    "(authenticated), 0x20 (encrypted), 0x70 (broadcast key); 0x.. is hex, else decimal.",
)
@click.option("--apdu", "apdu_hex", required=True, help="The plain APDU in hex.")
@click.option(
    "--form",
    type=click.Choice([f.value for f in Form]),
    default=Form.GLO.value,
    show_default=True,
    help="glo: service-specific glo- APDU; general-glo: general-glo-ciphering (0xDB) with the "
    "head-end's system title; ded / general-ded: the same with the dedicated key of --association.",
)
@_ASSOCIATION
def protect(
    ctx: Context,
    out: Output,
    system_title: str,
    setup: int,
    security_control: str,
    apdu_hex: str,
    form: str,
    association: str | None,
) -> None:
    """Cipher APDU for the meter: prints the ciphered APDU in hex.

    The key is the meter's ACTIVE GUEK (GBEK when SC bit 6 is set), with its GAK in the AAD; the
    invocation counter is reserved in the database first, so it is never used twice.
    """
    title = parse_system_title(system_title)
    sc = parse_security_control(security_control)
    plain = parse_hex(apdu_hex, "apdu")
    result = ctx.services.apdus().protect(
        title,
        plain,
        sc,
        setup=setup,
        form=Form(form),
        association=association,
        actor=ctx.actor,
    )
    out.result(
        result.to_json(),
        lambda: console.print(result.apdu.hex().upper(), highlight=False, soft_wrap=True),
    )


@command(apdu, "verify")
@click.option(
    "--system-title", required=True, help="The meter's system title (16 hex digits): the sender."
)
@setup_option
@click.option("--apdu", "apdu_hex", required=True, help="The ciphered APDU from the meter, hex.")
@_ASSOCIATION
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Accept an encryption-only APDU (SC 0x2s): it carries no tag, so anyone could have "
    "made it. Only where the meter's security policy is encryption only.",
)
def verify(
    ctx: Context,
    out: Output,
    system_title: str,
    setup: int,
    apdu_hex: str,
    association: str | None,
    allow_unauthenticated: bool,
) -> None:
    """Check and decipher an APDU from the meter: prints the plain APDU and its IC.

    The tag is checked in the token and the invocation counter must be above the last one
    accepted from this meter under that key; only then is the new floor stored. A failure exits
    3 (tag, replayed counter) or 2 (malformed APDU); with --json the error carries the DLMS
    exception-response a meter would send for it, where the Green Book defines one.
    """
    title = parse_system_title(system_title)
    ciphered = parse_hex(apdu_hex, "apdu")
    result = ctx.services.apdus().verify(
        title,
        ciphered,
        setup=setup,
        association=association,
        allow_unauthenticated=allow_unauthenticated,
        actor=ctx.actor,
    )

    def text() -> None:
        console.print(result.apdu.hex().upper(), highlight=False, soft_wrap=True)
        console.print(f"ic {result.invocation_counter}", highlight=False)
        if not result.authenticated:
            err_console.print(
                "warning: encryption only, no tag: the APDU is not authenticated",
                highlight=False,
            )

    out.result(result.to_json(), text)


def parse_security_control(text: str) -> int:
    """A security control byte written as 0x30 or 48."""
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise InputError(f"not a number: {text[:20]!r} (write 0x30 or 48)", field="sc") from None
    if not 0 <= value <= 0xFF:
        raise InputError(f"a security control byte is 0..255, got {value}", field="sc")
    return value
