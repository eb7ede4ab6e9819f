"""``kms entity``: the KMS's own key pairs (HES client, data concentrators, site keys)."""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command
from kms.cli._context import table as print_table
from kms.services.pki.end_entities import PURPOSES
from kms.services.vocabulary import CertificateType, SecuritySuite, parse_system_title


@click.group("entity")
def entity() -> None:
    """The KMS's own end entities: key pairs in the token, certificates from the issuing CA."""


@command(entity, "create")
@click.option(
    "--purpose",
    type=click.Choice(PURPOSES),
    default="hes-client",
    show_default=True,
    help="What the key is for (recorded in the audit trail).",
)
@click.option(
    "--system-title",
    help="The entity's system title (16 hex digits); default: KMS_CLIENT_SYSTEM_TITLE.",
)
@click.option("--suite", type=click.Choice(["1", "2"]), required=True, help="1: P-256, 2: P-384.")
@click.option(
    "--type",
    "cert_type",
    type=click.Choice(["signing", "key-agreement", "tls"]),
    default="signing",
    show_default=True,
)
def create(
    ctx: Context,
    out: Output,
    purpose: str,
    system_title: str | None,
    suite: str,
    cert_type: str,
) -> None:
    """Generate a key pair in the token and have the suite's issuing CA certify it.

    Signing keys sign only (HLS-ECDSA, general-signing, ephemeral keys of key agreement);
    key-agreement keys derive only (static ECDH). A second key of the same type is a new
    version; the newest valid one is used.
    """
    title = (
        parse_system_title(system_title)
        if system_title
        else ctx.config.require_client_system_title()
    )
    info = ctx.services.end_entities.create(
        actor=ctx.actor,
        system_title=title,
        suite=SecuritySuite(int(suite)),
        certificate_type=CertificateType.parse(cert_type),
        purpose=purpose,
    )

    def text() -> None:
        click.echo(
            f"{info['type']} key {info['key_label']} for {info['system_title']} "
            f"({purpose}), certificate {info['serial']} from {info['issuer']}"
        )
        click.echo(str(info["certificate"]), nl=False)

    out.result(info, text)


@command(entity, "list")
def list_entities(ctx: Context, out: Output) -> None:
    """List the KMS's own certificates (those whose key is in the token)."""
    rows = ctx.services.end_entities.list()
    out.result(
        rows,
        lambda: print_table(
            "KMS end entities",
            ["system title", "type", "curve", "serial", "key label", "not after"],
            [
                [
                    str(r["system_title"]),
                    str(r["type"]),
                    str(r["curve"]),
                    str(r["serial"]),
                    str(r["key_label"]),
                    str(r["not_after"])[:10],
                ]
                for r in rows
            ],
        ),
    )
