"""``kms ceremony``, ``kms officer`` and ``kms ca``: M-of-N approvals and the CA register.

The ceremonies themselves are scripts under ``scripts/`` (create_root_ca.py, create_issuing_ca.py,
rotate_issuing_ca.py); these commands make the request they run, sign approvals, and manage the
officers who sign them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kms.cli._context import Context, emit_json, json_option, pass_context, run, table
from kms.db import pki_repository as pki_repo
from kms.errors import InputError
from kms.services.common import approvals
from kms.services.pki import certificates
from kms.services.pki.authorities import describe_authority

F = TypeVar("F", bound=Callable[..., Any])


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None


def load_request(path: Path) -> approvals.CeremonyRequest:
    return approvals.load_request(read_file(path), str(path))


def load_approvals(paths: tuple[Path, ...]) -> list[approvals.ApprovalFile]:
    return [approvals.load_approval(read_file(p), str(p)) for p in paths]


request_option = click.option(
    "--request",
    "request_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The ceremony request the officers approved (kms ceremony request).",
)


def optional_request_option(when: str) -> Callable[[F], F]:
    """``--request`` for a command that is a ceremony only ``when`` (a phrase) holds."""
    option: Callable[[F], F] = click.option(
        "--request",
        "request_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"{when}: the approved request (kms ceremony request).",
    )
    return option


approval_option = click.option(
    "--approval",
    "approval_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An officer's approval file; repeat for each (M are needed).",
)


@click.group("ceremony")
def ceremony() -> None:
    """Requests for CA ceremonies and the officers' approvals of them."""


@ceremony.command("request")
@click.argument("name", type=click.Choice(sorted(approvals.CEREMONIES)))
@click.option("--suite", type=click.Choice(["1", "2"]), help="Issuing-CA ceremonies: the suite.")
@click.option(
    "--ca",
    "ca_name",
    help="backup-ca-key, restore-ca-key: the CA whose key is backed up or restored.",
)
@click.option(
    "--wrapping-key-kcv",
    help="backup-ca-key: the check value of the backup wrapping key (create_backup_key.py "
    "printed it when the officers' components made it).",
)
@click.option("--officer-name", help="add-officer, remove-officer: the officer's name.")
@click.option(
    "--officer-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="add-officer: the new officer's public key (PEM or DER).",
)
@click.option("--serial", help="revoke-ca-certificate: the CA certificate's serial (hex).")
@click.option(
    "--reason",
    type=click.Choice([r.replace("_", "-") for r in certificates.REVOCATION_REASONS]),
    help="revoke-ca-certificate: the revocation reason.",
)
@click.option(
    "--hours", type=click.IntRange(1, 24 * 14), default=24, show_default=True, help="Lifetime."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_context
def request(
    ctx: Context,
    name: str,
    suite: str | None,
    ca_name: str | None,
    wrapping_key_kcv: str | None,
    officer_name: str | None,
    officer_key: Path | None,
    serial: str | None,
    reason: str | None,
    hours: int,
    out: Path,
    json_output: bool,
) -> None:
    """Write a ceremony request for officers to approve; its exact bytes are what they sign."""

    def body() -> None:
        given = {
            "suite": int(suite) if suite else None,
            "ca": ca_name,
            "wrapping_key_kcv": wrapping_key_kcv.strip().upper() if wrapping_key_kcv else None,
            "name": officer_name,
            "public_key_sha256": (
                approvals.officer_key_fingerprint(read_file(officer_key), str(officer_key))
                if officer_key
                else None
            ),
            "serial": certificates.parse_serial(serial) if serial else None,
            "reason": reason.replace("-", "_") if reason else None,
        }
        wanted = approvals.CEREMONIES[name]
        parameters = {k: v for k, v in given.items() if k in wanted}
        missing = [k for k, v in parameters.items() if v is None]
        extra = [k for k, v in given.items() if k not in wanted and v is not None]
        if missing or extra:
            raise InputError(
                f"{name} takes {', '.join(sorted(wanted)) or 'no parameters'}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not {', '.join(extra)}" if extra else "")
            )
        req = approvals.new_request(
            ctx.hsm(), name, parameters, lifetime=datetime.timedelta(hours=hours)
        )
        approvals.write_new_file(out, req.text)
        info = {
            "ceremony": req.ceremony,
            "parameters": dict(req.parameters),
            "request_id": req.request_id,
            "expires_at": req.expires_at.isoformat(),
            "out": str(out),
        }
        if json_output:
            emit_json(info)
        else:
            click.echo(
                f"request {req.request_id} for {name} {dict(req.parameters)} written to {out}; "
                f"it expires at {req.expires_at.isoformat()}"
            )

    run(json_output, body)


