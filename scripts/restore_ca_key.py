"""Ceremony: restore a backed-up CA key into this KMS's token (M-of-N approved; the officers'
key components rebuild the wrapping key); the same command as `kms ca restore`, kept for the
security officers' runbooks.

Usage: .venv/bin/python scripts/restore_ca_key.py --backup root-v1.backup.json \
       --component A.hex --component B.hex --request REQUEST.json \
       --approval A.json --approval B.json [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.cli.ca_backup import restore_ca_key

if __name__ == "__main__":
    restore_ca_key()
