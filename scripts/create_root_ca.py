"""Ceremony: create the root CA (M-of-N approved; see `kms ceremony --help`); the same command
as `kms ca create-root`, kept for the security officers' runbooks.

Usage: .venv/bin/python scripts/create_root_ca.py --request REQUEST.json \
       --approval A.json --approval B.json [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.cli.ca_ceremonies import create_root_ca

if __name__ == "__main__":
    create_root_ca()
