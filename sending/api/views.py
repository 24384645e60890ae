"""The send API's views: parse, call one service, shape the answer."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..composer import HeaderError
from ..domain_guard import domain_refusal
from ..domains import sender_domain
from ..models import Domain, RecipientState
from ..selectors import events_by_recipient, message_get, message_list
from ..submission import (
    DuplicateRequest,
    IdempotencyRecord,
    MessageTooLarge,
    Prepared,
    message_prepare,
    messages_submit,
    recipients_screen,
)
from . import idempotency
from .errors import ApiError
from .pagination import CursorPagination
from .params import datetime_param
from .serializers import (
    AcceptedMessageSerializer,
    MessageDetailSerializer,
    MessageSummarySerializer,
    SendMessageSerializer,
)


def _check_body_size(request: Request, limit: int) -> None:
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


def _prepare(
    request: Request,
    data: object,
    serializer: SendMessageSerializer | None = None,
    domains: dict[str, Domain | None] | None = None,
) -> Prepared:
    """Validate one message and build it. Raises ApiError (400, 403, 413) or ValidationError.

    A batch passes one serializer and one `domains` dict for all its items: building DRF's fields and looking
    up the sender domain once per request instead of once per message."""
    serializer = serializer or SendMessageSerializer()
    validated = serializer.run_validation(data)
    draft = serializer.to_draft(validated)
    organization = request.user.organization
    domains = {} if domains is None else domains
    if draft.sender.domain not in domains:
        domains[draft.sender.domain] = sender_domain(organization, draft.sender.domain)
    domain = domains[draft.sender.domain]
    if domain is None:
        raise ApiError(
            403,
            f"{draft.sender.domain} is not a sending domain of this organization.",
            {"from": [f"Add and verify {draft.sender.domain} before sending from it."]},
            "domain_not_allowed",
        )
    refusal = domain_refusal(domain, draft.sender.domain)
    if refusal is not None:
        raise ApiError(403, refusal.message, {"from": [refusal.message]}, refusal.code)
    try:
        prepared = message_prepare(organization=organization, api_key=request.auth, domain=domain, draft=draft)
    except MessageTooLarge as exc:
        raise ApiError(413, str(exc), code="too_large") from exc
    except HeaderError as exc:  # a value the serializer let through but the built header would not keep
        raise ApiError(400, "The request has invalid fields.", _field_errors(exc.field, str(exc)), "invalid") from exc
    prepared.report_suppressed = validated.get("report_suppressed", False)
    return prepared


def _field_errors(path: tuple[str | int, ...], problem: str) -> dict:
    """{"headers": {"X-Name": [problem]}} for the path ("headers", "X-Name"), as DRF nests field errors."""
    errors: dict | list = [problem]
    for part in reversed(path or ("non_field_errors",)):
        errors = {str(part): errors}
    assert isinstance(errors, dict)
    return errors


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
    # `held`: accepted while the sender is paused or over its send limit (sending.holds).
    overall = next((s for s in (RecipientState.QUEUED, RecipientState.HELD) if s in states), "suppressed")
    return {
        "id": str(prepared.message.id),
        "message_id": prepared.message.message_id,
        "status": str(overall),
        "recipients": recipients,
    }


def _submit_once(request: Request, prepared: list[Prepared], status_code: int, body: dict) -> Response:
    """Commit, remembering the answer under the Idempotency-Key if one was given."""
    organization = request.user.organization
    key = idempotency.request_key(request)
    record = None
    if key is not None:
        record = IdempotencyRecord(key, idempotency.request_hash(request.data), status_code, body)
    try:
        messages_submit(organization=organization, prepared=prepared, idempotency=record)
    except DuplicateRequest:
        stored = idempotency.stored_answer(organization=organization, key=key, fingerprint=record.request_hash)
        return Response(stored.response, status=stored.status_code)
    return Response(body, status=status_code)


def _replay(request: Request) -> Response | None:
    key = idempotency.request_key(request)
    if key is None:
        return None
    stored = idempotency.stored_answer(
        organization=request.user.organization, key=key, fingerprint=idempotency.request_hash(request.data)
    )
    return Response(stored.response, status=stored.status_code) if stored else None


class MessagePagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "-created_at"


class MessagesView(APIView):
    pagination_class = MessagePagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(
        request=SendMessageSerializer,
        responses={202: AcceptedMessageSerializer},
        parameters=[OpenApiParameter(idempotency.HEADER, str, OpenApiParameter.HEADER, required=False)],
        summary="Send a message",
    )
    def post(self, request: Request) -> Response:
        _check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE)
        replay = _replay(request)
        if replay is not None:
            return replay
        prepared = _prepare(request, request.data)
        recipients_screen(organization=request.user.organization, prepared=[prepared])
        return _submit_once(request, [prepared], status.HTTP_202_ACCEPTED, _accepted(prepared))

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


class MessageBatchView(APIView):
    @extend_schema(request=BatchSerializer, responses={200: dict}, summary="Send up to 500 messages in one request")
    def post(self, request: Request) -> Response:
        limit = settings.POSTWERK_BATCH_MAX_MESSAGES
        _check_body_size(request, settings.POSTWERK_MAX_MESSAGE_SIZE * 2)
        items = request.data.get("messages") if isinstance(request.data, dict) else request.data
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Expected a list of messages.", {"messages": ["A non-empty list."]}, "invalid")
        if len(items) > limit:
            raise ApiError(400, f"At most {limit} messages per batch.", {"messages": [f"Got {len(items)}."]}, "invalid")
        replay = _replay(request)
        if replay is not None:
            return replay
        results: list[dict | Prepared] = []
        prepared = []
        serializer, domains = SendMessageSerializer(), {}
        for item in items:
            try:
                one = _prepare(request, item, serializer, domains)
            except (ApiError, serializers.ValidationError) as exc:
                results.append(_item_error(exc))
                continue
            prepared.append(one)
            results.append(one)
        recipients_screen(organization=request.user.organization, prepared=prepared)
        # In a batch `status` is each item's HTTP-like code; recipients say `queued` or `suppressed`.
        results = [{**_accepted(r), "status": 202} if isinstance(r, Prepared) else r for r in results]
        body = {"accepted": len(prepared), "rejected": len(items) - len(prepared), "results": results}
        if not prepared:
            return Response(body, status=status.HTTP_200_OK)
        return _submit_once(request, prepared, status.HTTP_200_OK, body)


def _item_error(exc: Exception) -> dict:
    if isinstance(exc, ApiError):
        out = {"status": exc.status_code, "error": exc.error_code, "message": exc.message}
        if exc.fields:
            out["fields"] = exc.fields
        return out
    assert isinstance(exc, serializers.ValidationError)
    return {
        "status": 400,
        "error": "invalid",
        "message": "The message has invalid fields.",
        "fields": exc.detail,
    }


class MessageDetailView(APIView):
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
