"""``kms association open|close``: application associations with a dedicated key.

``open`` makes a dedicated key in the token and prints the glo-initiate-request (the AARQ's
user-information) that carries it to the meter, ciphered under the GUEK, with the handle that
``kms apdu protect|verify --association`` then use; ``close`` wipes the stored key.
"""

from __future__ import annotations

import click

from kms.cli._context import (
    Context,
    Output,
    command,
    console,
    setup_option,
    system_title_option,
)
from kms.cli.apdu import parse_security_control
from kms.services.vocabulary import parse_system_title


@click.group("association")
def association() -> None:
    """Application associations whose APDUs use a dedicated key (ded- forms)."""


@command(association, "open")
@system_title_option
@setup_option
@click.option(
    "--sc",
    "security_control",
    default="0x30",
    show_default=True,
    help="Security control of the glo-initiate-request (it must ask for encryption).",
)
@click.option(
    "--max-pdu-size",
    type=click.IntRange(0, 0xFFFF),
    default=0xFFFF,
    show_default=True,
    help="client-max-receive-pdu-size proposed in the InitiateRequest.",
)
def open_association(
    ctx: Context,
    out: Output,
    system_title: str,
    setup: int,
    security_control: str,
    max_pdu_size: int,
) -> None:
    """Make a dedicated key and print the glo-initiate-request that carries it.

    Prints the association's handle and the APDU (hex). The dedicated key's bytes exist on the
    host only while the request is built (the HSM profile's dedicated_key_on_host, audited).
    """
    title = parse_system_title(system_title)
    sc = parse_security_control(security_control)
    opened = ctx.services.associations.open(
        title, sc, setup=setup, max_receive_pdu_size=max_pdu_size, actor=ctx.actor
    )

    def text() -> None:
        console.print(f"association {opened.handle}", highlight=False)
        console.print(opened.apdu.hex().upper(), highlight=False, soft_wrap=True)

    out.result(opened.to_json(), text)


@command(association, "close")
@click.option("--association", "handle", required=True, help="The association's handle.")
def close_association(ctx: Context, out: Output, handle: str) -> None:
    """Close an association: its stored dedicated key is wiped and never used again."""
    ctx.services.associations.close(handle, actor=ctx.actor)
    out.result(
        {"association": handle, "state": "CLOSED"},
        lambda: console.print(f"association {handle} closed", highlight=False),
    )
