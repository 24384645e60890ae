"""The inbound routes API (`/api/v1/inbound-routes`), and enabling a domain for inbound mail
(`POST /api/v1/domains/{id}/inbound`). Scoped to the caller's organization."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.inbound.routes import (
    RouteError,
    inbound_domain_set,
    inbound_route_create,
    inbound_route_delete,
    inbound_route_update,
)
from sending.models import Domain, InboundRoute


class InboundRouteSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where a post route posts; empty for other actions")
    endpoint_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="The route's webhook endpoint")

    class Meta:
        model = InboundRoute
        fields = [
            "id",
            "match",
            "kind",
            "action",
            "url",
            "endpoint_id",
            "dmarc_reject",
            "spam",
            "description",
            "created_at",
            "updated_at",
        ]

    def get_url(self, route: InboundRoute) -> str:
        return route.endpoint.url if route.endpoint is not None and route.action == InboundRoute.Action.POST else ""


class InboundRouteCreatedSerializer(InboundRouteSerializer):
    secret = serializers.CharField(
        allow_null=True, help_text="Shown once: the key of a post route's Postwerk-Signature"
    )

    class Meta(InboundRouteSerializer.Meta):
        fields = [*InboundRouteSerializer.Meta.fields, "secret"]


class InboundRouteInputSerializer(serializers.Serializer):
    match = serializers.CharField(max_length=320, help_text="support@inbound.acme.example, orders+*@…, *@…")
    action = serializers.ChoiceField(choices=InboundRoute.Action.choices)
    url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    dmarc_reject = serializers.ChoiceField(
        choices=InboundRoute.DmarcReject.choices,
        required=False,
        default=InboundRoute.DmarcReject.ACCEPT,
        help_text="Mail failing DMARC under p=reject: accept, hold, or refuse (550 5.7.1 after DATA)",
    )
    spam = serializers.ChoiceField(
        choices=InboundRoute.DmarcReject.choices,
        required=False,
        default=InboundRoute.DmarcReject.ACCEPT,
        help_text="Mail the spam check calls spam: accept, hold, or refuse (550 5.7.1 after DATA)",
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class DomainInboundSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    subdomain = serializers.CharField(max_length=63, required=False, allow_blank=True, default="")


def _invalid(exc: RouteError) -> ApiError:
    return ApiError(400, exc.message, {exc.field: [exc.message]}, "invalid")


def _route(request: Request, route_id: object) -> InboundRoute:
    rows = InboundRoute.objects.select_related("endpoint", "organization")
    return owned_or_404(rows, request.user.organization, "inbound route", pk=route_id)


def _created(route: InboundRoute, secret: str | None, code: int) -> Response:
    return Response({**InboundRouteSerializer(route).data, "secret": secret}, status=code)


class InboundRoutesView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(responses={200: InboundRouteSerializer(many=True)}, summary="List inbound routes")
    def get(self, request: Request) -> Response:
        routes = InboundRoute.objects.filter(organization=request.user.organization).select_related("endpoint")
        return Response(InboundRouteSerializer(routes.order_by("match"), many=True).data)

    @extend_schema(
        request=InboundRouteInputSerializer,
        responses={201: InboundRouteCreatedSerializer},
        summary="Add an inbound route (a post route's signing secret is shown once)",
    )
    def post(self, request: Request) -> Response:
        serializer = InboundRouteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            route, secret = inbound_route_create(organization=request.user.organization, **serializer.validated_data)
        except RouteError as exc:
            raise _invalid(exc) from exc
        return _created(route, secret, status.HTTP_201_CREATED)


class InboundRouteDetailView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(responses={200: InboundRouteSerializer}, summary="An inbound route")
    def get(self, request: Request, route_id: str) -> Response:
        return Response(InboundRouteSerializer(_route(request, route_id)).data)

    @extend_schema(
        request=InboundRouteInputSerializer(partial=True),
        responses={200: InboundRouteCreatedSerializer},
        summary="Change an inbound route (a new secret when it became a post route)",
    )
    def patch(self, request: Request, route_id: str) -> Response:
        route = _route(request, route_id)
        serializer = InboundRouteInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k in request.data}
        try:
            route, secret = inbound_route_update(route=route, **changes)
        except RouteError as exc:
            raise _invalid(exc) from exc
        return _created(route, secret, status.HTTP_200_OK)

    @extend_schema(responses={204: None}, summary="Delete an inbound route (its endpoint is disabled, its log kept)")
    def delete(self, request: Request, route_id: str) -> Response:
        inbound_route_delete(route=_route(request, route_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DomainInboundView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(
        request=DomainInboundSerializer,
        responses={200: dict},
        summary="Enable or disable inbound mail for a domain or one of its subdomains",
    )
    def post(self, request: Request, domain_id: int) -> Response:
        domain = owned_or_404(Domain, request.user.organization, "domain", pk=domain_id)
        serializer = DomainInboundSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            inbound_domain_set(domain=domain, **serializer.validated_data)
        except RouteError as exc:
            raise _invalid(exc) from exc
        return Response(
            {
                "inbound_enabled": domain.inbound_enabled,
                "inbound_host": domain.inbound_host,
                "inbound_mx_ok": domain.inbound_mx_ok,
            }
        )
