"""PKCS#11 token access: the only package that imports ``pkcs11``
(docs/architecture.md section 3)."""

from kms.hsm.adapter import Hsm, Key, SessionKey, TokenKey, TokenSigner, open_hsm
from kms.hsm.gcm import TokenGcm
from kms.hsm.profile import Profile, load_profile
from kms.hsm.templates import KeyUse

__all__ = [
    "Hsm",
    "Key",
    "KeyUse",
    "Profile",
    "SessionKey",
    "TokenGcm",
    "TokenKey",
    "TokenSigner",
    "load_profile",
    "open_hsm",
]
