"""``python -m realtime_bridge.demo [options]``: the same as ``realtime-bridge demo``."""

from __future__ import annotations

import sys

from ..cli import main

raise SystemExit(main(["demo", *sys.argv[1:]]))
