"""An app that takes 30 s to import: a worker stays in its start-up for that long."""

from __future__ import annotations

import time

from pgsched import Extension

time.sleep(30)

ext = Extension("slow-import")
