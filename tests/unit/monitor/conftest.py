"""Make the monitor package (monitor/haecs_monitor) and the test doubles importable."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
for _path in (os.path.join(ROOT, "monitor"), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)
