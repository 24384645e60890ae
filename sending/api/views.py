"""The send API's views: parse, call one service, shape the answer."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api import idempotency
from sending.api.errors import ApiError, unavailable_response
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.api.serializers import (
    AcceptedMessageSerializer,
    MessageDetailSerializer,
    MessageSummarySerializer,
    SendMessageSerializer,
)
from sending.delivery.queueing import enqueues_collected, shared_publisher
from sending.delivery.scheduled import message_cancel
from sending.errors import Refused
from sending.intake.accept import Caller, accept
from sending.intake.submission import ApiSubmission, DuplicateRequest, IdempotencyRecord, Prepared
from sending.models import RecipientState
from sending.selectors import events_by_recipient, message_get, message_list

Results = list[Prepared | Refused]


def check_body_size(request: Request, limit: int) -> None:
    # base64 attachments grow by a third; refuse before reading a body that cannot fit.
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit * 4 // 3 + 1024 * 1024:
        raise ApiError(
            413,
            f"The request body is {length} bytes; messages are limited to {limit} bytes.",
            code="too_large",
        )


_serializers = threading.local()


def message_serializer() -> SendMessageSerializer:
    """This thread's SendMessageSerializer: DRF builds a serializer's fields (deep copies of the declared ones)
    per instance, a good part of a one-message request's CPU; validating keeps no state on the instance, so one per
    thread serves every request (settings are read at validation time)."""
    serializer = getattr(_serializers, "send", None)
    if serializer is None:
        serializer = _serializers.send = SendMessageSerializer()
    return serializer


def _submission(data: object, serializer: SendMessageSerializer) -> ApiSubmission:
    """Validate one message's fields (raises ValidationError). A batch passes one serializer for all its items:
    DRF's fields are built once per request instead of once per message."""
    validated = serializer.run_validation(data)
    return ApiSubmission(
        serializer.to_draft(validated),
        validated.get("report_suppressed", False),
        serializer.to_options(validated),
        template=serializer.template_ref(validated),
    )


def accept_submissions(
    request: Request, submissions: list[ApiSubmission | Refused], status_code: int, answer: Callable[[Results], dict]
) -> Results | Response:
    """Run the accept pipeline, remembering `answer` under the Idempotency-Key if one was given. A concurrent
    request that took the same key first gets that request's stored answer."""
    organization = request.user.organization
    key = idempotency.request_key(request)

    def remember(results: Results) -> IdempotencyRecord | None:
        if key is None:
            return None
        return IdempotencyRecord(key, idempotency.request_hash(request.data), status_code, answer(results))

    try:
        return accept(Caller(organization, api_key=request.auth), submissions, remember=remember)
    except DuplicateRequest:
        stored = idempotency.stored_answer(
            organization=organization, key=key, fingerprint=idempotency.request_hash(request.data)
        )
        return Response(stored.response, status=stored.status_code)


def _accepted(prepared: Prepared) -> dict:
    """The 202 body. Each recipient's status is the truth (`queued` or `suppressed`); with `report_suppressed`
    the suppressed ones also say why and since when."""
    recipients = []
    for r in prepared.recipients:
        entry = {"id": str(r.id), "address": r.address, "status": r.state}
        suppression = prepared.suppressed.get(r.address)
        if suppression is not None and prepared.report_suppressed:
            entry["suppression"] = {"reason": suppression.reason, "since": suppression.created_at.isoformat()}
        recipients.append(entry)
    states = {r.state for r in prepared.recipients}
    # `held`: accepted while the sender is paused or over its send limit (sending.reputation.holds).
    overall = next(
        (s for s in (RecipientState.QUEUED, RecipientState.SCHEDULED, RecipientState.HELD) if s in states),
        "suppressed",
    )
    message = prepared.message
    answer = {"id": str(message.id), "message_id": message.message_id, "status": str(overall), "recipients": recipients}
    # Additive fields: where and when it goes.
    answer["stream"] = message.stream.name if message.stream is not None else "transactional"
    if message.send_at is not None:
        answer["send_at"] = message.send_at.isoformat()
    if message.deliver_by is not None:
        answer["deliver_by"] = message.deliver_by.isoformat()
    return answer


def _replay(request: Request) -> Response | None:
    key = idempotency.request_key(request)
    if key is None:
        return None
    stored = idempotency.stored_answer(
        organization=request.user.organization, key=key, fingerprint=idempotency.request_hash(request.data)
    )
    return Response(stored.response, status=stored.status_code) if stored else None


class OneTransactionPost:
    """A send request (POST) runs in ONE database transaction, from the API key lookup to the stored rows: its
    reads (key, sender domain, suppressions, Idempotency-Key) and its writes (messages, recipients, events, the
    idempotency record, a send-limit count) commit together, once, before the 202 leaves. Each read outside a
    transaction would be a transaction of its own (PostgreSQL counts and flushes them one by one).

    A refusal (any answer but 2xx) rolls back whatever the request wrote (the key's last-used time, a send-limit
    count it took); a failed BEGIN or COMMIT is a 503 with nothing accepted, never a 202. The delivery tasks of
    what committed are handed to the process's publisher (sending.delivery.queueing.shared_publisher); should the
    process die before it publishes them, the sweep does once their enqueue lease runs out."""

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if request.method != "POST" or connection.vendor == "sqlite":
            # SQLite (the embedded default) opens every transaction with BEGIN IMMEDIATE, its one write lock: held
            # for a whole request it would serialize the requests' MIME building too. Its reads cost no round trip
            # and no flush, so there the store's own transaction stays the only one.
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        try:
            with enqueues_collected() as committed, transaction.atomic():
                response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
                if not 200 <= response.status_code < 300:
                    transaction.set_rollback(True)
        except DatabaseError as exc:
            return self.unavailable(exc)
        # Committed: the delivery tasks go out from the process's publisher thread, batched with other requests'.
        shared_publisher().submit(committed)
        return response

    def unavailable(self, exc: DatabaseError) -> HttpResponseBase:
        """The 503 when the database could not begin or commit (a compatible API answers in its own shape)."""
        return unavailable_response(exc)


class MessagePagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "-created_at"


class MessagesView(OneTransactionPost, APIView):
    required_scope = {"GET": Scope.MESSAGES_READ, "POST": Scope.SEND}
    pagination_class = MessagePagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(
        request=SendMessageSerializer,
        responses={202: AcceptedMessageSerializer},
        parameters=[OpenApiParameter(idempotency.HEADER, str, OpenApiParameter.HEADER, required=False)],
        summary="Send a message",
    )
    def post(self, request: Request) -> Response:
        check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE)
        replay = _replay(request)
        if replay is not None:
            return replay
        submission = _submission(request.data, message_serializer())
        results = accept_submissions(
            request, [submission], status.HTTP_202_ACCEPTED, lambda results: _accepted(results[0])
        )
        if isinstance(results, Response):
            return results
        (result,) = results
        if isinstance(result, Refused):
            raise result
        return Response(_accepted(result), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={200: MessageSummarySerializer(many=True)},
        parameters=[
            OpenApiParameter("status", str, enum=RecipientState.values),
            OpenApiParameter("recipient", str),
            OpenApiParameter("tag", str),
            OpenApiParameter("since", str, description="ISO 8601 date-time"),
            OpenApiParameter("until", str, description="ISO 8601 date-time"),
        ],
        summary="List messages",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        status_filter = params.get("status") or None
        if status_filter and status_filter not in RecipientState.values:
            raise ApiError(
                400, "Unknown status.", {"status": [f"One of {', '.join(RecipientState.values)}."]}, "invalid"
            )
        qs = message_list(
            organization=request.user.organization,
            status=status_filter,
            recipient=params.get("recipient") or None,
            tag=params.get("tag") or None,
            since=datetime_param(params, "since"),
            until=datetime_param(params, "until"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(MessageSummarySerializer(page, many=True).data)


class BatchSerializer(serializers.Serializer):
    messages = SendMessageSerializer(many=True)


class MessageBatchView(OneTransactionPost, APIView):
    required_scope = Scope.SEND

    @extend_schema(request=BatchSerializer, responses={200: dict}, summary="Send up to 500 messages in one request")
    def post(self, request: Request) -> Response:
        limit = settings.POSTWERK_BATCH_MAX_MESSAGES
        check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE * 2)
        items = request.data.get("messages") if isinstance(request.data, dict) else request.data
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Expected a list of messages.", {"messages": ["A non-empty list."]}, "invalid")
        if len(items) > limit:
            raise ApiError(400, f"At most {limit} messages per batch.", {"messages": [f"Got {len(items)}."]}, "invalid")
        replay = _replay(request)
        if replay is not None:
            return replay
        serializer = message_serializer()
        submissions = [item_submission(item, serializer) for item in items]
        results = accept_submissions(request, submissions, status.HTTP_200_OK, _batch_answer)
        if isinstance(results, Response):
            return results
        return Response(_batch_answer(results), status=status.HTTP_200_OK)


def item_submission(item: object, serializer: SendMessageSerializer) -> ApiSubmission | Refused:
    try:
        return _submission(item, serializer)
    except serializers.ValidationError as exc:
        return Refused("The message has invalid fields.", code="invalid", fields=exc.detail)


def _batch_answer(results: Results) -> dict:
    """In a batch `status` is each item's HTTP-like code; recipients say `queued`, `held` or `suppressed`."""
    accepted = sum(isinstance(r, Prepared) for r in results)
    return {
        "accepted": accepted,
        "rejected": len(results) - accepted,
        "results": [{**_accepted(r), "status": 202} if isinstance(r, Prepared) else _item_error(r) for r in results],
    }


def _item_error(refused: Refused) -> dict:
    out = {"status": refused.http_status, "error": refused.code, "message": refused.message}
    if refused.fields:
        out["fields"] = refused.fields
    return out


class MessageDetailView(APIView):
    required_scope = Scope.MESSAGES_READ

    @extend_schema(
        parameters=[OpenApiParameter("message_id", str, OpenApiParameter.PATH)],
        responses={200: MessageDetailSerializer},
        summary="A message and each recipient's delivery",
    )
    def get(self, request: Request, message_id: str) -> Response:
        message = message_get(organization=request.user.organization, message_id=message_id)
        if message is None:
            raise ApiError(404, "No such message.", code="not_found")
        context = {"events_by_recipient": events_by_recipient(message)}
        return Response(MessageDetailSerializer(message, context=context).data)


class MessageCancelView(APIView):
    required_scope = Scope.SEND

    @extend_schema(
        parameters=[OpenApiParameter("message_id", str, OpenApiParameter.PATH)],
        request=None,
        responses={200: dict},
        summary="Cancel what of a message has not gone out yet (scheduled, held or still queued)",
    )
    def post(self, request: Request, message_id: str) -> Response:
        message = message_get(organization=request.user.organization, message_id=message_id)
        if message is None:
            raise ApiError(404, "No such message.", code="not_found")
        actor = f"api_key:{request.auth.pk}" if request.auth is not None else "api"
        cancelled = message_cancel(message, actor=actor)
        if not cancelled:
            raise ApiError(409, "Nothing of this message is waiting to go out any more.", code="already_sent")
        states = dict(message.recipients.values_list("address", "state"))
        return Response({"id": str(message.id), "cancelled": cancelled, "recipients": states})
