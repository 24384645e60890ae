"""The webhooks API: endpoints (create, change, delete, rotate the secret, send a test), their deliveries with
every attempt, and replaying a delivery by hand. Scoped to the caller's organization."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.scoping import owned_or_404
from sending.api.serializers import NextAttemptField
from sending.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from sending.webhooks.dispatch import ReplayRefused, delivery_replay, endpoint_test
from sending.webhooks.endpoints import (
    EndpointError,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from sending.webhooks.manage import webhook_endpoint_delete


class WebhookEndpointSerializer(serializers.ModelSerializer):
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Until then requests also carry a signature made with the previous secret",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "streams",
            "payload_format",
            "enabled",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "last_success_at",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="Shown once: the key of the Postwerk-Signature HMAC")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), required=False, default=list
    )
    streams = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        help_text="Only events of mail on these streams (names); empty: every stream",
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False, default=True)
    payload_format = serializers.ChoiceField(
        choices=WebhookEndpoint.PayloadFormat.choices,
        required=False,
        default=WebhookEndpoint.PayloadFormat.POSTWERK,
        help_text="`postmark`: Postmark's webhook JSON, for receivers written for Postmark",
    )


class RotateSecretSerializer(serializers.Serializer):
    overlap = serializers.IntegerField(
        min_value=0,
        max_value=30 * 24 * 3600,
        required=False,
        help_text="Seconds the previous secret keeps signing too (default POSTWERK_WEBHOOK_SECRET_OVERLAP)",
    )


class TestSendSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=EventType.choices, required=False, default=EventType.DELIVERED)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["id", "trigger", "started_at", "duration_ms", "status_code", "error", "response_excerpt", "ip"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.CharField(allow_null=True, read_only=True)
    next_attempt_at = NextAttemptField(
        (WebhookDelivery.State.SUCCEEDED, WebhookDelivery.State.FAILED, WebhookDelivery.State.CANCELLED),
        help_text="When the next attempt is due; null once the delivery succeeded, failed or was cancelled",
    )
    event_type = serializers.SerializerMethodField()

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "state",
            "trigger",
            "attempts",
            "next_attempt_at",
            "last_status",
            "last_error",
            "succeeded_at",
            "created_at",
        ]

    def get_event_type(self, delivery: WebhookDelivery) -> str | None:
        if delivery.event_id is None:
            return (delivery.payload or {}).get("type")
        return delivery.event.type


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "attempt_log"]


def _endpoint(request: Request, endpoint_id: object) -> WebhookEndpoint:
    return owned_or_404(WebhookEndpoint, request.user.organization, "webhook endpoint", pk=endpoint_id)


def _invalid(exc: EndpointError) -> ApiError:
    return ApiError(400, exc.message, {exc.field: [exc.message]}, "invalid")


class WebhooksView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True)}, summary="List webhook endpoints")
    def get(self, request: Request) -> Response:
        endpoints = WebhookEndpoint.objects.filter(organization=request.user.organization).order_by("created_at")
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        summary="Add a webhook endpoint (its secret is shown once)",
    )
    def post(self, request: Request) -> Response:
        serializer = WebhookEndpointInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            endpoint, secret = webhook_endpoint_create(
                organization=request.user.organization, **serializer.validated_data
            )
        except EndpointError as exc:
            raise _invalid(exc) from exc
        body = {**WebhookEndpointSerializer(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(responses={200: WebhookEndpointSerializer}, summary="A webhook endpoint")
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(WebhookEndpointSerializer(_endpoint(request, endpoint_id)).data)

    @extend_schema(
        request=WebhookEndpointInputSerializer(partial=True),
        responses={200: WebhookEndpointSerializer},
        summary="Change a webhook endpoint (enabling it again forgets its failures)",
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        serializer = WebhookEndpointInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k in request.data}
        try:
            webhook_endpoint_update(endpoint=endpoint, **changes)
        except EndpointError as exc:
            raise _invalid(exc) from exc
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook endpoint and its delivery log")
    def delete(self, request: Request, endpoint_id: str) -> Response:
        webhook_endpoint_delete(endpoint=_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(request=RotateSecretSerializer, responses={200: dict}, summary="Rotate the signing secret")
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        serializer = RotateSecretSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        secret = webhook_endpoint_rotate_secret(endpoint=endpoint, overlap=serializer.validated_data.get("overlap"))
        expires = endpoint.previous_secret_expires_at
        return Response({"secret": secret, "previous_secret_expires_at": expires.isoformat() if expires else None})


class WebhookTestView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(
        request=TestSendSerializer,
        responses={200: WebhookAttemptSerializer},
        summary="Send a sample event to the endpoint now and show what it answered",
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        serializer = TestSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        attempt = endpoint_test(endpoint=endpoint, event_type=serializer.validated_data["type"])
        ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
        return Response({"ok": ok, "delivery_id": str(attempt.delivery_id), **WebhookAttemptSerializer(attempt).data})


class DeliveryPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = "-created_at"


class WebhookDeliveriesView(APIView):
    required_scope = Scope.WEBHOOKS
    pagination_class = DeliveryPagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=WebhookDelivery.State.values),
            OpenApiParameter("event", str, description="An event id"),
        ],
        responses={200: WebhookDeliverySerializer(many=True)},
        summary="An endpoint's deliveries, newest first",
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        qs = WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event").defer("event__details")
        state = request.query_params.get("state")
        if state:
            if state not in WebhookDelivery.State.values:
                raise ApiError(400, "Unknown state.", {"state": [", ".join(WebhookDelivery.State.values)]}, "invalid")
            qs = qs.filter(state=state)
        event = request.query_params.get("event")
        if event:
            if not event.isdigit():
                raise ApiError(400, "Bad event id.", {"event": ["An event id."]}, "invalid")
            qs = qs.filter(event_id=int(event))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


def _delivery(request: Request, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    endpoint = _endpoint(request, endpoint_id)
    delivery = (
        WebhookDelivery.objects.filter(endpoint=endpoint, pk=delivery_id)
        .select_related("endpoint", "event")
        .prefetch_related("attempt_log")
        .first()
    )
    if delivery is None:
        raise ApiError(404, "No such delivery.", code="not_found")
    return delivery


class WebhookDeliveryDetailView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(responses={200: WebhookDeliveryDetailSerializer}, summary="A delivery and each attempt")
    def get(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        return Response(WebhookDeliveryDetailSerializer(_delivery(request, endpoint_id, delivery_id)).data)


class WebhookDeliveryReplayView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer}, summary="Send a delivery again now")
    def post(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        delivery = _delivery(request, endpoint_id, delivery_id)
        try:
            delivery_replay(delivery=delivery)
        except ReplayRefused as exc:
            raise ApiError(409, str(exc), code="conflict") from exc
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
