"""dlms-kms: hardware-backed key management for DLMS/COSEM (IEC 62056) smart meters."""

__version__ = "0.1.0"
