"""The CI variant of the soak run (bench/soak.py): the demo site plus 100 simulated devices,
API load from a second process, two minutes.

No memory growth beyond 10 % after warm-up, no missed control cycle, no 5xx, no broken
connection, a clean exit on SIGTERM and an intact database. The long run is
`python bench/soak.py --minutes 30`; CHARGEBRAIN_SOAK_MINUTES changes this variant's length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
MINUTES = float(os.environ.get("CHARGEBRAIN_SOAK_MINUTES", "2") or 2)


def test_soak(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", str(MINUTES), "--devices", "100", "--json",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=MINUTES * 60 + 600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = {k: v for k, v in result.items() if k != "samples"}
    assert result["devices_total"] >= 100, summary
    assert result["requests"] > 0 and result["cycles_completed"] > 0, summary
    assert result["checks"] == {name: True for name in result["checks"]}, summary
    assert result["ok"] and proc.returncode == 0, summary
