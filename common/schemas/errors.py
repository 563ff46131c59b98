"""The one error envelope every 4xx and 5xx answer carries."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every 4xx and 5xx answer: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorBody
