"""Settings shared by the example DAGs (underscore: not a DAG file, the DAG processor skips it).

Real generations take 5-14 minutes, so the examples poll every 10 s; ``make demo`` and the tests
run them against the simulator and shorten the interval with ``KLING_POLL_INTERVAL``.
"""

from __future__ import annotations

import os
from datetime import datetime

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "10"))
START = datetime(2026, 1, 1)
#: Where downloads land: the Airflow Variable ``kling_output_dir`` (``make demo`` sets it).
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
#: A run id is made file-name safe for per-run folders.
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"
