"""Ceremony: back up a CA key, wrapped under the trusted backup key (M-of-N approved; see
`kms ceremony --help`); the same command as `kms ca backup`, kept for the security officers'
runbooks.

Usage: .venv/bin/python scripts/backup_ca_key.py --ca root-v1 --out root-v1.backup.json \
       --request REQUEST.json --approval A.json --approval B.json [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.cli.ca_backup import backup_ca_key

if __name__ == "__main__":
    backup_ca_key()
