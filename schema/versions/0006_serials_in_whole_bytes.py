"""certificate serials in whole bytes

Serial numbers were stored as upper-case hex without leading zeros, so a serial of 17 octets
(0x01 || 16 random bytes, kms.pki.names.serial_number_from) had 33 digits where
``openssl x509 -serial`` prints 34. They are now stored and shown in whole bytes (an even number
of digits): this pads every odd-length ``certificate.serial`` with one leading 0. The downgrade
strips leading zeros again, which restores the old form exactly (it never had any).

``certificate.serial`` is the only column that stores a serial. Two other places name one and
are left as they are, on purpose: ``approval.request`` holds each ceremony request exactly as
the officers signed it (its stored signature must keep verifying), and ``audit_event.details``
is hash-chained. Reading either, a serial is a number: compare ``int(serial, 16)``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # length() and || are the same on SQLite and PostgreSQL; no value gains a digit twice.
    op.execute("UPDATE certificate SET serial = '0' || serial WHERE length(serial) % 2 = 1")


def downgrade() -> None:
    # A serial is positive, so at least one digit is left.
    op.execute("UPDATE certificate SET serial = ltrim(serial, '0') WHERE serial LIKE '0%'")
