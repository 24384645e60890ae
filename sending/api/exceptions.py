"""The API's own exception (apart from errors.py, which imports DRF's views: the permission classes DRF loads
while importing those views must not import it back)."""

from __future__ import annotations

from rest_framework import exceptions


class ApiError(exceptions.APIException):
    """An error with its own status, message and optional field errors."""

    def __init__(
        self, status_code: int, message: str, fields: dict | None = None, code: str = "error", **extra: object
    ) -> None:
        super().__init__(message)
        self.status_code, self.message, self.fields, self.error_code = status_code, message, fields, code
        self.extra = extra  # more top-level keys of the body (a 403's `required_scope`)
