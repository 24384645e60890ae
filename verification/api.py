"""The verification API: one address answered inline, or a list as a job with progress and downloadable results.
Scoped to the caller's organization and limited per organization (POSTWERK_VERIFY_HOURLY_LIMIT addresses/hour)."""

from __future__ import annotations

import csv
import io
import uuid

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from accounts.scopes import Scope
from sending.public import ApiError, CsvRenderer
from verification.models import VerificationJob
from verification.services import (
    QuotaExceeded,
    verification_job_answers,
    verification_job_create,
    verification_job_get,
    verification_job_summary,
    verification_quota_check,
    verification_single,
)

CSV_FIELDS = [
    "address",
    "normalized",
    "result",
    "reasons",
    "syntax_valid",
    "syntax_error",
    "domain_exists",
    "mx_kind",
    "mx_hosts",
    "disposable",
    "role_account",
    "free_provider",
    "suppressed",
    "catch_all",
    "smtp_code",
    "smtp_enhanced",
    "smtp_text",
    "smtp_mx_host",
    "did_you_mean",
]


class VerificationRequestSerializer(serializers.Serializer):
    address = serializers.CharField(required=False, max_length=1000)
    addresses = serializers.ListField(
        child=serializers.CharField(max_length=1000, allow_blank=True), required=False, allow_empty=False
    )

    def validate_addresses(self, value: list[str]) -> list[str]:
        limit = settings.POSTWERK_VERIFY_MAX_ADDRESSES
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} addresses per request; got {len(value)}.")
        return value

    def validate(self, attrs: dict) -> dict:
        if ("address" in attrs) == ("addresses" in attrs):
            raise serializers.ValidationError({"address": ["Give either `address` (one) or `addresses` (a list)."]})
        return attrs


def _quota(organization: Organization, count: int) -> None:
    try:
        verification_quota_check(organization=organization, count=count)
    except QuotaExceeded as exc:
        # 429 with Retry-After (RFC 6585 §4), through DRF so the header is set.
        raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from exc


def _links(job: VerificationJob) -> dict[str, str]:
    url = reverse("verification-detail", kwargs={"job_id": job.pk})
    return {"self": url, "results_json": f"{url}/results.json", "results_csv": f"{url}/results.csv"}


def _job(request: Request, job_id: uuid.UUID) -> VerificationJob:
    job = verification_job_get(organization=request.user.organization, job_id=job_id)
    if job is None:
        raise ApiError(404, "No such verification.", code="not_found")
    return job


class VerificationsView(APIView):
    required_scope = Scope.VERIFICATIONS

    @extend_schema(
        request=VerificationRequestSerializer,
        responses={200: dict, 202: dict},
        summary="Verify one address (answered inline) or up to 1,000 (a job: 202)",
    )
    def post(self, request: Request) -> Response:
        serializer = VerificationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = request.user.organization
        data = serializer.validated_data
        if "address" in data:
            _quota(organization, 1)
            job, answer = verification_single(organization=organization, api_key=request.auth, address=data["address"])
            return Response({"id": str(job.pk), **answer})
        _quota(organization, len(data["addresses"]))
        job = verification_job_create(organization=organization, api_key=request.auth, addresses=data["addresses"])
        body = {**verification_job_summary(job), "links": _links(job)}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["links"]["self"]})


class VerificationDetailView(APIView):
    required_scope = Scope.VERIFICATIONS

    @extend_schema(responses={200: dict}, summary="A verification's status, progress and counts per result")
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        job = _job(request, job_id)
        return Response({**verification_job_summary(job), "links": _links(job)})


class VerificationResultsJsonView(APIView):
    required_scope = Scope.VERIFICATIONS

    @extend_schema(
        responses={200: dict},
        operation_id="v1_verifications_results_json",
        summary="Every address's result (null while not yet checked)",
    )
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        job = _job(request, job_id)
        return Response({**verification_job_summary(job), "results": verification_job_answers(job)})


class VerificationResultsCsvView(APIView):
    required_scope = Scope.VERIFICATIONS
    renderer_classes = [JSONRenderer, CsvRenderer]

    def handle_exception(self, exc):  # type: ignore[no-untyped-def]
        # An error is JSON, said so in its Content-Type, even when the client asked for CSV.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        responses={(200, "text/csv"): str},
        operation_id="v1_verifications_results_csv",
        summary="Every address's result as CSV",
    )
    def get(self, request: Request, job_id: uuid.UUID) -> HttpResponse:
        job = _job(request, job_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for answer in verification_job_answers(job):
            writer.writerow(_csv_row(answer))
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="verification-{job.pk}.csv"'
        return response


def _csv_row(answer: dict) -> list[str]:
    checks = answer["checks"] or {}
    syntax = checks.get("syntax") or {}
    domain = checks.get("domain") or {}
    mx = checks.get("mx") or {}
    smtp = checks.get("smtp") or {}
    return [
        answer["address"],
        answer["normalized"] or "",
        answer["result"] or "",
        ";".join(answer["reasons"]),
        _cell(syntax.get("valid")),
        _text(syntax.get("error")),
        _cell(domain.get("exists")),
        mx.get("kind") or "",
        ";".join(mx.get("hosts") or []),
        _cell(checks.get("disposable")),
        _cell(checks.get("role_account")),
        _cell(checks.get("free_provider")),
        _cell(checks.get("suppressed")),
        _cell(checks.get("catch_all")),
        str(smtp.get("code") or ""),
        smtp.get("enhanced") or "",
        _text(smtp.get("text")),
        smtp.get("mx_host") or "",
        checks.get("did_you_mean") or "",
    ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    return "true" if value is True else "false" if value is False else str(value)


def _text(value: object) -> str:
    # Reply texts come from other people's servers; a leading = + - @ would be a formula in a spreadsheet.
    text = str(value or "")
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
