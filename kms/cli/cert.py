"""``kms cert`` and ``kms crl``: meter certificates from CSRs, the chain, revocation and CRLs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kms.cli._context import Context, Output, command, table
from kms.cli.ceremony import (
    approval_option,
    load_approvals,
    load_request,
    optional_request_option,
)
from kms.errors import InputError
from kms.services.pki import certificates
from kms.services.vocabulary import (
    CertificateKind,
    CertificateType,
    SecuritySuite,
    parse_system_title,
)

_CSR_SUFFIXES = {".der", ".pem", ".csr", ".p10"}
_TYPES = click.Choice(["signing", "key-agreement", "tls"])
suite_option = click.option(
    "--suite", type=click.Choice(["1", "2"]), help="DLMS security suite (1: P-256, 2: P-384)."
)


@click.group("cert")
def cert() -> None:
    """Certificates: issue from meter CSRs, print the chain, list, show and revoke."""


@command(cert, "issue")
@click.option(
    "--csr",
    "csr_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A CSR (DER or PEM), a folder of CSRs, or a JSONL file of CSRs.",
)
@click.option("--type", "cert_type", type=_TYPES, default="signing", show_default=True)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Certificate file (PEM; DER if it ends in .der), a folder for a folder, or a JSONL file.",
)
def issue(ctx: Context, out: Output, csr_path: Path, cert_type: str, out_path: Path) -> None:
    """Issue certificates for meters' CSRs (security setup method 5's output).

    Each CSR's signature, subject (CN = the meter's system title) and curve are checked against
    the meter's record and suite; the certificate is signed in the token by the suite's issuing
    CA. A batch is all or nothing: one bad CSR is named and nothing is issued.

    A CSR is signed with its curve's own hash: a suite 1 meter's P-256 CSR with
    ecdsa-with-SHA256, a suite 2 meter's P-384 CSR with ecdsa-with-SHA384 (`openssl req -new
    -sha384` for a P-384 key: openssl would otherwise pick SHA-256). Any other pairing is
    refused, as is an EC point that is not uncompressed.

    --json (and each JSONL line) carries "import_certificate", the security setup method 6
    action-request the station sends to give the meter its certificate.

    A folder takes every *.der, *.pem, *.csr and *.p10 file in it and writes
    <SYSTEM_TITLE>-<type>.pem into the --out folder. A JSONL file holds one object per line,
    {"csr": PEM text or base64 DER, "type": optional}, and --out gets one line per certificate
    with its PEM.
    """

    service = ctx.services.certificates
    default = CertificateType.parse(cert_type)
    if out.json:
        shape, issued = service.issue_files(
            csr_path, out_path, actor=ctx.actor, certificate_type=default
        )
    else:
        with Progress(
            TextColumn("issuing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("issue", total=None)
            shape, issued = service.issue_files(
                csr_path,
                out_path,
                actor=ctx.actor,
                certificate_type=default,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    def text() -> None:
        for c in issued[:20]:
            click.echo(
                f"issued {c.certificate_type} certificate {c.serial} for {c.system_title} "
                f"(issuer {c.issuer}, until {c.not_after:%Y-%m-%d})"
            )
        if len(issued) > 20:
            click.echo(f"... {len(issued)} certificates in all, written to {out_path}")

    out.result([c.to_dict() for c in issued] if shape != "file" else issued[0].to_dict(), text)


def _pem(der: bytes) -> str:
    """A certificate's PEM text."""
    return certificates.pem_or_der(der, "CERTIFICATE", ".pem").decode()


@command(cert, "chain")
@click.option("--suite", type=click.Choice(["1", "2"]), required=True, help="DLMS suite.")
def chain(ctx: Context, out: Output, suite: str) -> None:
    """Print the issuing CA and root certificates (PEM) a verifier of the suite needs.

    --json adds "import_certificate": one security setup method 6 action-request per
    certificate, for the station to give a meter the CA certificates it must trust.
    """

    ders = ctx.services.certificates.chain(SecuritySuite(int(suite)))
    pems = [_pem(der) for der in ders]
    out.result(
        {
            "suite": int(suite),
            "certificates": pems,
            "import_certificate": [
                certificates.import_certificate_apdu(der).hex().upper() for der in ders
            ],
        },
        lambda: click.echo("".join(pems), nl=False),
    )


@command(cert, "list")
@click.option("--system-title", help="Only this meter's certificates (16 hex digits).")
@click.option("--type", "cert_type", type=click.Choice(["signing", "key-agreement", "tls", "ca"]))
@click.option(
    "--status",
    type=click.Choice(["valid", "out-of-use", "revoked"]),
    help="valid: in use; out-of-use: not revoked, but under a revoked or expired CA.",
)
@click.option("--limit", type=click.IntRange(1), help="At most this many rows.")
def list_certs(
    ctx: Context,
    out: Output,
    system_title: str | None,
    cert_type: str | None,
    status: str | None,
    limit: int | None,
) -> None:
    """List issued certificates (CA certificates included).

    The status is VALID (in use), REVOKED, or OUT_OF_USE: a certificate that was never revoked
    but whose issuing CA is revoked or expired, so nothing uses it any more (its issuer's CRL
    does not list it). `kms cert show` says the same.
    """
    rows = ctx.services.certificates.list(
        system_title=parse_system_title(system_title) if system_title else None,
        kind=CertificateKind(cert_type.upper().replace("-", "_")) if cert_type else None,
        status=status.upper().replace("-", "_") if status else None,
        limit=limit,
    )
    out.result(
        rows,
        lambda: table(
            "Certificates",
            ["serial", "type", "subject", "status", "not after"],
            [
                [
                    str(r["serial"]),
                    str(r["type"]),
                    str(r["subject"]),
                    str(r["status"]),
                    str(r["not_after"])[:10],
                ]
                for r in rows
            ],
        ),
    )


@command(cert, "show")
@click.option("--serial", required=True, help="Serial number in hex.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the certificate (PEM; DER if the name ends in .der).",
)
def show(ctx: Context, out: Output, serial: str, out_path: Path | None) -> None:
    """Show one certificate; print its PEM, or write it with --out.

    Its status is VALID (in use), REVOKED, or OUT_OF_USE (never revoked, but its issuing CA is
    revoked or expired).

    --json adds "import_certificate": the security setup method 6 action-request that gives the
    certificate to a meter (the meter's own, or a CA or head-end certificate it must trust).
    """

    info, der = ctx.services.certificates.show(serial, out=out_path)

    def text() -> None:
        for key, value in info.items():
            if key != "import_certificate":  # --json only, as the help says
                click.echo(f"{key}: {value}")
        if out_path is None:
            click.echo(certificates.pem_or_der(der, "CERTIFICATE", ".pem").decode(), nl=False)

    out.result(
        {**info, "certificate": certificates.pem_or_der(der, "CERTIFICATE", ".pem").decode()},
        text,
    )


@command(cert, "revoke")
@click.option("--serial", required=True, help="Serial number in hex.")
@click.option(
    "--reason",
    type=click.Choice([r.replace("_", "-") for r in certificates.REVOCATION_REASONS]),
    default="unspecified",
    show_default=True,
)
@optional_request_option("A CA certificate only, a revoke-ca-certificate ceremony")
@approval_option
def revoke(
    ctx: Context,
    out: Output,
    serial: str,
    reason: str,
    request_path: Path | None,
    approval_paths: tuple[Path, ...],
) -> None:
    """Revoke a certificate; the next CRL of its issuer lists it (kms crl issue).

    A meter's or an end entity's certificate is revoked on the operator's word. A CA
    certificate retires its CA and every certificate under it; with --request and --approval
    it is a revoke-ca-certificate ceremony, M officers approving a request that names the
    serial and the reason. Without them it runs on the operator's word (an emergency), its
    audit record saying no one approved it, unless the ceremony policy fixed
    ca_revocation_ceremony = true (kms.toml or KMS_CA_REVOCATION_CEREMONY, when the first
    officer was registered): then it is a ceremony or nothing.

    \b
      kms ceremony request revoke-ca-certificate --serial S --reason R --out req.json
      kms ceremony approve --request req.json --officer NAME --key KEY --out NAME.json
      kms cert revoke --serial S --reason R --request req.json --approval NAME.json ...
    """

    if approval_paths and request_path is None:
        raise InputError("--approval needs the --request it approves")
    info = ctx.services.certificates.revoke(
        actor=ctx.actor,
        serial=serial,
        reason=reason.replace("-", "_"),
        request=load_request(request_path) if request_path is not None else None,
        approvals=load_approvals(approval_paths),
    )
    out.result(info, f"revoked certificate {info['serial']} ({reason})")


@click.group("crl")
def crl() -> None:
    """Certificate revocation lists, signed in the token."""


@command(crl, "issue")
@suite_option
@click.option("--ca", "ca_name", help="A named CA instead (e.g. root-v1, or a retired suite CA).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CRL file (PEM; DER if it ends in .der).",
)
def crl_issue(
    ctx: Context, out: Output, suite: str | None, ca_name: str | None, out_path: Path
) -> None:
    """Issue the CRL of the suite's active issuing CA (or of --ca), with the next cRLNumber."""

    if (suite is None) == (ca_name is None):
        raise InputError("give exactly one of --suite and --ca")
    _der, info = ctx.services.certificates.issue_crl(
        actor=ctx.actor,
        suite=SecuritySuite(int(suite)) if suite else None,
        authority_name=ca_name,
        out=out_path,
    )
    out.result(
        {**info, "out": str(out_path)},
        f"CRL {info['crl_number']} of {info['ca']} ({info['revoked']} revoked) "
        f"written to {out_path}",
    )
