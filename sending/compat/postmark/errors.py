"""Postwerk's refusals as Postmark answers them: `{"ErrorCode": n, "Message": text}` with Postmark's status.

Postmark answers a bad or missing token with HTTP 401 and ErrorCode 10, a request it will not send with HTTP 422
and a numbered ErrorCode (300 invalid email request, 400/401 sender signature, 406 inactive recipient, 1101/1100
template, 1235 message stream), too many requests with 429, and its own trouble with 500. Translated here, once,
for every compatible view (sending.compat.postmark.views).
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions

from sending.api.exceptions import ApiError
from sending.compat.postmark.fields import invalid_message
from sending.errors import Refused

BAD_TOKEN = 10
MAINTENANCE = 100
INVALID_EMAIL_REQUEST = 300
SENDER_SIGNATURE_NOT_FOUND = 400
SENDER_SIGNATURE_NOT_CONFIRMED = 401
INVALID_JSON = 402
JSON_REQUIRED = 409
INACTIVE_RECIPIENT = 406
TOO_MANY_BATCH_MESSAGES = 410
RATE_LIMIT_EXCEEDED = 429
MESSAGE_NOT_FOUND = 701
TEMPLATE_INVALID = 1100
TEMPLATE_NOT_FOUND = 1101
MESSAGE_STREAM_NOT_FOUND = 1235


@dataclass(frozen=True)
class PostmarkError:
    status: int
    error_code: int
    message: str

    def body(self) -> dict:
        return {"ErrorCode": self.error_code, "Message": self.message}


def token_refused(message: str = "") -> PostmarkError:
    text = "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."
    return PostmarkError(401, BAD_TOKEN, f"{text} {message}".strip())


def refused_error(refused: Refused, addresses: dict[str, list[str]] | None = None) -> PostmarkError:
    """One message's refusal by the accept pipeline (or its validation) in Postmark's terms."""
    code, fields = refused.code, refused.fields or {}
    if code == "domain_not_allowed":
        return PostmarkError(422, SENDER_SIGNATURE_NOT_FOUND, refused.message)
    if code in ("domain_unverified", "dmarc_alignment"):
        return PostmarkError(422, SENDER_SIGNATURE_NOT_CONFIRMED, refused.message)
    if code == "unknown_template":
        return PostmarkError(422, TEMPLATE_NOT_FOUND, refused.message)
    if code.startswith("template_"):
        return PostmarkError(422, TEMPLATE_INVALID, refused.message)
    if code == "stream_not_allowed" or (code == "invalid" and set(fields) == {"stream"}):
        return PostmarkError(422, MESSAGE_STREAM_NOT_FOUND, refused.message)
    if refused.http_status == 429:
        return PostmarkError(429, RATE_LIMIT_EXCEEDED, refused.message)
    if refused.http_status >= 500:
        return PostmarkError(500, MAINTENANCE, refused.message)
    if code == "invalid" and fields:
        return PostmarkError(422, INVALID_EMAIL_REQUEST, invalid_message(fields, addresses or {}))
    return PostmarkError(422, INVALID_EMAIL_REQUEST, refused.message)


def exception_error(exc: Exception) -> PostmarkError | None:
    """The Postmark answer to an exception a compatible view raised; None for one that is a bug (a 500)."""
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return token_refused("" if isinstance(exc, exceptions.NotAuthenticated) else str(exc.detail))
    if isinstance(exc, ApiError) and exc.status_code == 403:
        # The token is a Postwerk key that may not do this (its scope, its creator's role): to a Postmark client
        # that is a token without the rights, which Postmark answers like a wrong token.
        return token_refused(exc.message)
    if isinstance(exc, exceptions.PermissionDenied):
        return token_refused(str(exc.detail))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return PostmarkError(422, JSON_REQUIRED, "JSON required: send the body with Content-Type: application/json.")
    if isinstance(exc, exceptions.ParseError):
        return PostmarkError(422, INVALID_JSON, "Received invalid JSON input.")
    if isinstance(exc, Refused):
        return refused_error(exc)
    if isinstance(exc, ApiError):
        if exc.status_code == 503:
            return PostmarkError(500, MAINTENANCE, exc.message)
        return PostmarkError(422, INVALID_EMAIL_REQUEST, exc.message)
    if isinstance(exc, exceptions.ValidationError):
        return PostmarkError(422, INVALID_EMAIL_REQUEST, invalid_message(exc.detail, {}))
    if isinstance(exc, exceptions.Throttled):
        return PostmarkError(429, RATE_LIMIT_EXCEEDED, "Rate limit exceeded.")
    if isinstance(exc, exceptions.MethodNotAllowed | exceptions.NotFound):
        return PostmarkError(404 if isinstance(exc, exceptions.NotFound) else 405, 0, str(exc.detail))
    return None
