"""Every API error is JSON: a message, and for bad input the fields that were wrong."""

from __future__ import annotations

import logging

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with its own status, message and optional field errors."""

    def __init__(self, status_code: int, message: str, fields: dict | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.status_code, self.message, self.fields, self.error_code = status_code, message, fields, code


def error_body(message: str, *, code: str, fields: dict | None = None) -> dict:
    body: dict = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    return body


def exception_handler(exc, context):  # type: ignore[no-untyped-def]
    if isinstance(exc, ApiError):
        return Response(error_body(exc.message, code=exc.error_code, fields=exc.fields), status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return Response(
            error_body("The request has invalid fields.", code="invalid", fields=fields),
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        code = getattr(getattr(exc, "detail", None), "code", None) or "error"
        response.data = error_body(str(detail), code=str(code))
        return response
    if isinstance(exc, Http404):
        return Response(error_body("Not found.", code="not_found"), status=status.HTTP_404_NOT_FOUND)
    # An unexpected error: the client still gets JSON, never a traceback page.
    log.exception("unhandled API error", exc_info=exc)
    return Response(
        error_body("Internal error; nothing was accepted.", code="internal"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
