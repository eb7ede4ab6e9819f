"""The KMS's own end entities: the head-end (HES) client, data concentrators, the site's signing
and key-agreement keys. Their key pairs are generated in the token (signing keys sign only,
key-agreement keys derive only, neither ever extractable) and their certificates come from the
suite's issuing CA, with CN = the entity's system title like a meter's.

These are the keys the KMS uses for HLS-ECDSA (mechanism 7), general-signing, and the static
half of key agreement; a meter is given their certificates (security setup method 6) so it can
verify them. A new key for the same entity and type is a new version: the older certificate
stays valid until revoked, and the newest valid one is used.
"""

from __future__ import annotations

import contextlib

from asn1crypto import keys  # type: ignore[import-untyped, unused-ignore]

from kms.db import AuthorityRole, CertificateStatus
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import ConflictError, InputError, KMSError, NotFoundError
from kms.hsm import TokenKey
from kms.pki import ca, encoding, path, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import audit
from kms.services.common.peers import KIND_OF_TYPE, own_certificates
from kms.services.common.resources import Resources
from kms.services.pki.authorities import (
    authority_certificate,
    authority_signer,
    certificate_row,
    require_usable,
    validity_within,
)
from kms.services.pki.certificates import CertificateService

__all__ = ["PURPOSES", "EndEntityService"]

PURPOSES = ("hes-client", "data-concentrator", "site")


class EndEntityService:
    """The KMS's own key pairs and their certificates (module docstring)."""

    def __init__(self, resources: Resources, certificates: CertificateService) -> None:
        self._resources = resources
        self._certificates = certificates

    def create(
        self,
        *,
        actor: str,
        system_title: bytes,
        suite: SecuritySuite,
        certificate_type: CertificateType,
        purpose: str,
    ) -> dict[str, object]:
        """Generate a key pair in the token and certify it with the suite's issuing CA; returns
        what was made (its certificate in PEM under ``certificate``)."""
        db = self._resources.database()
        hsm = self._resources.hsm()
        config = self._resources.config
        if purpose not in PURPOSES:
            raise InputError(f"purpose is one of {', '.join(PURPOSES)}", field="purpose")
        curve = profiles.curve_for_suite(suite)
        kind = KIND_OF_TYPE[certificate_type]
        made: TokenKey | None = None
        try:
            with db.begin() as session:
                now = utcnow()
                authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
                root = pki_repo.active_authority(session, AuthorityRole.ROOT)
                if authority is None or root is None:
                    raise NotFoundError(
                        f"no active issuing CA for suite {int(suite)}: run the CA ceremonies first"
                    )
                require_usable(authority, now)
                title = format_system_title(system_title)
                if repo.meter_by_system_title(session, system_title) is not None:
                    raise ConflictError(
                        f"{title} is a meter's system title: a KMS key certified under it would "
                        "speak as that meter"
                    )
                version = 1 + len(own_certificates(session, system_title, kind))
                # Token-random suffix: a retry after a crash never meets an orphan of this label.
                label = (
                    f"kms-ee-{title}-{certificate_type.cli_name}-v{version}-{hsm.random(4).hex()}"
                )
                if certificate_type is CertificateType.KEY_AGREEMENT:
                    made = hsm.create_key_agreement_key_pair(label, label.encode(), curve)
                else:
                    made = hsm.create_ec_key_pair(label, label.encode(), curve)
                issuer = authority_certificate(authority)
                tbs = profiles.end_entity_tbs(
                    serial_number=profiles.serial_number_from(hsm.random(16)),
                    issuer=issuer,
                    system_title=system_title,
                    public_key=keys.PublicKeyInfo.load(hsm.public_key_der(made)),
                    certificate_type=certificate_type,
                    validity=validity_within(
                        now, config.certificate_validity_days, authority.certificate.not_after
                    ),
                )
                cert = ca.sign_certificate(tbs, authority_signer(hsm, authority))
                profiles.check_certificate(
                    cert,
                    issuer=issuer,
                    certificate_type=certificate_type,
                    system_title=system_title,
                    is_ca=False,
                )
                path.validate_path(cert, [issuer], authority_certificate(root), at=now)
                row = certificate_row(
                    cert, kind, issuer_id=authority.certificate_id, key_label=label
                )
                repo.add(session, row)
                info: dict[str, object] = {
                    "purpose": purpose,
                    "system_title": title,
                    "suite": int(suite),
                    "type": certificate_type.cli_name,
                    "key_label": label,
                    "serial": row.serial,
                    "issuer": authority.name,
                    "not_after": row.not_after.isoformat(),
                }
                audit.append(session, actor, [audit.AuditRecord("end_entity.create", title, info)])
                info["certificate"] = encoding.certificate_pem(cert).decode()
        except BaseException:
            if made is not None:
                with contextlib.suppress(KMSError):  # keep the original error
                    hsm.destroy_key_pair(made)
            raise
        return info

    def list(self) -> list[dict[str, object]]:
        """The KMS's own certificates in use (a key in the token behind each), as plain data."""
        return self._certificates.list(status=CertificateStatus.VALID, own=True)
