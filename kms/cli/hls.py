"""``kms hls``: HLS authentication of the head-end to a meter (mechanisms 5, 6 and 7), in the token.

``challenge`` makes CtoS, ``answer`` computes f(StoC) for the meter's challenge and ``check``
verifies the meter's f(CtoS); ``secret import`` brings a meter's mechanism-6 secret in (an
audited ceremony). Mechanism 7 (HLS-ECDSA) signs with the head-end's signing key (``kms entity
create --type signing``) and verifies with the meter's signing certificate (``kms cert issue``).
"""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli._context import (
    Context,
    console,
    emit_json,
    json_option,
    parse_hex,
    pass_context,
    run,
    setup_option,
    system_title_option,
)
from kms.dlms.hls import Mechanism
from kms.dlms.system_title import parse_system_title
from kms.services.hes.hls import TokenHlsAuthentication, hls_factory
from kms.services.hes.hls_secret import import_hls_secret, read_secret_file

_MECHANISM = click.option(
    "--mechanism",
    type=click.Choice(["5", "6", "7"]),
    required=True,
    help="5: HLS-GMAC (GUEK and GAK), 6: HLS-SHA-256 (the setup's HLS secret), 7: HLS-ECDSA.",
)


@click.group("hls")
def hls() -> None:
    """HLS authentication (mechanisms 5, 6 and 7) with the meter's keys, in the token."""


@hls.command("challenge")
@click.option(
    "--length", type=click.IntRange(8, 64), default=16, show_default=True, help="Bytes (8-64)."
)
@json_option
@pass_context
def challenge(ctx: Context, length: int, json_output: bool) -> None:
    """A fresh client challenge CtoS from the token's random number generator."""

    def body() -> None:
        value = ctx.hsm().random(length)
        if json_output:
            emit_json({"challenge": value.hex().upper()})
        else:
            console.print(value.hex().upper(), highlight=False)

    run(json_output, body)


@hls.command("answer")
@system_title_option
@setup_option
@_MECHANISM
@click.option("--server-challenge", required=True, help="The meter's StoC (from the AARE), hex.")
@click.option(
    "--client-challenge", help="Our CtoS (from the AARQ), hex; mechanisms 6 and 7 need it."
)
@json_option
@pass_context
def answer(
    ctx: Context,
    system_title: str,
    setup: int,
    mechanism: str,
    server_challenge: str,
    client_challenge: str | None,
    json_output: bool,
) -> None:
    """f(StoC): the head-end's answer to the meter's challenge, in hex.

    Mechanism 5 uses the next invocation counter of the meter's GUEK, reserved first.
    """

    def body() -> None:
        title = parse_system_title(system_title)
        stoc = parse_hex(server_challenge, "server_challenge")
        ctos = parse_hex(client_challenge or "", "client_challenge")
        result = _service(ctx).answer(
            title, Mechanism(int(mechanism)), stoc, ctos, setup=setup, actor=ctx.actor
        )
        if json_output:
            emit_json({"response": result.response.hex().upper(), "ic": result.invocation_counter})
        else:
            console.print(result.response.hex().upper(), highlight=False)

    run(json_output, body)


@hls.command("check")
@system_title_option
@setup_option
@_MECHANISM
@click.option("--client-challenge", required=True, help="Our CtoS (from the AARQ), hex.")
@click.option("--server-challenge", help="The meter's StoC, hex; mechanisms 6 and 7 need it.")
@click.option("--response", required=True, help="The meter's f(CtoS), hex.")
@json_option
@pass_context
def check(
    ctx: Context,
    system_title: str,
    setup: int,
    mechanism: str,
    client_challenge: str,
    server_challenge: str | None,
    response: str,
    json_output: bool,
) -> None:
    """Verify the meter's f(CtoS); exits 3 if it does not verify.

    For mechanism 5 the meter's invocation counter must be above the last one accepted under
    its GUEK, and becomes the new floor.
    """

    def body() -> None:
        title = parse_system_title(system_title)
        ctos = parse_hex(client_challenge, "client_challenge")
        stoc = parse_hex(server_challenge or "", "server_challenge")
        f_ctos = parse_hex(response, "response")
        ic = _service(ctx).check(
            title, Mechanism(int(mechanism)), ctos, stoc, f_ctos, setup=setup, actor=ctx.actor
        )
        if json_output:
            emit_json({"verified": True, "ic": ic})
        else:
            console.print("verified" + (f" (ic {ic})" if ic is not None else ""), highlight=False)

    run(json_output, body)


@hls.group("secret")
def secret() -> None:
    """The HLS secrets of mechanism 6."""


@secret.command("import")
@system_title_option
@setup_option
@click.option(
    "--secret-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the secret in hex (1-64 bytes); it never goes on the command line.",
)
@json_option
@pass_context
def import_secret(
    ctx: Context, system_title: str, setup: int, secret_file: Path, json_output: bool
) -> None:
    """Import a meter's HLS secret: an audited ceremony (plaintext enters the KMS once).

    The secret is wrapped under the storage key at once; the new version is ACTIVE and the one
    before it RETIRED. Compare the printed check value with the maker's.
    """

    def body() -> None:
        title = parse_system_title(system_title)
        value = read_secret_file(secret_file)
        db = ctx.database()
        stored = import_hls_secret(ctx.hsm(), db, ctx.config.actor, title, setup, value)
        if json_output:
            emit_json(stored.__dict__)
        else:
            console.print(
                f"imported HLS secret v{stored.version} of {stored.system_title} "
                f"{stored.logical_name}: {stored.length} bytes, KCV {stored.kcv}",
                highlight=False,
            )

    run(json_output, body)


def _service(ctx: Context) -> TokenHlsAuthentication:
    # The invocation's keys (closed with it): mechanism 5 shares the APDU service's counters.
    return hls_factory(ctx.apdu_service().keys, ctx.config)
