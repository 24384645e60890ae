"""What the apps built on sending (verification, the dashboard's plain reads) may use of it: a small, stable
interface, so that sending's rooms can change without them. `lint-imports` holds verification to it."""

from __future__ import annotations

from sending.api.errors import ApiError, error_body
from sending.api.renderers import CsvRenderer
from sending.feedback.suppressions import suppressed_addresses

__all__ = ["ApiError", "CsvRenderer", "error_body", "suppressed_addresses"]
