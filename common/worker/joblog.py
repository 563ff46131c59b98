"""Worker logging with the job id on every line."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class JobLog(logging.LoggerAdapter[logging.Logger]):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[job {self.extra['job_id'] if self.extra else '?'}] {msg}", kwargs


def job_log(name: str, job_id: str) -> JobLog:
    return JobLog(logging.getLogger(name), {"job_id": job_id})
