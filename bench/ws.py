"""Alias of bench/fanout.py (WebSocket fan-out through the broker vs Crossbar, same run)."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("fanout.py")), run_name="__main__")
