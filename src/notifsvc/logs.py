"""Logging set-up shared by every command."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka repeats every connection failure; keep them at warning and above.
    logging.getLogger("notifsvc.librdkafka").setLevel(max(logging.WARNING, root.level))
