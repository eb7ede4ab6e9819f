"""The CA key backup ceremonies: ``kms ca create-backup-key``, ``kms ca backup`` and ``kms ca
restore``, which the thin scripts under ``scripts/`` (create_backup_key.py, backup_ca_key.py,
restore_ca_key.py) also run, with the same options; the work is in ``Services.ca_backup``
(:class:`kms.services.pki.ca_backup.CaBackupService`).

Key components are files, one per officer (``--component``, repeated): ``create-backup-key
--generate`` has the service write new ones from the token's random number generator (mode 0600,
never overwriting; audited with their check values), to be handed out and kept apart. The SO PIN
comes from ``KMS_SO_PIN`` or ``KMS_SO_PIN_FILE``, never from an argument.
"""

from __future__ import annotations

from pathlib import Path

import click

from kms.cli._context import Context, Output, command
from kms.cli.ceremony import (
    HELP,
    approval_option,
    ca,
    load_approvals,
    load_request,
    request_option,
)
from kms.config import security_officer_pin
from kms.services.pki import ca_backup, key_components
from kms.services.pki.ca_backup import BackupReport
from kms.services.vocabulary import read_bytes

_components_option = click.option(
    "--component",
    "component_paths",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A key component file (64 hex digits); repeat for each officer's component.",
)
_label_help = "Label of the backup wrapping key in the token."


@command(ca, "create-backup-key", context_settings=HELP)
@_components_option
@click.option(
    "--generate",
    is_flag=True,
    help="Write new random components to the --component files (which must not exist) first.",
)
@click.option(
    "--label", default=ca_backup.DEFAULT_BACKUP_KEY_LABEL, show_default=True, help=_label_help
)
def create_backup_key(
    ctx: Context, out: Output, component_paths: tuple[Path, ...], generate: bool, label: str
) -> None:
    """Make the CA backup wrapping key from officers' key components (XORed): a CKA_TRUSTED
    token key that can only wrap, set trusted by the security officer (KMS_SO_PIN or
    KMS_SO_PIN_FILE). Run it with the same components wherever a backup is restored."""
    so_pin = security_officer_pin()  # refused before anything is made or touched
    report = ctx.services.ca_backup.create_backup_key_from_files(
        actor=ctx.actor,
        so_pin=so_pin,
        paths=component_paths,
        generate=generate,
        label=label,
    )

    def text() -> None:
        for path, kcv in zip(component_paths, report.component_kcvs, strict=True):
            click.echo(f"component {path}: check value {kcv}")
        click.echo(f"backup wrapping key {report.label} made trusted: check value {report.kcv}")
        if generate:
            click.echo("hand each component file to its officer and delete it from this machine")

    out.result(report.to_dict(), text)


def _text(report: BackupReport, verb: str) -> None:
    click.echo(
        f"CA {report.ca} ({report.curve}) key {report.key_label} {verb} "
        f"(wrapping key check value {report.wrapping_key_kcv}): {report.file}"
    )
    click.echo(f"approved by {', '.join(report.approvals['approved_by'])}")  # type: ignore[arg-type]


@command(ca, "backup", context_settings=HELP)
@click.option("--ca", "ca_name", required=True, help="The CA whose key is backed up (kms ca list).")
@request_option
@approval_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The backup file to write (JSON; must not exist).",
)
@click.option(
    "--wrapping-key",
    default=ca_backup.DEFAULT_BACKUP_KEY_LABEL,
    show_default=True,
    help=_label_help,
)
def backup_ca_key(
    ctx: Context,
    out: Output,
    ca_name: str,
    request_path: Path,
    approval_paths: tuple[Path, ...],
    out_path: Path,
    wrapping_key: str,
) -> None:
    """Back up a CA's private key: wrapped in the token under the trusted backup key only."""
    report = ctx.services.ca_backup.backup_ca_key(
        actor=ctx.actor,
        request=load_request(request_path),
        approvals=load_approvals(approval_paths),
        ca_name=ca_name,
        out=out_path,
        wrapping_key_label=wrapping_key,
    )
    out.result(report.to_dict(), lambda: _text(report, "backed up"))


@command(ca, "restore", context_settings=HELP)
@click.option(
    "--backup",
    "backup_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The backup file (backup_ca_key.py).",
)
@_components_option
@request_option
@approval_option
def restore_ca_key(
    ctx: Context,
    out: Output,
    backup_path: Path,
    component_paths: tuple[Path, ...],
    request_path: Path,
    approval_paths: tuple[Path, ...],
) -> None:
    """Restore a backed-up CA key into this KMS's token, under the wrapping key rebuilt from
    the officers' components; the database must record the CA."""
    backup = ca_backup.load_backup(read_bytes(backup_path), str(backup_path))
    req = load_request(request_path)
    files = load_approvals(approval_paths)
    report = ctx.services.ca_backup.restore_ca_key(
        actor=ctx.actor,
        request=req,
        approvals=files,
        backup=backup,
        components=key_components.read_components(component_paths),
    )
    verb = f"restored into token {ctx.config.token_label!r}"
    out.result(report.to_dict(), lambda: _text(report, verb))
