"""Entry point of the ``kms`` command.

Exit statuses: 0 success, 1 unexpected failure, 2 usage error (bad input, unknown meter, schema
behind), 3 cryptographic failure, 4 token failure (PIN, token absent), 5 database failure,
6 integrity failure (audit chain). See :mod:`kms.errors`.
"""

from __future__ import annotations

import click

import kms.cli.ca_backup  # (adds `kms ca create-backup-key`, `backup`, `restore`)
import kms.cli.ca_ceremonies  # (adds `kms ca create-root`, `create-issuing`, `rotate`)
import kms.cli.signing  # noqa: F401 (adds `kms apdu sign` and `kms apdu verify-signature`)
from kms.cli._context import Context
from kms.cli.admin import db_group, init, selftest
from kms.cli.apdu import apdu
from kms.cli.association import association
from kms.cli.audit import audit
from kms.cli.ceremony import ca, ceremony, officer
from kms.cli.cert import cert, crl
from kms.cli.config import config_group
from kms.cli.entity import entity
from kms.cli.hls import hls
from kms.cli.key_agreement import key_agreement_group
from kms.cli.meter import meter
from kms.cli.provision import provision
from kms.cli.status import status
from kms.cli.transport_key import transport_key


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlms-kms")
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """Hardware-backed key management for DLMS/COSEM smart meters.

    Configuration comes from kms.toml and the environment (KMS_PKCS11_MODULE, KMS_TOKEN_LABEL,
    KMS_USER_PIN or KMS_USER_PIN_FILE, KMS_DATA_DIR, KMS_DATABASE_URL); a PIN is never an
    argument. `kms config show` lists every setting and where it came from.
    """
    ctx = click_ctx.ensure_object(Context)
    click_ctx.call_on_close(ctx.close)


for command in (
    init,
    config_group,
    db_group,
    selftest,
    transport_key,
    provision,
    meter,
    apdu,
    association,
    hls,
    ceremony,
    officer,
    ca,
    cert,
    crl,
    entity,
    key_agreement_group,
    audit,
    status,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()
