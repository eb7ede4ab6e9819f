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
    Output,
    command,
    console,
    parse_hex,
    setup_option,
    system_title_option,
)
from kms.errors import InputError
from kms.services.hes.hls_secret import read_hls_secret
from kms.services.vocabulary import Mechanism, parse_system_title

_MECHANISM = click.option(
    "--mechanism",
    type=click.Choice(["5", "6", "7"]),
    required=True,
    help="5: HLS-GMAC (GUEK and GAK), 6: HLS-SHA-256 (the setup's HLS secret), 7: HLS-ECDSA.",
)


@click.group("hls")
def hls() -> None:
    """HLS authentication (mechanisms 5, 6 and 7) with the meter's keys, in the token."""


#: Challenge lengths by mechanism (Green Book: 8 to 64 bytes; HLS-ECDSA signs 32 to 64).
_DEFAULT_LENGTH = {"5": 16, "6": 16, "7": 32}


def _require_challenge(value: str | None, option: str, mechanism: str) -> str:
    """Mechanisms 6 and 7 compute f() over both challenges: name the option a person left out,
    rather than let the length check say "got 0"."""
    if value is None and mechanism in ("6", "7"):
        raise InputError(
            f"mechanism {mechanism} needs {option} (it signs or hashes both challenges)",
            field=option.removeprefix("--").replace("-", "_"),
        )
    return value or ""


@command(hls, "challenge")
@click.option(
    "--mechanism",
    type=click.Choice(["5", "6", "7"]),
    help="The mechanism the challenge is for: sets the default length (16 bytes; 32 for 7).",
)
@click.option(
    "--length",
    type=click.IntRange(8, 64),
    help="Bytes, 8 to 64 (mechanism 7: 32 to 64). Default: 16, or 32 for --mechanism 7.",
)
def challenge(ctx: Context, out: Output, mechanism: str | None, length: int | None) -> None:
    """A fresh client challenge CtoS from the token's random number generator.

    Mechanism 7 (HLS-ECDSA) needs 32 to 64 bytes: give --mechanism 7 (or --length 32 or more).
    """
    if length is None:
        length = _DEFAULT_LENGTH[mechanism or "5"]
    elif mechanism == "7" and length < 32:
        raise InputError(
            "mechanism 7 (HLS-ECDSA) needs a challenge of 32 to 64 bytes", field="length"
        )
    value = ctx.services.hls_challenges.challenge(length)
    out.result(
        {"challenge": value.hex().upper()},
        lambda: console.print(value.hex().upper(), highlight=False),
    )


@command(hls, "answer")
@system_title_option
@setup_option
@_MECHANISM
@click.option("--server-challenge", required=True, help="The meter's StoC (from the AARE), hex.")
@click.option(
    "--client-challenge", help="Our CtoS (from the AARQ), hex; mechanisms 6 and 7 need it."
)
def answer(
    ctx: Context,
    out: Output,
    system_title: str,
    setup: int,
    mechanism: str,
    server_challenge: str,
    client_challenge: str | None,
) -> None:
    """f(StoC): the head-end's answer to the meter's challenge, in hex.

    Mechanism 5 uses the next invocation counter of the meter's GUEK, reserved first.
    """
    title = parse_system_title(system_title)
    stoc = parse_hex(server_challenge, "server_challenge")
    ctos = parse_hex(
        _require_challenge(client_challenge, "--client-challenge", mechanism), "client_challenge"
    )
    result = ctx.services.hls.answer(
        title, Mechanism(int(mechanism)), stoc, ctos, setup=setup, actor=ctx.actor
    )
    out.result(
        {"response": result.response.hex().upper(), "ic": result.invocation_counter},
        lambda: console.print(result.response.hex().upper(), highlight=False),
    )


@command(hls, "check")
@system_title_option
@setup_option
@_MECHANISM
@click.option("--client-challenge", required=True, help="Our CtoS (from the AARQ), hex.")
@click.option("--server-challenge", help="The meter's StoC, hex; mechanisms 6 and 7 need it.")
@click.option("--response", required=True, help="The meter's f(CtoS), hex.")
def check(
    ctx: Context,
    out: Output,
    system_title: str,
    setup: int,
    mechanism: str,
    client_challenge: str,
    server_challenge: str | None,
    response: str,
) -> None:
    """Verify the meter's f(CtoS); exits 3 if it does not verify.

    For mechanism 5 the meter's invocation counter must be above the last one accepted under
    its GUEK, and becomes the new floor.
    """
    title = parse_system_title(system_title)
    ctos = parse_hex(client_challenge, "client_challenge")
    stoc = parse_hex(
        _require_challenge(server_challenge, "--server-challenge", mechanism), "server_challenge"
    )
    f_ctos = parse_hex(response, "response")
    ic = ctx.services.hls.check(
        title, Mechanism(int(mechanism)), ctos, stoc, f_ctos, setup=setup, actor=ctx.actor
    )
    out.result(
        {"verified": True, "ic": ic},
        lambda: console.print(
            "verified" + (f" (ic {ic})" if ic is not None else ""), highlight=False
        ),
    )


@hls.group("secret")
def secret() -> None:
    """The HLS secrets of mechanism 6."""


@command(secret, "import")
@system_title_option
@setup_option
@click.option(
    "--secret-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the secret in hex (1-64 bytes); it never goes on the command line.",
)
def import_secret(
    ctx: Context, out: Output, system_title: str, setup: int, secret_file: Path
) -> None:
    """Import a meter's HLS secret: an audited ceremony (plaintext enters the KMS once).

    The secret is wrapped under the storage key at once; the new version is ACTIVE and the one
    before it RETIRED. Compare the printed check value with the maker's.
    """
    title = parse_system_title(system_title)
    value = read_hls_secret(secret_file)
    stored = ctx.services.hls_secrets.import_secret(title, setup, value, actor=ctx.actor)
    out.result(
        stored.__dict__,
        lambda: console.print(
            f"imported HLS secret v{stored.version} of {stored.system_title} "
            f"{stored.logical_name}: {stored.length} bytes, KCV {stored.kcv}",
            highlight=False,
        ),
    )
