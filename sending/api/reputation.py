"""The reputation API: every sending scope's state, numbers, thresholds in force and recent history; resuming an
organization's own circuit breakers; setting stricter thresholds on its keys and credentials."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.models import BlocklistListing, Reputation, ReputationSnapshot
from sending.reputation.blocklists import listings_for
from sending.reputation.rates import (
    THRESHOLD_FIELDS,
    ResumeNotAllowed,
    ThresholdError,
    paused_by_own_breaker,
    reputation_recompute_scope,
    reputation_resume,
    reputation_thresholds_set,
    reputations_for,
    thresholds_for,
)

HISTORY_PER_SCOPE = 10


class BlocklistListingSerializer(serializers.ModelSerializer):
    domain = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = BlocklistListing
        fields = [
            "kind",
            "target",
            "zone",
            "domain",
            "listed",
            "answer",
            "reason",
            "listed_since",
            "checked_at",
            "error",
        ]


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReputationSnapshot
        fields = [
            "state",
            "previous_state",
            "deliveries",
            "hard_bounces",
            "complaints",
            "bounce_rate",
            "complaint_rate",
            "reason",
            "actor",
            "created_at",
        ]


class ThresholdsSerializer(serializers.Serializer):
    bounce_warning = serializers.FloatField(allow_null=True, required=False)
    bounce_pause = serializers.FloatField(allow_null=True, required=False)
    complaint_warning = serializers.FloatField(allow_null=True, required=False)
    complaint_pause = serializers.FloatField(allow_null=True, required=False)


class ReputationSerializer(serializers.ModelSerializer):
    scope_name = serializers.SerializerMethodField()
    thresholds = serializers.SerializerMethodField()
    overrides = serializers.SerializerMethodField()
    resumable = serializers.SerializerMethodField(help_text="Paused by its own breaker: the organization may resume")
    history = serializers.SerializerMethodField()

    class Meta:
        model = Reputation
        fields = [
            "id",
            "scope",
            "scope_id",
            "scope_name",
            "state",
            "deliveries",
            "hard_bounces",
            "complaints",
            "bounce_rate",
            "complaint_rate",
            "computed_at",
            "changed_at",
            "reason",
            "window_start",
            "thresholds",
            "overrides",
            "resumable",
            "resumed_at",
            "resumed_by",
            "resume_reason",
            "history",
        ]

    def get_scope_name(self, obj: Reputation) -> str:
        return getattr(obj, "scope_name", "")

    @extend_schema_field(ThresholdsSerializer)
    def get_thresholds(self, obj: Reputation) -> dict:
        return asdict(thresholds_for(obj))

    @extend_schema_field(ThresholdsSerializer)
    def get_overrides(self, obj: Reputation) -> dict:
        return {name: getattr(obj, name) for name in THRESHOLD_FIELDS}

    def get_resumable(self, obj: Reputation) -> bool:
        return paused_by_own_breaker(obj)

    @extend_schema_field(SnapshotSerializer(many=True))
    def get_history(self, obj: Reputation) -> list:
        history = self.context.get("history", {}).get(obj.pk, [])
        return SnapshotSerializer(history, many=True).data


def _history(organization_id: int) -> dict[int, list[ReputationSnapshot]]:
    """The newest snapshots of every scope, in one query."""
    grouped: dict[int, list[ReputationSnapshot]] = defaultdict(list)
    for snapshot in ReputationSnapshot.objects.filter(organization_id=organization_id).order_by("-created_at", "-pk")[
        :500
    ]:
        if len(grouped[snapshot.reputation_id]) < HISTORY_PER_SCOPE:
            grouped[snapshot.reputation_id].append(snapshot)
    return grouped


def _get(request: Request, reputation_id: int) -> Reputation:
    return owned_or_404(Reputation, request.user.organization, "reputation scope", pk=reputation_id)


def _actor(request: Request) -> str:
    return f"api-key:{request.auth.name}" if request.auth is not None else "api"


def _one(request: Request, reputation: Reputation) -> Response:
    organization_id = request.user.organization.pk
    named = {r.pk: r for r in reputations_for(organization_id)}
    reputation = named.get(reputation.pk, reputation)
    return Response(ReputationSerializer(reputation, context={"history": _history(organization_id)}).data)


class ReputationView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(
        responses={
            200: inline_serializer(
                "ReputationList",
                {
                    "reputations": ReputationSerializer(many=True),
                    "blocklists": BlocklistListingSerializer(many=True),
                },
            )
        },
        summary="Reputation of every sending scope, with history and blocklist listings",
    )
    def get(self, request: Request) -> Response:
        organization_id = request.user.organization.pk
        rows = reputations_for(organization_id)
        context = {"history": _history(organization_id)}
        return Response(
            {
                "reputations": ReputationSerializer(rows, many=True, context=context).data,
                "blocklists": BlocklistListingSerializer(listings_for(organization_id), many=True).data,
            }
        )


class ResumeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class ReputationResumeView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(
        request=ResumeSerializer,
        responses={200: ReputationSerializer},
        parameters=[OpenApiParameter("reputation_id", int, OpenApiParameter.PATH)],
        summary="Resume a key or credential paused by the organization's own thresholds",
    )
    def post(self, request: Request, reputation_id: int) -> Response:
        reputation = _get(request, reputation_id)
        body = ResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if reputation.state != "paused":
            raise ApiError(409, f"This scope is {reputation.state}, not paused.", code="not_paused")
        try:
            reputation_resume(reputation, actor=_actor(request), reason=body.validated_data["reason"], staff=False)
        except ResumeNotAllowed as exc:
            raise ApiError(403, str(exc), code="staff_required") from exc
        return _one(request, reputation)


class ReputationThresholdsView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(
        request=ThresholdsSerializer,
        responses={200: ReputationSerializer},
        parameters=[OpenApiParameter("reputation_id", int, OpenApiParameter.PATH)],
        summary="Replace a key's or credential's own thresholds (stricter than the platform's only)",
    )
    def put(self, request: Request, reputation_id: int) -> Response:
        return self._set(request, reputation_id, partial=False)

    @extend_schema(
        request=ThresholdsSerializer,
        responses={200: ReputationSerializer},
        parameters=[OpenApiParameter("reputation_id", int, OpenApiParameter.PATH)],
        summary="Change some of a key's or credential's own thresholds",
    )
    def patch(self, request: Request, reputation_id: int) -> Response:
        return self._set(request, reputation_id, partial=True)

    def _set(self, request: Request, reputation_id: int, *, partial: bool) -> Response:
        reputation = _get(request, reputation_id)
        if not isinstance(request.data, dict):
            raise ApiError(400, "Expected a JSON object.", {"non_field_errors": ["A JSON object."]}, "invalid")
        unknown = sorted(set(request.data) - set(THRESHOLD_FIELDS))
        if unknown:
            raise ApiError(400, "Unknown fields.", {name: ["Unknown field."] for name in unknown}, "invalid")
        body = ThresholdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        if not partial:
            values = {name: values.get(name) for name in THRESHOLD_FIELDS}
        try:
            reputation_thresholds_set(reputation, values=values, staff=False)
        except ThresholdError as exc:
            status = 403 if exc.field == "scope" else 400
            code = "invalid" if status == 400 else "forbidden"
            raise ApiError(status, str(exc), {exc.field: [str(exc)]}, code) from exc
        reputation_recompute_scope(reputation)  # the new thresholds apply now, not at the next beat
        return _one(request, reputation)
