"""Errors as SES v2 answers them, translated here once: a JSON body `{"message": ...}` and the error's name in the
`x-amzn-ErrorType` header, which is where botocore's REST-JSON parser reads the ClientError's Code from. Statuses
are those of the sesv2 service model (botocore/data/sesv2/*/service-2.json) and of AWS's authentication errors.

Postwerk's own refusals (sending.errors.Refused, from the one accept pipeline) keep their message; their code
picks the SES error that means the same thing.
"""

from __future__ import annotations

import logging
import uuid

from django.db import DatabaseError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from sending.api.exceptions import ApiError
from sending.compat.ses.signature import SignatureError
from sending.errors import Refused
from sending.reputation.holds import SendingRefused

log = logging.getLogger(__name__)

# The SES errors Postwerk answers with, and their HTTP status (the sesv2 model's httpStatusCode).
STATUS = {
    "MessageRejected": 400,
    "MailFromDomainNotVerifiedException": 400,
    "AccountSuspendedException": 400,
    "SendingPausedException": 400,
    "LimitExceededException": 400,
    "BadRequestException": 400,
    "InvalidNextTokenException": 400,
    "NotFoundException": 404,
    "TooManyRequestsException": 429,
    # AWS's authentication and authorisation errors, common to every service.
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 400,
    "MissingAuthenticationTokenException": 403,
    "AccessDeniedException": 403,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
}

# SendBulkEmail answers each entry with a status instead of an error.
BULK_STATUS = {
    "MessageRejected": "MESSAGE_REJECTED",
    "MailFromDomainNotVerifiedException": "MAIL_FROM_DOMAIN_NOT_VERIFIED",
    "AccountSuspendedException": "ACCOUNT_SUSPENDED",
    "SendingPausedException": "ACCOUNT_SENDING_PAUSED",
    "LimitExceededException": "ACCOUNT_DAILY_QUOTA_EXCEEDED",
    "TooManyRequestsException": "ACCOUNT_THROTTLED",
    "BadRequestException": "INVALID_PARAMETER",
}

# Postwerk's send fields, by the SES field a client gave them in (sending.compat.ses.content).
SES_FIELDS = {
    "from": "FromEmailAddress",
    "to": "Destination.ToAddresses",
    "cc": "Destination.CcAddresses",
    "bcc": "Destination.BccAddresses",
    "reply_to": "ReplyToAddresses",
    "subject": "Content.Simple.Subject.Data",
    "text": "Content.Simple.Body.Text.Data",
    "html": "Content.Simple.Body.Html.Data",
    "headers": "Headers",
    "attachments": "Attachments",
    "metadata": "EmailTags",
    "stream": "ConfigurationSetName",
    "template": "Content.Template.TemplateName",
    "model": "Content.Template.TemplateData",
}


class SesError(Exception):
    """An answer in SES's shape: the error's name (x-amzn-ErrorType) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def status(self) -> int:
        return STATUS[self.code]

    @property
    def bulk_status(self) -> str:
        if self.code == "NotFoundException":
            return "CONFIGURATION_SET_NOT_FOUND" if "Configuration set" in self.message else "TEMPLATE_NOT_FOUND"
        return BULK_STATUS.get(self.code, "FAILED")


def bad_request(message: str) -> SesError:
    return SesError("BadRequestException", message)


def fields_message(fields: object) -> str:
    """Field errors (DRF's nesting, Postwerk's names) as one line naming the SES fields."""
    if not isinstance(fields, dict):
        return "; ".join(str(f) for f in fields) if isinstance(fields, list) else str(fields)
    parts = []
    for name, problems in fields.items():
        first = problems
        while isinstance(first, (list, dict)) and first:
            first = first[0] if isinstance(first, list) else next(iter(first.values()))
        parts.append(f"{SES_FIELDS.get(str(name), str(name))}: {first}")
    return "; ".join(parts) or "The request has invalid fields."


def refusal_error(refused: Refused) -> SesError:
    """The SES error for a refusal of the accept pipeline."""
    fields = refused.fields or {}
    if isinstance(refused, SendingRefused):
        if refused.code == "send_limit_exceeded":
            return SesError("LimitExceededException", refused.message)
        if refused.scope == "organization":  # the whole account, as SES suspends an account for its reputation
            return SesError("AccountSuspendedException", refused.message)
        return SesError("SendingPausedException", refused.message)
    if refused.code == "unknown_template":
        return SesError("NotFoundException", refused.message)
    if "ConfigurationSetName" in fields:
        return SesError("NotFoundException", f"Configuration set does not exist: {refused.message}")
    if refused.code == "mail_from_not_allowed":
        return SesError("MailFromDomainNotVerifiedException", refused.message)
    if refused.http_status in (403, 413) or refused.code == "stream_not_allowed":
        return SesError("MessageRejected", refused.message)
    if refused.http_status == 429:
        return SesError("TooManyRequestsException", refused.message)
    if refused.http_status >= 500:
        return SesError("ServiceUnavailable", refused.message)
    return bad_request(fields_message(fields) if fields else refused.message)


def ses_response(error: SesError) -> Response:
    return Response({"message": error.message}, status=error.status, headers=ses_headers(error))


def ses_json_response(error: SesError) -> JsonResponse:
    """The same answer outside DRF (the request's own BEGIN or COMMIT failed)."""
    return JsonResponse({"message": error.message}, status=error.status, headers=ses_headers(error))


def ses_headers(error: SesError) -> dict[str, str]:
    return {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())}


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception handler for the SES views: every error an SES client can meet, in SES's shape."""
    return ses_response(as_ses_error(exc))


def as_ses_error(exc: Exception) -> SesError:
    if isinstance(exc, SesError):
        return exc
    if isinstance(exc, SignatureError):
        return SesError(exc.code, exc.message)
    if isinstance(exc, Refused):
        return refusal_error(exc)
    if isinstance(exc, exceptions.ValidationError):
        return bad_request(fields_message(exc.detail))
    if isinstance(exc, ApiError):
        if exc.status_code == 403:  # a scope or role the key lacks
            return SesError("AccessDeniedException", exc.message)
        if exc.status_code == 429:
            return SesError("TooManyRequestsException", exc.message)
        if exc.status_code == 413:  # a body over the message size limit
            return SesError("MessageRejected", exc.message)
        return bad_request(fields_message(exc.fields) if exc.fields else exc.message)
    if isinstance(exc, exceptions.Throttled):
        return SesError("TooManyRequestsException", "Maximum sending rate exceeded.")
    if isinstance(exc, (exceptions.AuthenticationFailed, exceptions.NotAuthenticated)):
        # An expired or revoked key: AWS answers an inactive access key like an unknown one.
        return SesError("UnrecognizedClientException", "The security token included in the request is invalid.")
    if isinstance(exc, exceptions.PermissionDenied):
        return SesError("AccessDeniedException", str(exc.detail))
    if isinstance(exc, (exceptions.ParseError, exceptions.UnsupportedMediaType, exceptions.MethodNotAllowed)):
        return bad_request(str(exc.detail))
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return SesError("NotFoundException", "Not found.")
    if isinstance(exc, DatabaseError):
        log.exception("database error in the SES API", exc_info=exc)
        return SesError("ServiceUnavailable", "The request could not be stored; nothing was accepted. Retry.")
    log.exception("unhandled SES API error", exc_info=exc)
    return SesError("InternalFailure", "Internal error; nothing was accepted.")
