"""The CA ceremonies: ``kms ca create-root``, ``kms ca create-issuing`` and ``kms ca rotate``,
which the thin scripts under ``scripts/`` (create_root_ca.py, create_issuing_ca.py,
rotate_issuing_ca.py) also run, with the same options.

Each takes the approved request (``kms ceremony request``) and M approval files, and calls one
use case of ``Services.authorities`` (:class:`kms.services.pki.authorities.AuthorityService`);
the request's parameters are checked against the ones given here, so an operator cannot run a
different ceremony than the officers approved.
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
from kms.services.pki.authorities import AuthorityReport
from kms.services.vocabulary import SecuritySuite

_suite_option = click.option(
    "--suite", type=click.Choice(["1", "2"]), required=True, help="1: P-256, 2: P-384."
)


def _text(report: AuthorityReport) -> None:
    click.echo(
        f"{report.role.lower()} CA {report.name} ({report.curve}) created: key {report.key_label} "
        f"in the token, certificate {report.serial}, valid until {report.not_after:%Y-%m-%d}"
    )
    if report.retired:
        click.echo(f"retired {report.retired} (it still signs CRLs for what it issued)")
    click.echo(f"approved by {', '.join(report.approvals['approved_by'])}")  # type: ignore[arg-type]
    click.echo(report.certificate_pem, nl=False)


@command(ca, "create-root", context_settings=HELP)
@request_option
@approval_option
def create_root_ca(
    ctx: Context, out: Output, request_path: Path, approval_paths: tuple[Path, ...]
) -> None:
    """Create the root CA: a P-384 key pair in the token and its self-signed certificate."""
    report = ctx.services.authorities.create_root(
        actor=ctx.actor,
        request=load_request(request_path),
        approvals=load_approvals(approval_paths),
    )
    out.result(report.to_dict(), lambda: _text(report))


@command(ca, "create-issuing", context_settings=HELP)
@_suite_option
@request_option
@approval_option
def create_issuing_ca(
    ctx: Context, out: Output, suite: str, request_path: Path, approval_paths: tuple[Path, ...]
) -> None:
    """Create the issuing CA of a suite, its certificate signed by the root in the token."""
    report = ctx.services.authorities.create_issuing(
        actor=ctx.actor,
        request=load_request(request_path),
        approvals=load_approvals(approval_paths),
        suite=SecuritySuite(int(suite)),
    )
    out.result(report.to_dict(), lambda: _text(report))


@command(ca, "rotate", context_settings=HELP)
@_suite_option
@request_option
@approval_option
def rotate_issuing_ca(
    ctx: Context, out: Output, suite: str, request_path: Path, approval_paths: tuple[Path, ...]
) -> None:
    """Replace the issuing CA of a suite with a new version; the old one is retired (it still
    signs CRLs for what it issued). A revoked issuing CA is replaced the same way."""
    report = ctx.services.authorities.rotate_issuing(
        actor=ctx.actor,
        request=load_request(request_path),
        approvals=load_approvals(approval_paths),
        suite=SecuritySuite(int(suite)),
    )
    out.result(report.to_dict(), lambda: _text(report))
