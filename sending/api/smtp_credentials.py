"""The SMTP credentials API: create (password shown once), list, show, revoke. Scoped to the caller."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import SmtpCredential
from accounts.scopes import Scope
from accounts.services import smtp_credential_create, smtp_credential_revoke
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.domains.service import DomainError, normalize_domain
from sending.models import Domain


class SmtpCredentialSerializer(serializers.ModelSerializer):
    allowed_domains = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = SmtpCredential
        fields = [
            "id",
            "name",
            "username",
            "allowed_domains",
            "allowed_networks",
            "sandbox",
            "active",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]


class SmtpCredentialCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    allowed_domains = serializers.ListField(child=serializers.CharField(max_length=253), required=False, default=list)
    allowed_networks = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    sandbox = serializers.BooleanField(
        required=False, default=False, help_text="Its mail is captured by the sandbox, never delivered."
    )


class SmtpCredentialCreatedSerializer(SmtpCredentialSerializer):
    password = serializers.CharField(read_only=True, help_text="Shown once; only a hash is kept.")

    class Meta(SmtpCredentialSerializer.Meta):
        fields = [*SmtpCredentialSerializer.Meta.fields, "password"]


class SmtpCredentialsView(APIView):
    required_scope = Scope.KEYS

    @extend_schema(responses={200: SmtpCredentialSerializer(many=True)}, summary="List SMTP credentials")
    def get(self, request: Request) -> Response:
        credentials = SmtpCredential.objects.filter(organization=request.user.organization).prefetch_related(
            "allowed_domains"
        )
        return Response(SmtpCredentialSerializer(credentials.order_by("created_at"), many=True).data)

    @extend_schema(
        request=SmtpCredentialCreateSerializer,
        responses={201: SmtpCredentialCreatedSerializer},
        summary="Create an SMTP credential",
    )
    def post(self, request: Request) -> Response:
        organization = request.user.organization
        serializer = SmtpCredentialCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if SmtpCredential.objects.filter(organization=organization, name=data["name"]).exists():
            raise ApiError(400, "A credential with this name exists.", {"name": ["Already in use."]}, "invalid")
        domains = []
        for i, name in enumerate(data["allowed_domains"]):
            try:
                domain = Domain.objects.filter(organization=organization, name=normalize_domain(name)).first()
            except DomainError:
                domain = None
            if domain is None:
                raise ApiError(
                    400, "Unknown domain.", {"allowed_domains": {i: [f"{name} is not your domain."]}}, "invalid"
                )
            domains.append(domain)
        try:
            credential, password = smtp_credential_create(
                organization=organization,
                name=data["name"],
                domains=domains,
                networks=data["allowed_networks"],
                sandbox=data["sandbox"],
            )
        except ValueError as exc:
            raise ApiError(400, str(exc), {"allowed_networks": [str(exc)]}, "invalid") from exc
        body = SmtpCredentialSerializer(credential).data
        body["password"] = password
        return Response(body, status=status.HTTP_201_CREATED)


class SmtpCredentialDetailView(APIView):
    required_scope = Scope.KEYS

    def _get(self, request: Request, credential_id: int) -> SmtpCredential:
        return owned_or_404(SmtpCredential, request.user.organization, "SMTP credential", pk=credential_id)

    @extend_schema(responses={200: SmtpCredentialSerializer}, summary="An SMTP credential")
    def get(self, request: Request, credential_id: int) -> Response:
        return Response(SmtpCredentialSerializer(self._get(request, credential_id)).data)

    @extend_schema(responses={200: SmtpCredentialSerializer}, summary="Revoke an SMTP credential")
    def delete(self, request: Request, credential_id: int) -> Response:
        credential = smtp_credential_revoke(credential=self._get(request, credential_id))
        return Response(SmtpCredentialSerializer(credential).data)
