"""Every API error is JSON: a message, and for bad input the fields that were wrong."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sending.api.exceptions import ApiError
from sending.errors import Refused

log = logging.getLogger(__name__)

__all__ = ["ApiError", "NotFoundView", "error_body", "exception_handler"]


def error_body(message: str, *, code: str, fields: dict | None = None) -> dict:
    body: dict = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    return body


UNAVAILABLE = error_body(
    "The database could not store the request; nothing was accepted. Try again later.", code="unavailable"
)
UNAVAILABLE_RETRY_AFTER = "30"


def unavailable_response(exc: DatabaseError) -> JsonResponse:
    """The 503 for a database error outside DRF's handling (the request's own BEGIN or COMMIT failed)."""
    log.exception("database error in the API", exc_info=exc)
    response = JsonResponse(UNAVAILABLE, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = UNAVAILABLE_RETRY_AFTER
    return response


def exception_handler(exc, context):  # type: ignore[no-untyped-def]
    if isinstance(exc, ApiError):
        body = error_body(exc.message, code=exc.error_code, fields=exc.fields) | exc.extra
        return Response(body, status=exc.status_code)
    if isinstance(exc, Refused):  # the accept pipeline's refusals, each with its own status
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return Response(
            error_body(exc.message, code=exc.code, fields=exc.fields), status=exc.http_status, headers=headers
        )
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
    if isinstance(exc, DatabaseError):
        # The database is down or cannot write (a full disk): a temporary condition, and nothing was committed.
        log.exception("database error in the API", exc_info=exc)
        unavailable = Response(UNAVAILABLE, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        unavailable["Retry-After"] = UNAVAILABLE_RETRY_AFTER
        return unavailable
    # An unexpected error: the client still gets JSON, never a traceback page.
    log.exception("unhandled API error", exc_info=exc)
    return Response(
        error_body("Internal error; nothing was accepted.", code="internal"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


@method_decorator(csrf_exempt, name="dispatch")
class NotFoundView(View):
    """A URL under /api/ that matches no route (a malformed id, say): JSON like every other API error, not
    Django's HTML page. It has no handler methods: every method gets this answer."""

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
        return JsonResponse(error_body("Not found.", code="not_found"), status=404)
