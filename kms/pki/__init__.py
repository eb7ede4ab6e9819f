"""Public-key infrastructure of the KMS: X.509 certificates, PKCS#10 CSRs and CRLs under the Green
Book certificate profile (docs/dlms-security.md section 6), as asn1crypto structures.

Pure like :mod:`kms.dlms`: no token, no database, no clock and no randomness. Time and random
bytes are arguments, and private keys stay behind :class:`kms.pki.ecdsa.Signer` (a token key in
production). pyca/cryptography is used for public-key verification only.
"""
