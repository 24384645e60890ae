"""Postmark's send endpoints on Postwerk: POST /email, /email/batch, /email/withTemplate, /email/batchWithTemplates.

Each translates Postmark's fields to the send API's (fields.postwerk_message), then takes the very path the send
API takes: the same validation (its serializer), the same accept pipeline (sending.intake.accept through
sending.api.views.accept_submissions), one transaction per request (OneTransactionPost). Only the answer is Postmark's.
The token is a Postwerk API key in `X-Postmark-Server-Token`, with the scope `send`.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication
from accounts.scopes import Scope
from sending.api.parsers import JSONParser
from sending.api.views import (
    OneTransactionPost,
    Results,
    accept_submissions,
    check_body_size,
    item_submission,
    message_serializer,
)
from sending.compat.postmark.errors import (
    INACTIVE_RECIPIENT,
    TOO_MANY_BATCH_MESSAGES,
    PostmarkError,
    exception_error,
    refused_error,
)
from sending.compat.postmark.fields import PostmarkInvalid, Translated, postwerk_message
from sending.errors import Refused
from sending.intake.submission import ApiSubmission, Prepared
from sending.models import RecipientState

HEADER = "HTTP_X_POSTMARK_SERVER_TOKEN"
INACTIVE_NOTE = (
    "Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression."
)


class PostmarkTokenAuthentication(ApiKeyAuthentication):
    """A Postwerk API key carried in Postmark's `X-Postmark-Server-Token` header."""

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        token = request.META.get(HEADER, "").strip()
        if not token:
            return None  # the permission check answers 401 (ErrorCode 10)
        return self.token_authenticate(request, token)

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return "X-Postmark-Server-Token"


class PostmarkView(APIView):
    """Postmark's authentication, JSON, and errors: every refusal is `{"ErrorCode", "Message"}`."""

    authentication_classes = [PostmarkTokenAuthentication]
    parser_classes = [JSONParser]
    schema = None  # Postmark's API, documented by Postmark and in the README, not in Postwerk's OpenAPI schema

    def handle_exception(self, exc: Exception) -> Response:
        error = exception_error(exc)
        if error is None:
            return super().handle_exception(exc)
        return error_response(error)


def error_response(error: PostmarkError) -> Response:
    return Response(error.body(), status=error.status)


def _translated(item: object, *, template: bool) -> tuple[ApiSubmission | Refused, Translated | None]:
    try:
        translated = postwerk_message(item, template=template)
    except PostmarkInvalid as exc:
        return Refused(str(exc), code="invalid"), None
    return item_submission(translated.message, message_serializer()), translated


def _answer(result: Prepared | Refused, translated: Translated | None, given: object) -> dict:
    """One message's Postmark answer: ErrorCode 0 with its MessageID, or the error."""
    if isinstance(result, Refused):
        return refused_error(result, translated.addresses if translated else None).body()
    recipients = result.recipients
    inactive = [r.address.lower() for r in recipients if r.state == RecipientState.SUPPRESSED]
    if inactive and len(inactive) == len(recipients):
        found = ", ".join(inactive)
        return {
            "ErrorCode": INACTIVE_RECIPIENT,
            "Message": "You tried to send to recipient(s) that have been marked as inactive. "
            f"Found inactive addresses: {found}. {INACTIVE_NOTE}",
        }
    if inactive:
        message = (
            f"Message OK, but will not deliver to these inactive addresses: {', '.join(inactive)}. {INACTIVE_NOTE}"
        )
    elif any(r.state == RecipientState.HELD for r in recipients):
        message = "Message accepted, but delivery may be delayed."
    else:
        message = "OK"
    body: dict = {}
    to = given.get("To") if isinstance(given, dict) else None
    if to:
        body["To"] = to
    body.update(
        {
            "SubmittedAt": result.message.created_at.isoformat(),
            "MessageID": str(result.message.id),
            "ErrorCode": 0,
            "Message": message,
        }
    )
    return body


def _send(request: Request, items: list, *, template: bool) -> tuple[list[dict], Response | None]:
    """Accept these Postmark messages as the send API would; their Postmark answers, in order."""
    pairs = [_translated(item, template=template) for item in items]

    def answers(results: Results) -> list[dict]:
        return [_answer(r, t, item) for r, (_, t), item in zip(results, pairs, items, strict=True)]

    results = accept_submissions(request, [submission for submission, _ in pairs], 200, answers)
    if isinstance(results, Response):  # a concurrent request with the same Idempotency-Key answered first
        return [], results
    return answers(results), None


def _one(request: Request, *, template: bool) -> Response:
    check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE)
    answers, stored = _send(request, [request.data], template=template)
    if stored is not None:
        return stored
    answer = answers[0]
    status = 200 if answer["ErrorCode"] == 0 else refused_status(answer)
    return Response(answer, status=status)


def refused_status(answer: dict) -> int:
    """The HTTP status Postmark gives a message's ErrorCode (401 for a token, 429 for a rate, 422 otherwise)."""
    return {10: 401, 429: 429, 100: 500}.get(answer["ErrorCode"], 422)


def _many(request: Request, items: object, *, template: bool) -> Response:
    check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE * 2)
    if not isinstance(items, list):
        raise exceptions.ParseError()
    limit = settings.POSTWERK_BATCH_MAX_MESSAGES
    if len(items) > limit:
        error = PostmarkError(422, TOO_MANY_BATCH_MESSAGES, f"Too many messages: at most {limit} per batch.")
        return error_response(error)
    if not items:
        return Response([], status=200)
    answers, stored = _send(request, items, template=template)
    return stored if stored is not None else Response(answers, status=200)


class EmailView(OneTransactionPost, PostmarkView):
    required_scope = Scope.SEND

    def post(self, request: Request) -> Response:
        return _one(request, template=False)


class EmailWithTemplateView(OneTransactionPost, PostmarkView):
    required_scope = Scope.SEND

    def post(self, request: Request) -> Response:
        return _one(request, template=True)


class EmailBatchView(OneTransactionPost, PostmarkView):
    required_scope = Scope.SEND

    def post(self, request: Request) -> Response:
        return _many(request, request.data, template=False)


class EmailBatchWithTemplatesView(OneTransactionPost, PostmarkView):
    required_scope = Scope.SEND

    def post(self, request: Request) -> Response:
        data = request.data
        return _many(request, data.get("Messages") if isinstance(data, dict) else None, template=True)
