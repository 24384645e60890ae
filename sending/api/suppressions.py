"""The suppression list API: list (filters), add, remove (who and when are kept), CSV export and import.
Scoped to the caller's organization."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from mail.addresses import AddressError, parse_mailbox
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.api.parsers import JSONParser
from sending.feedback.suppression_csv import suppressions_csv, suppressions_import
from sending.feedback.suppressions import suppression_add, suppression_remove
from sending.models import Suppression


class CsvParser(BaseParser):
    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        return stream.read().decode("utf-8-sig", "replace")


class SuppressionSerializer(serializers.ModelSerializer):
    source_message_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Suppression
        fields = [
            "address",
            "reason",
            "details",
            "source_message_id",
            "created_at",
            "created_by",
            "expires_at",
            "removed_at",
            "removed_by",
        ]


class SuppressionCreateSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=320)
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices, default=Suppression.Reason.MANUAL)
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")

    def validate_address(self, value: str) -> str:
        try:
            return parse_mailbox(value).envelope_address.lower()
        except AddressError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class SuppressionPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = "-created_at"


def _caller(request: Request) -> str:
    return f"api-key:{request.auth.name}" if request.auth is not None else "api"


def _filtered(request: Request):  # type: ignore[no-untyped-def]
    params = request.query_params
    qs = Suppression.objects.filter(organization=request.user.organization)
    if params.get("include_removed", "").lower() not in ("1", "true", "yes"):
        now = timezone.now()
        qs = qs.filter(removed_at__isnull=True).exclude(expires_at__lte=now)
    reason = params.get("reason")
    if reason:
        if reason not in Suppression.Reason.values:
            raise ApiError(400, "Unknown reason.", {"reason": [f"One of {', '.join(Suppression.Reason.values)}."]})
        qs = qs.filter(reason=reason)
    if params.get("address"):
        qs = qs.filter(address__icontains=params["address"].strip().lower())
    since, until = datetime_param(params, "since"), datetime_param(params, "until")
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs


FILTERS = [
    OpenApiParameter("reason", str, enum=Suppression.Reason.values),
    OpenApiParameter("address", str, description="Part of the address"),
    OpenApiParameter("since", str, description="ISO 8601 date-time"),
    OpenApiParameter("until", str, description="ISO 8601 date-time"),
    OpenApiParameter("include_removed", bool),
]


class SuppressionsView(APIView):
    required_scope = Scope.SUPPRESSIONS
    pagination_class = SuppressionPagination  # the schema shows the list answer as the cursor page it is

    @extend_schema(parameters=FILTERS, responses={200: SuppressionSerializer(many=True)}, summary="List suppressions")
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(_filtered(request), request, view=self)
        return paginator.get_paginated_response(SuppressionSerializer(page, many=True).data)

    @extend_schema(request=SuppressionCreateSerializer, responses={201: SuppressionSerializer}, summary="Suppress")
    def post(self, request: Request) -> Response:
        serializer = SuppressionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        row, created = suppression_add(
            organization_id=request.user.organization.pk,
            address=data["address"],
            reason=data["reason"],
            details={"note": data["note"]} if data["note"] else {},
            created_by=_caller(request),
        )
        return Response(SuppressionSerializer(row).data, status=status.HTTP_201_CREATED if created else 200)


class SuppressionDetailView(APIView):
    required_scope = Scope.SUPPRESSIONS

    @extend_schema(responses={204: None}, summary="Lift a suppression (the entry is kept, marked removed)")
    def delete(self, request: Request, address: str) -> Response:
        if not suppression_remove(
            organization_id=request.user.organization.pk, address=address, removed_by=_caller(request)
        ):
            raise ApiError(404, f"{address} is not suppressed.", code="not_found")
        return Response(status=status.HTTP_204_NO_CONTENT)


class SuppressionExportView(APIView):
    required_scope = Scope.SUPPRESSIONS

    @extend_schema(parameters=FILTERS, responses={(200, "text/csv"): str}, summary="Export suppressions as CSV")
    def get(self, request: Request) -> HttpResponse:
        rows = _filtered(request).order_by("created_at").iterator(chunk_size=2000)
        response = HttpResponse(suppressions_csv(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="suppressions.csv"'
        return response


class SuppressionImportView(APIView):
    required_scope = Scope.SUPPRESSIONS
    parser_classes = [CsvParser, JSONParser]

    @extend_schema(
        request={"text/csv": str},
        responses={200: dict},
        summary="Import suppressions from CSV (an `address` column, optional `reason`)",
    )
    def post(self, request: Request) -> Response:
        text = request.data if isinstance(request.data, str) else (request.data or {}).get("csv")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Send CSV with an address column.", {"csv": ["Empty or missing."]}, "invalid")
        try:
            result = suppressions_import(
                organization_id=request.user.organization.pk, text=text, created_by=_caller(request)
            )
        except ValueError as exc:
            raise ApiError(400, str(exc), {"csv": [str(exc)]}) from exc
        errors = [{"line": line, "error": error} for line, error in result.errors]
        return Response({"added": result.added, "existing": result.existing, "errors": errors})
