"""The words a caller uses to speak to the services: parsers of what a person types, the
enumerations the use cases take and return, and the one reader of a file a person names
(:func:`kms.formats.files.read_bytes`: its error names the file).

The CLI (and the network service) import only :mod:`kms.services`, :mod:`kms.errors` and
:mod:`kms.config` (tests/unit/test_layers.py); these names come from the lower layers, and are
re-exported here so that a front end never needs to know which layer defines a system title's
spelling or a key role.
"""

from __future__ import annotations

from kms.db import CertificateKind, CertificateStatus, KeyRole, MeterState, RootKeyPurpose
from kms.dlms.hls import Mechanism
from kms.dlms.key_transfer import KeyId
from kms.dlms.obis import format_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title, parse_system_title
from kms.formats.files import read_bytes
from kms.pki.profiles import CertificateType

__all__ = [
    "CertificateKind",
    "CertificateStatus",
    "CertificateType",
    "KeyId",
    "KeyRole",
    "Mechanism",
    "MeterState",
    "RootKeyPurpose",
    "SecuritySuite",
    "format_logical_name",
    "format_system_title",
    "parse_system_title",
    "read_bytes",
]
