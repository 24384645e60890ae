"""The events API: the organization's event stream, filtered and cursor-paginated, in the webhook JSON shape."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.events import event_list, event_payload
from sending.models import EventType


class EventOutSerializer(serializers.Serializer):
    """What one event looks like, in the API and in webhook bodies (for the schema; rendered by event_payload)."""

    id = serializers.CharField()
    type = serializers.ChoiceField(choices=EventType.choices)
    timestamp = serializers.DateTimeField()
    organization_id = serializers.IntegerField()
    message_id = serializers.UUIDField(allow_null=True)
    recipient_id = serializers.UUIDField(allow_null=True)
    recipient = serializers.CharField(allow_null=True, help_text="The recipient's address")
    sequence = serializers.IntegerField(allow_null=True, help_text="The recipient's event count: orders its events")
    domain = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField(child=serializers.CharField())
    details = serializers.DictField(help_text="Type-specific: SMTP reply, bounce kind and reason, URL, user agent, IP")


class EventPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = "-id"


FILTERS = [
    OpenApiParameter("type", str, description=f"One or more (comma-separated) of {', '.join(EventType.values)}"),
    OpenApiParameter("recipient", str, description="A recipient id or address"),
    OpenApiParameter("message", str, description="A message id"),
    OpenApiParameter("tag", str),
    OpenApiParameter("since", str, description="ISO 8601 date-time"),
    OpenApiParameter("until", str, description="ISO 8601 date-time"),
]


def _types(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    types = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise ApiError(400, "Unknown event type.", {"type": [f"One of {', '.join(EventType.values)}."]}, "invalid")
    return types


def _message(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise ApiError(400, "Bad message id.", {"message": ["A message id (UUID)."]}, "invalid") from exc


class EventsView(APIView):
    required_scope = Scope.MESSAGES_READ
    pagination_class = EventPagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(parameters=FILTERS, responses={200: EventOutSerializer(many=True)}, summary="List events")
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = event_list(
            organization=request.user.organization,
            types=_types(params.get("type")),
            recipient=params.get("recipient") or None,
            message_id=_message(params.get("message")),
            tag=params.get("tag") or None,
            since=datetime_param(params, "since"),
            until=datetime_param(params, "until"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([event_payload(e) for e in page])


class EventDetailView(APIView):
    required_scope = Scope.MESSAGES_READ

    @extend_schema(responses={200: EventOutSerializer}, summary="One event")
    def get(self, request: Request, event_id: int) -> Response:
        event = event_list(organization=request.user.organization).filter(pk=event_id).first()
        if event is None:
            raise ApiError(404, "No such event.", code="not_found")
        return Response(event_payload(event))
