"""Where the repository, the bench directory and the bench venv are."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BENCH = REPO / "bench"
DEFAULT_VENV = Path(os.environ.get("RATATOSK_BENCH_VENV", "/opt/ratatosk-bench-venv"))
