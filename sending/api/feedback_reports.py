"""The feedback-report API: the bounces and complaints that came back for the caller's organization, by state.

`GET /api/v1/feedback/reports?state=unmatched` lists the reports nothing could attribute to one delivery (a notice that
names no recipient and came to no return-path token, or to a feedback address with no known Message-ID) and that
arrived at one of the organization's return-path hosts: kept, with the classifier's result and the reason in
`note`, never dropped. Reports at the platform's shared return-path domain belong to no organization and are
counted on the dashboard's Queue page instead.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.models import InboundMessage


class FeedbackReportSerializer(serializers.ModelSerializer):
    recipient_id = serializers.UUIDField(read_only=True, allow_null=True)
    unnamed = serializers.SerializerMethodField(help_text="The notice's own classification when it names nobody")
    recipients = serializers.SerializerMethodField(help_text="The recipients the report names, as classified")

    class Meta:
        model = InboundMessage
        fields = ["id", "received_at", "state", "type", "note", "size", "recipient_id", "recipients", "unnamed"]

    def get_unnamed(self, inbound: InboundMessage) -> dict | None:
        return (inbound.result or {}).get("unnamed")

    def get_recipients(self, inbound: InboundMessage) -> list[dict]:
        return list((inbound.result or {}).get("recipients") or [])


class FeedbackReportsPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = ("-received_at", "id")


class FeedbackReportsView(APIView):
    required_scope = Scope.MESSAGES_READ

    pagination_class = FeedbackReportsPagination

    @extend_schema(
        parameters=[OpenApiParameter("state", str, enum=InboundMessage.State.values, required=False)],
        responses={200: FeedbackReportSerializer(many=True)},
        summary="Bounces and complaints received for this organization (e.g. state=unmatched)",
    )
    def get(self, request: Request) -> Response:
        qs = InboundMessage.objects.filter(organization=request.user.organization).defer("raw")
        state = request.query_params.get("state")
        if state is not None:
            if state not in InboundMessage.State.values:
                choices = ", ".join(InboundMessage.State.values)
                raise ApiError(400, f"state must be one of {choices}", {"state": ["Unknown state."]}, "invalid")
            qs = qs.filter(state=state)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(FeedbackReportSerializer(page, many=True).data)
