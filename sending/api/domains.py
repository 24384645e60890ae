"""The domains API: add a sender domain, see what to publish and how its checks stand, verify now, rotate
DKIM, delete. Everything is scoped to the caller's organization."""

from __future__ import annotations

from django.db import IntegrityError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.domains.platform_names import PlatformNamesNotSet, platform_name_problems, platform_names_message
from sending.domains.service import (
    DomainError,
    DomainInUse,
    dns_records,
    domain_delete,
    domain_get_or_create,
    domain_rotate_dkim,
)
from sending.domains.verification import domain_verify
from sending.models import DkimKey, DnsCheck, Domain


class DnsCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = DnsCheck
        fields = ["name", "status", "message", "details", "checked_at", "changed_at", "ok_at"]


class DkimKeySerializer(serializers.ModelSerializer):
    record_name = serializers.CharField(read_only=True)
    record_value = serializers.CharField(read_only=True)

    class Meta:
        model = DkimKey
        fields = [
            "selector",
            "algorithm",
            "state",
            "record_name",
            "record_value",
            "created_at",
            "verified_at",
            "retired_at",
        ]


class DomainSerializer(serializers.ModelSerializer):
    verified = serializers.SerializerMethodField()
    return_path_host = serializers.CharField(read_only=True)
    inbound_host = serializers.CharField(read_only=True)

    class Meta:
        model = Domain
        fields = [
            "id",
            "name",
            "verified",
            "verified_at",
            "ownership_verified_at",
            "dkim_ok",
            "spf_ok",
            "return_path_ok",
            "return_path_host",
            "dmarc",
            "allow_subdomains",
            "inbound_enabled",
            "inbound_host",
            "inbound_mx_ok",
            "checked_at",
            "next_check_at",
            "created_at",
        ]

    def get_verified(self, domain: Domain) -> bool:
        return domain.verified_at is not None


class DomainDetailSerializer(DomainSerializer):
    dns_records = serializers.SerializerMethodField(
        help_text="The records to publish; empty while `dns_records_unavailable` says why none can be given."
    )
    dns_records_unavailable = serializers.SerializerMethodField(
        help_text="Why no records can be recommended (the platform's own DNS names are not set), naming the "
        "settings the operator must set; null when `dns_records` is complete."
    )
    dkim_keys = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    class Meta(DomainSerializer.Meta):
        fields = [*DomainSerializer.Meta.fields, "dns_records", "dns_records_unavailable", "dkim_keys", "checks"]

    def get_dns_records(self, domain: Domain) -> list[dict]:
        try:
            return dns_records(domain)
        except PlatformNamesNotSet:
            return []

    def get_dns_records_unavailable(self, domain: Domain) -> str | None:
        problems = platform_name_problems()
        return platform_names_message(problems) if problems else None

    def get_dkim_keys(self, domain: Domain) -> list[dict]:
        return DkimKeySerializer(domain.dkim_keys.order_by("created_at"), many=True).data

    def get_checks(self, domain: Domain) -> list[dict]:
        return DnsCheckSerializer(domain.dns_checks.order_by("name"), many=True).data


class DomainCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=253)
    dkim_ed25519 = serializers.BooleanField(default=False, help_text="Also sign with Ed25519 (RFC 8463).")
    return_path_subdomain = serializers.CharField(max_length=63, required=False, default="", allow_blank=True)
    allow_subdomains = serializers.BooleanField(default=False)


class RotateSerializer(serializers.Serializer):
    algorithm = serializers.ChoiceField(choices=DkimKey.Algorithm.choices, default=DkimKey.Algorithm.RSA)


def _domain(request: Request, domain_id: int) -> Domain:
    return owned_or_404(Domain, request.user.organization, "domain", pk=domain_id)


class DomainsView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(responses={200: DomainSerializer(many=True)}, summary="List sender domains")
    def get(self, request: Request) -> Response:
        domains = Domain.objects.filter(organization=request.user.organization).order_by("name")
        return Response(DomainSerializer(domains, many=True).data)

    @extend_schema(request=DomainCreateSerializer, responses={201: DomainDetailSerializer}, summary="Add a domain")
    def post(self, request: Request) -> Response:
        serializer = DomainCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            domain, created = domain_get_or_create(
                organization=request.user.organization,
                name=data["name"],
                ed25519=data["dkim_ed25519"],
                return_path_subdomain=data["return_path_subdomain"],
            )
        except DomainError as exc:
            field = "return_path_subdomain" if "label" in str(exc) else "name"
            code = "conflict" if "another organization" in str(exc) else "invalid"
            raise ApiError(409 if code == "conflict" else 400, str(exc), {field: [str(exc)]}, code) from exc
        except IntegrityError as exc:  # two concurrent creates of one name
            raise ApiError(409, "The domain was just added.", {"name": ["Already exists."]}, "conflict") from exc
        if not created:
            raise ApiError(409, f"{domain.name} is already added.", {"name": ["Already exists."]}, "conflict")
        if data["allow_subdomains"]:
            domain.allow_subdomains = True
            domain.save(update_fields=["allow_subdomains"])
        return Response(DomainDetailSerializer(domain).data, status=status.HTTP_201_CREATED)


class DomainDetailView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(responses={200: DomainDetailSerializer}, summary="A domain, its records and check results")
    def get(self, request: Request, domain_id: int) -> Response:
        return Response(DomainDetailSerializer(_domain(request, domain_id)).data)

    @extend_schema(responses={204: None}, summary="Delete a domain (once its queued mail has left)")
    def delete(self, request: Request, domain_id: int) -> Response:
        try:
            domain_delete(domain=_domain(request, domain_id))
        except DomainInUse as exc:
            raise ApiError(409, str(exc), code="conflict") from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class DomainVerifyView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(request=None, responses={200: DomainDetailSerializer}, summary="Check the domain's DNS now")
    def post(self, request: Request, domain_id: int) -> Response:
        domain = _domain(request, domain_id)
        domain_verify(domain=domain)
        domain.refresh_from_db()
        return Response(DomainDetailSerializer(domain).data)


class DomainRotateDkimView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(request=RotateSerializer, responses={201: DkimKeySerializer}, summary="Start a DKIM key rotation")
    def post(self, request: Request, domain_id: int) -> Response:
        serializer = RotateSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        key = domain_rotate_dkim(domain=_domain(request, domain_id), algorithm=serializer.validated_data["algorithm"])
        return Response(DkimKeySerializer(key).data, status=status.HTTP_201_CREATED)
