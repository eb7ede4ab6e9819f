"""The CA key backup ceremonies as commands, run by the thin scripts under ``scripts/``
(create_backup_key.py, backup_ca_key.py, restore_ca_key.py); the work is in
:mod:`kms.services.pki.ca_backup`.

Key components are files, one per officer (``--component``, repeated): ``create-backup-key
--generate`` writes new ones from the token's random number generator (mode 0600, never
overwriting), to be handed out and kept apart. The SO PIN comes from ``KMS_SO_PIN`` or
``KMS_SO_PIN_FILE``, never from an argument.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from kms.cli._context import Context, emit_json, json_option, pass_owned_context, run
from kms.cli.ceremony import (
    approval_option,
    load_approvals,
    load_request,
    read_file,
    request_option,
)
from kms.config import security_officer_pin
from kms.errors import InputError
from kms.hsm import Hsm
from kms.memory import zeroise
from kms.services.pki import ca_backup, key_components
from kms.services.pki.ca_backup import BackupReport

_components_option = click.option(
    "--component",
    "component_paths",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A key component file (64 hex digits); repeat for each officer's component.",
)
_label_help = "Label of the backup wrapping key in the token."


def _load_components(paths: tuple[Path, ...]) -> list[bytearray]:
    """The components, read; those already read are zeroised if a later one is bad."""
    loaded: list[bytearray] = []
    try:
        for path in paths:
            loaded.append(key_components.load_component(read_file(path), str(path)))
    except BaseException:
        for component in loaded:
            zeroise(component)
        raise
    return loaded


def _write_components(hsm: Hsm, paths: tuple[Path, ...]) -> None:
    """New random components in new files (0600); none is left behind if one cannot be made."""
    made: list[Path] = []
    try:
        for path in paths:
            data = key_components.component_file(hsm.random(key_components.COMPONENT_LENGTH))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise InputError(
                    "already exists; --generate writes new component files only", source=str(path)
                ) from None
            except OSError as exc:
                raise InputError(f"cannot write: {exc.strerror}", source=str(path)) from None
            made.append(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


@click.command("create-backup-key")
@_components_option
@click.option(
    "--generate",
    is_flag=True,
    help="Write new random components to the --component files (which must not exist) first.",
)
@click.option(
    "--label", default=ca_backup.DEFAULT_BACKUP_KEY_LABEL, show_default=True, help=_label_help
)
@json_option
@pass_owned_context
def create_backup_key(
    ctx: Context,
    component_paths: tuple[Path, ...],
    generate: bool,
    label: str,
    json_output: bool,
) -> None:
    """Make the CA backup wrapping key from officers' key components (XORed): a CKA_TRUSTED
    token key that can only wrap, set trusted by the security officer (KMS_SO_PIN or
    KMS_SO_PIN_FILE). Run it with the same components wherever a backup is restored."""

    def body() -> None:
        so_pin = security_officer_pin()
        hsm = ctx.hsm()
        if generate:
            _write_components(hsm, component_paths)
        report = ca_backup.create_backup_key(
            hsm,
            ctx.database(),
            ctx.config.actor,
            so_pin,
            _load_components(component_paths),
            label=label,
        )
        if json_output:
            emit_json(report.to_dict())
            return
        for path, kcv in zip(component_paths, report.component_kcvs, strict=True):
            click.echo(f"component {path}: check value {kcv}")
        click.echo(f"backup wrapping key {report.label} made trusted: check value {report.kcv}")
        if generate:
            click.echo("hand each component file to its officer and delete it from this machine")

    run(json_output, body)


def _print(report: BackupReport, verb: str, json_output: bool) -> None:
    if json_output:
        emit_json(report.to_dict())
        return
    click.echo(
        f"CA {report.ca} ({report.curve}) key {report.key_label} {verb} "
        f"(wrapping key check value {report.wrapping_key_kcv}): {report.file}"
    )
    click.echo(f"approved by {', '.join(report.approvals['approved_by'])}")  # type: ignore[arg-type]


@click.command("backup-ca-key")
@click.option("--ca", "ca_name", required=True, help="The CA whose key is backed up (kms ca list).")
@request_option
@approval_option
@click.option(
    "--out",
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
@json_option
@pass_owned_context
def backup_ca_key(
    ctx: Context,
    ca_name: str,
    request_path: Path,
    approval_paths: tuple[Path, ...],
    out: Path,
    wrapping_key: str,
    json_output: bool,
) -> None:
    """Back up a CA's private key: wrapped in the token under the trusted backup key only."""

    def body() -> None:
        req = load_request(request_path)
        files = load_approvals(approval_paths)
        report = ca_backup.backup_ca_key(
            ctx.hsm(),
            ctx.database(),
            ctx.config,
            ctx.config.actor,
            req,
            files,
            ca_name,
            out,
            wrapping_key_label=wrapping_key,
        )
        _print(report, "backed up", json_output)

    run(json_output, body)


@click.command("restore-ca-key")
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
@json_option
@pass_owned_context
def restore_ca_key(
    ctx: Context,
    backup_path: Path,
    component_paths: tuple[Path, ...],
    request_path: Path,
    approval_paths: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Restore a backed-up CA key into this KMS's token, under the wrapping key rebuilt from
    the officers' components; the database must record the CA."""

    def body() -> None:
        backup = ca_backup.load_backup(read_file(backup_path), str(backup_path))
        req = load_request(request_path)
        files = load_approvals(approval_paths)
        report = ca_backup.restore_ca_key(
            ctx.hsm(),
            ctx.database(),
            ctx.config,
            ctx.config.actor,
            req,
            files,
            backup,
            _load_components(component_paths),
        )
        _print(report, f"restored into token {ctx.config.token_label!r}", json_output)

    run(json_output, body)