@ceremony.command("approve")
@request_option
@click.option("--officer", required=True, help="Your officer name, as registered.")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your EC private key (PEM); passphrase from KMS_OFFICER_KEY_PASSPHRASE if encrypted.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@json_option
def approve(request_path: Path, officer: str, key_path: Path, out: Path, json_output: bool) -> None:
    """Sign a ceremony request with your own key (runs without the token or the database).

    Read the request first: it names the ceremony and its parameters. The signature covers the
    file's exact bytes, so `openssl dgst -sha256 -sign key.pem request.json` makes the same
    approval (hex of the DER signature in the approval file's "signature").
    """

    def body() -> None:
        req = load_request(request_path)
        passphrase = os.environ.get("KMS_OFFICER_KEY_PASSPHRASE")
        data = approvals.sign_request(
            req, officer, read_file(key_path), passphrase.encode() if passphrase else None
        )
        approvals.write_new_file(out, data)
        if json_output:
            emit_json({"officer": officer, "request_id": req.request_id, "out": str(out)})
        else:
            click.echo(f"{officer} approved {req.ceremony} {dict(req.parameters)}: {out}")

    run(json_output, body)


@click.group("officer")
def officer() -> None:
    """Security officers who approve ceremonies (M of N)."""


@officer.command("add")
@click.option("--name", required=True, help="The officer's name (unique).")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The officer's EC P-256/P-384 public key (PEM or DER).",
)
@optional_request_option("Once M officers exist, an add-officer ceremony")
@approval_option
@json_option
@pass_context
def add(
    ctx: Context,
    name: str,
    public_key: Path,
    request_path: Path | None,
    approval_paths: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Register an officer. Free until M are registered; after that an approved ceremony."""

    def body() -> None:
        req = load_request(request_path) if request_path else None
        info = approvals.add_officer(
            ctx.database(),
            ctx.config,
            ctx.config.actor,
            name,
            read_file(public_key),
            request=req,
            approvals=load_approvals(approval_paths),
            source=str(public_key),
        )
        if json_output:
            emit_json(info)
        else:
            click.echo(f"officer {name} registered (key SHA-256 {str(info['key_sha256'])[:16]}...)")

    run(json_output, body)


@officer.command("remove")
@click.option("--name", required=True, help="The officer to take out.")
@request_option
@approval_option
@json_option
@pass_context
def remove(
    ctx: Context,
    name: str,
    request_path: Path,
    approval_paths: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Take an officer out (lost or compromised key): an approved remove-officer ceremony."""

    def body() -> None:
        req = load_request(request_path)
        info = approvals.remove_officer(
            ctx.database(),
            ctx.config,
            ctx.config.actor,
            name,
            request=req,
            approvals=load_approvals(approval_paths),
        )
        if json_output:
            emit_json(info)
        else:
            click.echo(f"officer {name} removed")

    run(json_output, body)


@officer.command("list")
@json_option
@pass_context
def list_officers(ctx: Context, json_output: bool) -> None:
    """List the registered officers."""

    def body() -> None:
        with ctx.database().begin() as session:
            rows = [approvals.describe_officer(o) for o in pki_repo.active_officers(session)]
        if json_output:
            emit_json(rows)
        else:
            quorum = f"M = {ctx.config.ceremony_approvals}, N = {ctx.config.ceremony_officers}"
            table(
                f"Officers ({quorum})",
                ["name", "key SHA-256", "state", "since"],
                [
                    [
                        str(r["name"]),
                        str(r["key_sha256"])[:16],
                        str(r["state"]),
                        str(r["created_at"])[:10],
                    ]
                    for r in rows
                ],
            )

    run(json_output, body)


@click.group("ca")
def ca() -> None:
    """The certificate authorities in the token (made by the scripts/ ceremonies)."""


@ca.command("list")
@json_option
@pass_context
def list_cas(ctx: Context, json_output: bool) -> None:
    """List the CAs: role, suite, version, state and validity."""

    def body() -> None:
        with ctx.database().begin() as session:
            rows = [describe_authority(a) for a in pki_repo.authorities(session)]
        if json_output:
            emit_json(rows)
        else:
            table(
                "Certificate authorities",
                ["name", "role", "suite", "curve", "state", "serial", "not after"],
                [
                    [
                        str(r["name"]),
                        str(r["role"]),
                        str(r["suite"] or "-"),
                        str(r["curve"]),
                        str(r["state"]),
                        str(r["serial"]),
                        str(r["not_after"])[:10],
                    ]
                    for r in rows
                ],
            )

    run(json_output, body)
