"""Log output for every `ttsq` command: text by default, one JSON object a line for shippers.

`TTS_LOG_FORMAT=json` is read from the environment here, before any settings are parsed, so
the very first lines (a bad setting, Redis unreachable) are already in the shipper's format.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Lines about one job start `[job <id>]` (`common/worker/joblog.py`, the job store).
_JOB_ID = re.compile(r"^\[job ([0-9a-f]+)\]")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, job_id where the line has one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            match = _JOB_ID.match(message)
            job_id = match.group(1) if match else None
        if job_id is not None:
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str | None = None) -> None:
    fmt = (log_format or os.environ.get("TTS_LOG_FORMAT", "text")).lower()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
