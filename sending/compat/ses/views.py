"""The SES v2 API's views, at SES's own paths: signed by an SES access key (sending.compat.ses.authentication),
parsed into the one accept pipeline's submissions (sending.compat.ses.content), answered and refused in SES's
shape (sending.compat.ses.errors). A send runs in one transaction on PostgreSQL, as the send API's does."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import parsers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.views import OneTransactionPost, check_body_size, message_serializer
from sending.compat.ses import suppressions
from sending.compat.ses.authentication import SesSignatureAuthentication
from sending.compat.ses.content import bulk_submissions, send_email_submission
from sending.compat.ses.errors import as_ses_error, bad_request, exception_handler, refusal_error, ses_json_response
from sending.errors import Refused
from sending.intake.accept import Caller, accept
from sending.intake.submission import Prepared


class AnyJsonParser(parsers.JSONParser):
    """The SDKs send JSON as application/json or application/x-amz-json-1.x; a body is JSON either way."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise bad_request("The JSON body is nested too deeply.") from exc


@extend_schema(exclude=True)  # SES's API, documented by AWS and in the README's table, not in Postwerk's schema
class SesView(APIView):
    authentication_classes = [SesSignatureAuthentication]
    parser_classes = [AnyJsonParser]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return exception_handler

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        # Before the signature check reads the body: one that cannot fit is refused unread (a bulk send may carry
        # one template's worth per entry, as the send API's batch may).
        check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE * 2)
        super().initial(request, *args, **kwargs)

    def body(self, request: Request) -> dict:
        data = request.data if request.body else {}
        if not isinstance(data, dict):
            raise bad_request("The body must be a JSON object.")
        return data


class SesSendView(OneTransactionPost, SesView):
    required_scope = Scope.SEND

    def accept(self, request: Request, submissions: list) -> list[Prepared | Refused]:
        return accept(Caller(request.user.organization, api_key=request.auth), submissions)

    def unavailable(self, exc: DatabaseError) -> HttpResponseBase:
        return ses_json_response(as_ses_error(exc))


class SendEmailView(SesSendView):
    """SendEmail: POST /v2/email/outbound-emails, Content Simple, Raw or Template."""

    def post(self, request: Request) -> Response:
        submission = send_email_submission(self.body(request), message_serializer())
        (result,) = self.accept(request, [submission])
        if isinstance(result, Refused):
            raise result
        return Response({"MessageId": str(result.message.id)})


class SendBulkEmailView(SesSendView):
    """SendBulkEmail: POST /v2/email/outbound-bulk-emails, one template message per entry, each refused alone."""

    def post(self, request: Request) -> Response:
        submissions = bulk_submissions(self.body(request), message_serializer())
        results = []
        for result in self.accept(request, submissions):
            if isinstance(result, Refused):
                error = refusal_error(result)
                results.append({"Status": error.bulk_status, "Error": error.message})
            else:
                results.append({"Status": "SUCCESS", "MessageId": str(result.message.id)})
        return Response({"BulkEmailEntryResults": results})


class SuppressedDestinationsView(SesView):
    """PutSuppressedDestination (PUT) and ListSuppressedDestinations (GET) on /v2/email/suppression/addresses."""

    required_scope = Scope.SUPPRESSIONS

    def put(self, request: Request) -> Response:
        suppressions.destination_put(request.auth, self.body(request))
        return Response({})

    def get(self, request: Request) -> Response:
        return Response(suppressions.destinations_list(request.user.organization, request.query_params))


class SuppressedDestinationView(SesView):
    """GetSuppressedDestination (GET) and DeleteSuppressedDestination (DELETE) on .../addresses/{EmailAddress}."""

    required_scope = Scope.SUPPRESSIONS

    def get(self, request: Request, address: str) -> Response:
        return Response({"SuppressedDestination": suppressions.destination_get(request.user.organization, address)})

    def delete(self, request: Request, address: str) -> Response:
        suppressions.destination_delete(request.auth, address)
        return Response({})
