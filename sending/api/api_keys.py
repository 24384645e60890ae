"""The API keys API: list (never a secret), create (secret shown once), show, rotate, revoke; and the audit log.

A key creating a key gives it at most its own scopes, limits and lifetime, and the new key acts for the same
member (accounts.services.api_key_create)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, AuditEntry
from accounts.scopes import Scope, ScopeError
from accounts.services import (
    DEFAULT_ROTATION_GRACE,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    ses_access_key_issue,
)
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.api.scoping import owned_or_404
from sending.domains.service import DomainError, normalize_domain
from sending.models import Domain


class ApiKeySerializer(serializers.ModelSerializer):
    domains = serializers.ListField(source="allowed_domains", child=serializers.CharField(), read_only=True)
    streams = serializers.ListField(source="allowed_streams", child=serializers.CharField(), read_only=True)
    networks = serializers.ListField(source="allowed_networks", child=serializers.CharField(), read_only=True)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True, read_only=True)
    active = serializers.BooleanField(source="is_active", read_only=True)
    old_secret_valid_until = serializers.DateTimeField(source="previous_valid_until", allow_null=True, read_only=True)
    ses_access_key_id = serializers.CharField(
        allow_null=True, read_only=True, help_text="Its SES access key's id (the SES-compatible API), if it has one"
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "domains",
            "streams",
            "networks",
            "expires_at",
            "created_by",
            "created_at",
            "last_used_at",
            "rotated_at",
            "old_secret_valid_until",
            "revoked_at",
            "active",
            "ses_access_key_id",
        ]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(child=serializers.CharField(max_length=32), allow_empty=False)
    domains = serializers.ListField(child=serializers.CharField(max_length=253), required=False, default=list)
    streams = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    networks = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ses_access_key = serializers.BooleanField(
        required=False, default=False, help_text="Also issue an SES access key pair acting as this key"
    )


class SesAccessKeySerializer(serializers.Serializer):
    ses_access_key_id = serializers.CharField(read_only=True)
    ses_secret_access_key = serializers.CharField(
        read_only=True, help_text="Shown once; kept encrypted (SigV4 verification needs it back)."
    )


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; only a hash is kept.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ApiKeyNewSerializer(ApiKeyCreatedSerializer):
    ses_secret_access_key = serializers.CharField(
        read_only=True, allow_null=True, help_text="With ses_access_key: its secret, shown once; else null."
    )

    class Meta(ApiKeyCreatedSerializer.Meta):
        fields = [*ApiKeyCreatedSerializer.Meta.fields, "ses_secret_access_key"]


class ApiKeyRotateSerializer(serializers.Serializer):
    grace_period = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=7 * 24 * 3600,
        default=int(DEFAULT_ROTATION_GRACE.total_seconds()),
        help_text="Seconds the old secret keeps working (default a day, 0 to 604800)",
    )


def _domain_names(organization, names: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    for i, name in enumerate(names):
        try:
            domain = Domain.objects.filter(organization=organization, name=normalize_domain(name)).first()
        except DomainError:
            domain = None
        if domain is None:
            raise ApiError(400, "Unknown domain.", {"domains": {i: [f"{name} is not your domain."]}}, "invalid")
        found.append(domain.name)
    return found


class ApiKeysView(APIView):
    required_scope = Scope.KEYS

    @extend_schema(responses={200: ApiKeySerializer(many=True)}, summary="List API keys (never their secrets)")
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(organization=request.user.organization).select_related("created_by")
        return Response(ApiKeySerializer(keys.order_by("created_at", "id"), many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyNewSerializer}, summary="Create an API key")
    def post(self, request: Request) -> Response:
        organization = request.user.organization
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            with transaction.atomic():  # the key and its SES access key, or neither
                api_key, secret = api_key_create(
                    organization=organization,
                    name=data["name"],
                    scopes=data["scopes"],
                    domains=_domain_names(organization, data["domains"]),
                    streams=data["streams"],
                    networks=data["networks"],
                    expires_at=data["expires_at"],
                    parent_key=request.auth,
                )
                ses = ses_access_key_issue(api_key=api_key) if data["ses_access_key"] else None
        except ScopeError as exc:
            if exc.forbidden:  # more than the calling key (or its member) has
                raise ApiError(403, str(exc), {exc.field: [str(exc)]}, "not_grantable") from exc
            raise ApiError(400, str(exc), {exc.field: [str(exc)]}, "invalid") from exc
        if ses is not None:
            api_key.ses_access_key_id = ses[0]
        body = ApiKeySerializer(api_key).data
        body["key"] = secret
        body["ses_secret_access_key"] = ses[1] if ses is not None else None
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    required_scope = Scope.KEYS

    def _get(self, request: Request, key_id: int) -> ApiKey:
        return owned_or_404(
            ApiKey.objects.select_related("created_by"), request.user.organization, "API key", pk=key_id
        )

    @extend_schema(responses={200: ApiKeySerializer}, summary="An API key")
    def get(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeySerializer(self._get(request, key_id)).data)

    @extend_schema(responses={200: ApiKeySerializer}, summary="Revoke an API key (at once, on every process)")
    def delete(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeySerializer(api_key_revoke(api_key=self._get(request, key_id))).data)


class ApiKeyRotateView(APIView):
    required_scope = Scope.KEYS

    @extend_schema(
        request=ApiKeyRotateSerializer,
        responses={200: ApiKeyCreatedSerializer},
        summary="A new secret; the old one keeps working for the grace period",
    )
    def post(self, request: Request, key_id: int) -> Response:
        api_key = owned_or_404(ApiKey, request.user.organization, "API key", pk=key_id)
        serializer = ApiKeyRotateSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        try:
            api_key, secret = api_key_rotate(
                api_key=api_key, grace=timedelta(seconds=serializer.validated_data["grace_period"])
            )
        except ScopeError as exc:
            raise ApiError(409 if exc.field == "key" else 400, str(exc), {exc.field: [str(exc)]}, "invalid") from exc
        body = ApiKeySerializer(api_key).data
        body["key"] = secret
        return Response(body)


class ApiKeySesAccessKeyView(APIView):
    required_scope = Scope.KEYS

    @extend_schema(
        request=None,
        responses={200: SesAccessKeySerializer},
        summary="Issue an SES access key pair acting as this key (replacing its previous one at once)",
    )
    def post(self, request: Request, key_id: int) -> Response:
        api_key = owned_or_404(ApiKey, request.user.organization, "API key", pk=key_id)
        try:
            access_key_id, secret = ses_access_key_issue(api_key=api_key)
        except ScopeError as exc:
            raise ApiError(409, str(exc), {exc.field: [str(exc)]}, "invalid") from exc
        return Response({"ses_access_key_id": access_key_id, "ses_secret_access_key": secret})


# --- the audit log ----------------------------------------------------------------------------------------


class AuditEntrySerializer(serializers.ModelSerializer):
    api_key_id = serializers.IntegerField(allow_null=True, read_only=True)
    user_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor_type",
            "actor",
            "user_id",
            "api_key_id",
            "ip",
            "action",
            "target_type",
            "target_id",
            "target",
            "changes",
        ]


class AuditPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = "-id"


def _int_param(params, name: str) -> int | None:  # type: ignore[no-untyped-def]
    raw = params.get(name)
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"Bad {name}.", {name: ["An id."]}, "invalid")
    return int(raw)


class AuditLogView(APIView):
    required_scope = Scope.AUDIT_READ
    pagination_class = AuditPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, description="An action (api_key.created) or a prefix ending in '.'"),
            OpenApiParameter("actor_type", str, enum=AuditEntry.ActorType.values),
            OpenApiParameter("user_id", int),
            OpenApiParameter("api_key_id", int),
            OpenApiParameter("target_type", str, description="e.g. apikey, domain, webhookendpoint"),
            OpenApiParameter("target_id", str),
            OpenApiParameter("since", str, description="ISO 8601 date-time"),
            OpenApiParameter("until", str, description="ISO 8601 date-time"),
        ],
        responses={200: AuditEntrySerializer(many=True)},
        summary="The audit log, newest first",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = AuditEntry.objects.filter(organization=request.user.organization)
        action = params.get("action")
        if action:
            qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
        actor_type = params.get("actor_type")
        if actor_type:
            if actor_type not in AuditEntry.ActorType.values:
                raise ApiError(
                    400, "Bad actor_type.", {"actor_type": [f"One of {', '.join(AuditEntry.ActorType.values)}."]}
                )
            qs = qs.filter(actor_type=actor_type)
        for name in ("user_id", "api_key_id"):
            value = _int_param(params, name)
            if value is not None:
                qs = qs.filter(**{name: value})
        for name in ("target_type", "target_id"):
            if params.get(name):
                qs = qs.filter(**{name: params[name]})
        since, until = datetime_param(params, "since"), datetime_param(params, "until")
        if since:
            qs = qs.filter(created_at__gte=since)
        if until:
            qs = qs.filter(created_at__lt=until)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AuditEntrySerializer(page, many=True).data)
