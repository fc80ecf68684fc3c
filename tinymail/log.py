"""Logging: one line per event, key=value fields, qid= on every line about a message."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO", stream: object = None) -> None:
    """Log to stderr (or `stream`) as `time level name: message`; idempotent."""
    root = logging.getLogger("tinymail")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
