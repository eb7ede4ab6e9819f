"""``kms ceremony``, ``kms officer`` and ``kms ca``: M-of-N approvals and the CA register.

The ceremonies themselves are ``kms ca`` subcommands (create-root, create-issuing, rotate,
create-backup-key, backup, restore: :mod:`kms.cli.ca_ceremonies` and :mod:`kms.cli.ca_backup`),
which the thin scripts under ``scripts/`` also run; these commands make the request they run,
sign approvals, and manage the officers who sign them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kms.cli._context import Context, Output, command, table
from kms.services.common import approvals
from kms.services.pki import certificates
from kms.services.vocabulary import read_bytes

F = TypeVar("F", bound=Callable[..., Any])

#: ``-h`` as well as ``--help`` for the ceremony commands, which the scripts also run on their
#: own (under ``kms`` the group's setting is inherited anyway).
HELP: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def load_request(path: Path) -> approvals.CeremonyRequest:
    return approvals.load_request(read_bytes(path), str(path))


def load_approvals(paths: tuple[Path, ...]) -> list[approvals.ApprovalFile]:
    return [approvals.load_approval(read_bytes(p), str(p)) for p in paths]


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


@command(ceremony, "request")
@click.argument("name", type=click.Choice(sorted(approvals.CEREMONIES)))
@click.option("--suite", type=click.Choice(["1", "2"]), help="Issuing-CA ceremonies: the suite.")
@click.option(
    "--ca",
    "ca_name",
    help="backup-ca-key, restore-ca-key: the CA whose key is backed up or restored.",
)
@click.option(
    "--wrapping-key-kcv",
    help="backup-ca-key: the check value of the backup wrapping key (kms ca create-backup-key "
    "printed it, as kcv, when the officers' components made it).",
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
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def request(
    ctx: Context,
    out: Output,
    name: str,
    suite: str | None,
    ca_name: str | None,
    wrapping_key_kcv: str | None,
    officer_name: str | None,
    officer_key: Path | None,
    serial: str | None,
    reason: str | None,
    hours: int,
    out_path: Path,
) -> None:
    """Write a ceremony request for officers to approve; its exact bytes are what they sign."""
    given = {
        "suite": int(suite) if suite else None,
        "ca": ca_name,
        "wrapping_key_kcv": wrapping_key_kcv.strip().upper() if wrapping_key_kcv else None,
        "name": officer_name,
        "public_key_sha256": (
            approvals.officer_key_fingerprint(read_bytes(officer_key), str(officer_key))
            if officer_key
            else None
        ),
        "serial": certificates.parse_serial(serial) if serial else None,
        "reason": reason.replace("-", "_") if reason else None,
    }
    parameters = approvals.ceremony_parameters(name, given)
    req = ctx.services.approvals.new_request(
        name, parameters, lifetime=datetime.timedelta(hours=hours)
    )
    approvals.write_ceremony_file(out_path, req.text)
    info = {
        "ceremony": req.ceremony,
        "parameters": dict(req.parameters),
        "request_id": req.request_id,
        "expires_at": req.expires_at.isoformat(),
        "out": str(out_path),
    }
    out.result(
        info,
        f"request {req.request_id} for {name} ({approvals.describe_parameters(req.parameters)}) "
        f"written to {out_path}; "
        f"it expires at {req.expires_at.isoformat()}",
    )


@command(ceremony, "approve")
@request_option
@click.option("--officer", required=True, help="Your officer name, as registered.")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your EC private key (PEM); passphrase from KMS_OFFICER_KEY_PASSPHRASE if encrypted.",
)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def approve(
    ctx: Context, out: Output, request_path: Path, officer: str, key_path: Path, out_path: Path
) -> None:
    """Sign a ceremony request with your own key (reads the database, never the token).

    Read the request first: it names the ceremony and its parameters. Before signing, the
    officer must be registered and active, and --key must be the private key of the public key
    registered for them (kms officer add); otherwise nothing is written. The signature covers
    the file's exact bytes, so `openssl dgst -sha256 -sign key.pem request.json` makes the same
    approval (hex of the DER signature in the approval file's "signature").
    """
    req = load_request(request_path)
    passphrase = os.environ.get("KMS_OFFICER_KEY_PASSPHRASE")
    data = ctx.services.approvals.approve(
        req, officer, read_bytes(key_path), passphrase.encode() if passphrase else None
    )
    approvals.write_ceremony_file(out_path, data)
    out.result(
        {"officer": officer, "request_id": req.request_id, "out": str(out_path)},
        f"{officer} approved {req.ceremony} ({approvals.describe_parameters(req.parameters)}): "
        f"{out_path}",
    )


@click.group("officer")
def officer() -> None:
    """Security officers who approve ceremonies (M of N)."""


@command(officer, "add")
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
def add(
    ctx: Context,
    out: Output,
    name: str,
    public_key: Path,
    request_path: Path | None,
    approval_paths: tuple[Path, ...],
) -> None:
    """Register an officer. Free until M are registered; after that an approved ceremony."""
    req = load_request(request_path) if request_path else None
    info = ctx.services.approvals.add_officer(
        actor=ctx.actor,
        name=name,
        public_key=read_bytes(public_key),
        request=req,
        approvals=load_approvals(approval_paths),
        source=str(public_key),
    )
    out.result(info, f"officer {name} registered (key SHA-256 {str(info['key_sha256'])[:16]}...)")


@command(officer, "remove")
@click.option("--name", required=True, help="The officer to take out.")
@request_option
@approval_option
def remove(
    ctx: Context, out: Output, name: str, request_path: Path, approval_paths: tuple[Path, ...]
) -> None:
    """Take an officer out (lost or compromised key): an approved remove-officer ceremony."""
    req = load_request(request_path)
    info = ctx.services.approvals.remove_officer(
        actor=ctx.actor, name=name, request=req, approvals=load_approvals(approval_paths)
    )
    out.result(info, f"officer {name} removed")


@command(officer, "list")
def list_officers(ctx: Context, out: Output) -> None:
    """List the registered officers."""
    rows = ctx.services.approvals.list_officers()
    quorum = f"M = {ctx.config.ceremony_approvals}, N = {ctx.config.ceremony_officers}"
    out.result(
        rows,
        lambda: table(
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
        ),
    )


@click.group("ca")
def ca() -> None:
    """The certificate authorities in the token, and the ceremonies that make and keep them
    (each M-of-N approved: kms ceremony request, then the officers' approvals)."""


@command(ca, "list")
def list_cas(ctx: Context, out: Output) -> None:
    """List the CAs: role, suite, version, state and validity."""
    rows = ctx.services.authorities.list()
    out.result(
        rows,
        lambda: table(
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
        ),
    )
