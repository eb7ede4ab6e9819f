"""``kms apdu sign|verify-signature``: general-signing (0xDF) between the head-end and a meter.

``sign`` wraps a content (usually an APDU already ciphered with ``kms apdu protect``) for a meter
and signs it in the token with the head-end's signing key (``kms entity create --type signing``)
on the curve of the meter's suite; ``verify-signature`` checks a DF from a meter with the meter's
signing certificate (``kms cert issue``). The head-end's system title comes from kms.toml or
``KMS_CLIENT_SYSTEM_TITLE``. These commands join the ``apdu`` group when this module is imported
(by :mod:`kms.cli.main`).
"""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command, console, parse_hex, system_title_option
from kms.cli.apdu import apdu
from kms.services.vocabulary import format_system_title, parse_system_title


@command(apdu, "sign")
@system_title_option
@click.option(
    "--content", required=True, help="The content to sign (usually a ciphered APDU), hex."
)
@click.option(
    "--transaction-id",
    help="The transaction-id, hex; default: 8 bytes from the token's random number generator.",
)
def sign(
    ctx: Context,
    out: Output,
    system_title: str,
    content: str,
    transaction_id: str | None,
) -> None:
    """Sign CONTENT for the meter in a general-signing APDU: prints the APDU in hex.

    The signature (raw r || s) is made in the token with the head-end's signing key on the curve
    of the meter's suite (P-256 for suite 1, P-384 for suite 2).
    """
    title = parse_system_title(system_title)
    data = parse_hex(content, "content")
    txid = None if transaction_id is None else parse_hex(transaction_id, "transaction_id")
    signed = ctx.services.general_signing.sign(
        recipient_system_title=title, content=data, transaction_id=txid
    )
    out.result(
        {"apdu": signed.hex().upper()},
        lambda: console.print(signed.hex().upper(), highlight=False, soft_wrap=True),
    )


@command(apdu, "verify-signature")
@click.option("--apdu", "apdu_hex", required=True, help="The general-signing APDU (DF ...), hex.")
def verify_signature(ctx: Context, out: Output, apdu_hex: str) -> None:
    """Check a general-signing APDU from a meter: prints its content in hex.

    The originator must be a known meter with a valid signing certificate and the recipient this
    head-end. A signature that does not verify exits 3; a malformed APDU, an unknown meter or
    one without a valid certificate exits 2.
    """
    data = parse_hex(apdu_hex, "apdu")
    verified = ctx.services.general_signing.verify(data)
    out.result(
        {
            "content": verified.content.hex().upper(),
            "originator": format_system_title(verified.originator_system_title),
            "transaction_id": verified.transaction_id.hex().upper(),
        },
        lambda: console.print(verified.content.hex().upper(), highlight=False, soft_wrap=True),
    )
