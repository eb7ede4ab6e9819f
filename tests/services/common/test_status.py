"""``StatusService`` in process, where the PKI is at hand: the active CAs are checked for a key
in the token and a certificate in date, and each fault is its own failed check."""

from __future__ import annotations

import datetime

from sqlalchemy import update

from kms.db import Certificate, CertificateAuthority, ModelBase
from tests.kms_fixtures import Pki

AUTHORITIES = ModelBase.metadata.tables[CertificateAuthority.__tablename__]
CERTIFICATES = ModelBase.metadata.tables[Certificate.__tablename__]


def _checks(pki: Pki) -> tuple[int, dict[str, dict[str, object]]]:
    report = pki.kms.services.status.report()
    return report.exit_status, {c.name: c.to_dict() for c in report.checks}


def test_active_cas_are_healthy(pki: Pki) -> None:
    status, checks = _checks(pki)
    assert status == 0, checks
    detail = str(checks["certificate_authorities"]["detail"])
    assert detail.startswith("3 active: "), detail
    assert detail.endswith("; 0 retired or revoked"), detail
    assert sorted(detail[len("3 active: ") : detail.index(";")].split(", ")) == [
        "root-v1",
        "suite1-v1",
        "suite2-v1",
    ]


def test_an_active_ca_whose_key_the_token_lacks_is_a_token_failure(pki: Pki) -> None:
    with pki.kms.db.engine.begin() as conn:
        conn.execute(
            update(AUTHORITIES)
            .where(AUTHORITIES.c.name == "suite1-v1")
            .values(key_label="kms-ca-nowhere")
        )
    status, checks = _checks(pki)
    assert status == 4
    assert checks["certificate_authorities"]["error"] == "hsm.key_not_found"
    assert "suite1-v1" in str(checks["certificate_authorities"]["detail"])
    assert checks["audit"]["ok"] and checks["root_keys"]["ok"]  # the others still ran


def test_an_active_ca_with_an_expired_certificate_is_unhealthy(pki: Pki) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    with pki.kms.db.engine.begin() as conn:
        cert_id = (
            conn.execute(AUTHORITIES.select().where(AUTHORITIES.c.name == "root-v1"))
            .one()
            .certificate_id
        )
        conn.execute(
            update(CERTIFICATES).where(CERTIFICATES.c.id == cert_id).values(not_after=past)
        )
    status, checks = _checks(pki)
    assert status == 3
    assert checks["certificate_authorities"]["error"] == "crypto.certificate_path"
    assert "root-v1" in str(checks["certificate_authorities"]["detail"])
