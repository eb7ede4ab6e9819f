"""Ceremony: rotate the issuing CA of a suite (M-of-N approved; see `kms ceremony --help`); the
same command as `kms ca rotate`, kept for the security officers' runbooks.

Usage: .venv/bin/python scripts/rotate_issuing_ca.py --suite N --request REQUEST.json \
       --approval A.json --approval B.json [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.cli.ca_ceremonies import rotate_issuing_ca

if __name__ == "__main__":
    rotate_issuing_ca()
