"""The held-mail API: list held recipients by filter, and release or cancel them in bulk (dry run first)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.models import Recipient
from sending.reputation.holds import HELD_REASONS, HeldFilter, held_cancel, held_queryset, held_release


class HeldFilterSerializer(serializers.Serializer):
    domain = serializers.CharField(required=False, allow_blank=True, help_text="Sender domain name")
    held_reason = serializers.ChoiceField(choices=HELD_REASONS, required=False)
    api_key_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)  # a database id
    smtp_credential_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)  # a database id
    address = serializers.CharField(required=False, allow_blank=True, help_text="Part of the recipient address")
    held_before = serializers.DateTimeField(required=False)
    held_after = serializers.DateTimeField(required=False)
    tag = serializers.CharField(required=False, allow_blank=True)


class HeldActionSerializer(HeldFilterSerializer):
    dry_run = serializers.BooleanField(default=False, help_text="Only count what would change")

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        # A misspelt filter must not widen a bulk release or cancel to everything.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class HeldRecipientSerializer(serializers.ModelSerializer):
    message_id = serializers.UUIDField(read_only=True)
    sender_domain = serializers.CharField(source="message.domain.name", default=None, read_only=True)
    subject = serializers.CharField(source="message.subject", read_only=True)
    tags = serializers.ListField(source="message.tags", child=serializers.CharField(), read_only=True)
    api_key_id = serializers.IntegerField(source="message.api_key_id", allow_null=True, read_only=True)
    smtp_credential_id = serializers.IntegerField(source="message.smtp_credential_id", allow_null=True, read_only=True)

    class Meta:
        model = Recipient
        fields = [
            "id",
            "message_id",
            "address",
            "held_reason",
            "held_at",
            "sender_domain",
            "subject",
            "tags",
            "api_key_id",
            "smtp_credential_id",
        ]


class HeldPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = ("held_at", "id")


def _filter(data: dict) -> HeldFilter:
    return HeldFilter(**{name: value for name, value in data.items() if name != "dry_run" and value != ""})


def _query_filter(request: Request) -> HeldFilter:
    params = request.query_params
    data: dict = {}
    for name in ("domain", "address", "tag"):
        if params.get(name):
            data[name] = params[name]
    reason = params.get("held_reason")
    if reason:
        if reason not in HELD_REASONS:
            raise ApiError(400, "Unknown held_reason.", {"held_reason": [f"One of {', '.join(HELD_REASONS)}."]})
        data["held_reason"] = reason
    for name in ("api_key_id", "smtp_credential_id"):
        if params.get(name):
            try:
                data[name] = int(params[name])
                if not 0 < data[name] < 2**63:  # past a database integer: OverflowError, a 500 (tests/fuzz)
                    raise ValueError(name)
            except ValueError:
                raise ApiError(400, f"Bad {name}.", {name: ["An integer id."]}, "invalid") from None
    data["held_before"] = datetime_param(params, "held_before")
    data["held_after"] = datetime_param(params, "held_after")
    return HeldFilter(**data)


_FILTER_PARAMETERS = [
    OpenApiParameter("domain", str, description="Sender domain name"),
    OpenApiParameter("held_reason", str, enum=list(HELD_REASONS)),
    OpenApiParameter("api_key_id", int),
    OpenApiParameter("smtp_credential_id", int),
    OpenApiParameter("address", str, description="Part of the recipient address"),
    OpenApiParameter("held_before", str, description="ISO 8601 date-time"),
    OpenApiParameter("held_after", str, description="ISO 8601 date-time"),
    OpenApiParameter("tag", str),
]

_COUNT = inline_serializer(
    "HeldActionResult", {"dry_run": serializers.BooleanField(), "count": serializers.IntegerField()}
)


def _actor(request: Request) -> str:
    return f"api-key:{request.auth.name}" if request.auth is not None else "api"


class HeldView(APIView):
    required_scope = Scope.REPUTATION
    pagination_class = HeldPagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(
        parameters=_FILTER_PARAMETERS,
        responses={200: HeldRecipientSerializer(many=True)},
        summary="Held recipients (paused sender or over the send limit)",
    )
    def get(self, request: Request) -> Response:
        qs = held_queryset(request.user.organization.pk, _query_filter(request)).select_related("message__domain")
        qs = qs.defer("message__raw")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(HeldRecipientSerializer(page, many=True).data)


class HeldReleaseView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(
        request=HeldActionSerializer,
        responses={200: _COUNT},
        summary="Release held mail by filter (mail of a scope still paused stays held)",
    )
    def post(self, request: Request) -> Response:
        body = HeldActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dry_run = body.validated_data["dry_run"]
        count = held_release(
            request.user.organization.pk, _filter(body.validated_data), actor=_actor(request), dry_run=dry_run
        )
        return Response({"dry_run": dry_run, "count": count})


class HeldCancelView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(request=HeldActionSerializer, responses={200: _COUNT}, summary="Cancel held mail by filter")
    def post(self, request: Request) -> Response:
        body = HeldActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dry_run = body.validated_data["dry_run"]
        count = held_cancel(
            request.user.organization.pk, _filter(body.validated_data), actor=_actor(request), dry_run=dry_run
        )
        return Response({"dry_run": dry_run, "count": count})
